"""The peer of the token-cache benchmark: MSAL for Python, Microsoft's own library.

Usage: msal_peer.py AUTHORITY CLIENT_ID SECRET SCOPE CALLS THREADS
Prints one JSON line: {"cached_us": ..., "concurrent_errors": ...}.
The CA of the emulator is passed through REQUESTS_CA_BUNDLE.
"""
import json
import sys
import threading
import time

import msal

authority, client_id, secret, scope, calls, threads = sys.argv[1:7]
calls, threads = int(calls), int(threads)

# Cold cache, many threads at once: how many token requests does MSAL make?
app = msal.ConfidentialClientApplication(
    client_id, client_credential=secret, authority=authority, instance_discovery=False
)
errors = []
barrier = threading.Barrier(threads)


def acquire():
    barrier.wait()
    r = app.acquire_token_for_client(scopes=[scope])
    if "access_token" not in r:
        errors.append(r.get("error"))


ts = [threading.Thread(target=acquire) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(json.dumps({"phase": "concurrent-done", "errors": len(errors)}), flush=True)
sys.stdin.readline()  # the Rust side counts the token requests, then lets us go on

# Warm cache: cost of one cached acquisition.
r = app.acquire_token_for_client(scopes=[scope])
assert "access_token" in r, r
start = time.perf_counter()
for _ in range(calls):
    r = app.acquire_token_for_client(scopes=[scope])
elapsed = time.perf_counter() - start
print(json.dumps({"phase": "cached", "cached_us": elapsed / calls * 1e6}), flush=True)
