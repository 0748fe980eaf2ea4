"""Creates N managed accounts under a manager over HTTP; prints one account id."""

import json
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

base, key, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
# Concurrent requests: the server's writes are serialised anyway; this hides the client's
# and the network's share of each request.
workers = 8


def create(n):
    body = json.dumps({"business_name": f"Bench Customer {n:04d}", "rollup_billing": n % 2 == 0}).encode()
    request = urllib.request.Request(
        f"{base}/v2/managed_accounts",
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)["data"]["id"]


with ThreadPoolExecutor(workers) as pool:
    ids = list(pool.map(create, range(count)))
print(ids[count // 2])
