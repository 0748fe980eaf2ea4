"""Sets up the admission benchmark over HTTP: 100 managed accounts with channel limits and
credit. Prints a wrk Lua script that cycles admissions over them (and, given `-- pairs`,
releases each lease it was granted)."""

import json
import sys
import urllib.request

base, manager_key, operator_key, ingest_key = sys.argv[1:5]


def call(method, path, key, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base}{path}", data=data, method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)["data"]


ids = []
for n in range(100):
    account = call("POST", "/v2/managed_accounts", manager_key, {"business_name": f"Caller {n:03d}"})
    call("PATCH", f"/v2/managed_accounts/{account['id']}/update_global_channel_limit", manager_key,
         {"channel_limit": 10000})
    call("POST", f"/admin/v1/accounts/{account['id']}/credit_limit", operator_key, {"amount": "1000.00"})
    ids.append(account["id"])

print("local ids = {" + ",".join(f'"{i}"' for i in ids) + "}")
print(f"local headers = {{['Authorization']='Bearer {ingest_key}', ['Content-Type']='application/json'}}")
print("""local n = 0
local pairs_mode = false
local granted = {}

-- `wrk -s script url -- pairs`: every admitted call's lease is released by a later request
-- (acquire + release); without it, admissions only, each lease left to lapse after 1 s.
init = function(args)
  pairs_mode = args[1] == "pairs"
end

request = function()
  local lease = table.remove(granted)
  if lease then
    return wrk.format('POST', '/v2/channel_leases/' .. lease .. '/actions/release', headers, '{}')
  end
  n = n + 1
  local body = '{"account_id":"' .. ids[(n % #ids) + 1] ..
    '","product":"voice_outbound","destination":"+14155550100","ttl_s":1}'
  return wrk.format('POST', '/v2/admissions', headers, body)
end

response = function(status, headers, body)
  if pairs_mode then
    local lease = string.match(body, '"lease_id":"([^"]+)"')
    if lease then table.insert(granted, lease) end
  end
end""")
