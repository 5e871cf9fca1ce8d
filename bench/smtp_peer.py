"""The peer of the smtp-send benchmark: Python's smtplib on one connection.

Usage: smtp_peer.py HOST PORT USER PASSWORD CA_FILE DIR COUNT
Sends DIR/0.eml .. DIR/COUNT-1.eml from USER to USER over STARTTLS + AUTH, on one
connection, and prints one JSON line: {"seconds": ..., "sent": ...}.
"""
import json
import smtplib
import ssl
import sys
import time

host, port, user, password, ca_file, directory, count = sys.argv[1:8]
count = int(count)
context = ssl.create_default_context(cafile=ca_file)

start = time.perf_counter()
with smtplib.SMTP(host, int(port), local_hostname="python.localhost") as s:
    s.starttls(context=context)
    s.login(user, password)
    for i in range(count):
        with open(f"{directory}/{i}.eml", "rb") as f:
            s.sendmail(user, [user], f.read())
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "sent": count}), flush=True)
