"""The peer of the smtp-send and outbox-send benchmarks: Python's smtplib.

Usage: smtp_peer.py HOST PORT USER PASSWORD CA_FILE DIR COUNT [each]
Sends DIR/0.eml .. DIR/COUNT-1.eml from USER to USER over STARTTLS + AUTH, on one
connection (with `each`: a new connection, STARTTLS and AUTH per message, as a
queue that sends each message on its own would), and prints one JSON line:
{"seconds": ..., "sent": ...}.
"""
import json
import smtplib
import ssl
import sys
import time

host, port, user, password, ca_file, directory, count = sys.argv[1:8]
each = len(sys.argv) > 8 and sys.argv[8] == "each"
count = int(count)
context = ssl.create_default_context(cafile=ca_file)


def session():
    s = smtplib.SMTP(host, int(port), local_hostname="python.localhost")
    s.starttls(context=context)
    s.login(user, password)
    return s


def message(i):
    with open(f"{directory}/{i}.eml", "rb") as f:
        return f.read()


start = time.perf_counter()
if each:
    for i in range(count):
        with session() as s:
            s.sendmail(user, [user], message(i))
else:
    with session() as s:
        for i in range(count):
            s.sendmail(user, [user], message(i))
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "sent": count}), flush=True)
