"""Creates N managed accounts under a manager over HTTP; prints one account id."""

import json
import sys
import urllib.request

base, key, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
sample = None
for n in range(count):
    body = json.dumps({"business_name": f"Bench Customer {n:04d}", "rollup_billing": n % 2 == 0}).encode()
    request = urllib.request.Request(
        f"{base}/v2/managed_accounts",
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        created = json.load(response)["data"]
    if n == count // 2:
        sample = created["id"]
print(sample)
