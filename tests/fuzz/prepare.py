"""Seeds a running Steward with realistic data and writes the schemathesis config for it.

Called by tests/fuzz/run.sh once the server is up:

    prepare.py BASE_URL CONFIG_OUT

with the keys and ids that run.sh minted through `steward admin` in the environment
(STEWARD_FUZZ_MANAGER_KEY, STEWARD_FUZZ_MANAGER_ID, STEWARD_FUZZ_OPERATOR_KEY,
STEWARD_FUZZ_INGEST_KEY, STEWARD_FUZZ_PRICE_LIST_ID).

The OpenAPI document types most fields as plain strings (products, E.164 numbers, record
types, decimal amounts are described in prose), and every `{id}` is an opaque string, so
purely random data almost never gets past validation or finds an existing resource. Seeding a
managed account with money, a channel allowance, an extra API key, a channel lease and some
rated usage, then handing schemathesis dictionaries of those ids and of valid enum-like values
(drawn with probability 1/2, so random values still get their turn), lets the fuzzer reach the
success paths and so check the documented 200 schemas, not only the error envelope.

Seeding talks to the API like any client; any unexpected answer aborts the run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import urllib.error
import urllib.request

PRODUCTS = [
    "voice_outbound",
    "voice_inbound",
    "sms_outbound",
    "sms_inbound",
    "mms_outbound",
    "mms_inbound",
    "number_rental",
]


def call(base_url: str, method: str, path: str, key: str, body: object = None, headers: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"seeding failed: {method} {path} answered {exc.code}: {exc.read()[:500]!r}") from None


def toml_value(value: object) -> str:
    # JSON strings, numbers, booleans and arrays of them are valid TOML as they are.
    return json.dumps(value)


def main() -> None:
    base_url, config_out = sys.argv[1:3]
    env = os.environ
    manager_key = env["STEWARD_FUZZ_MANAGER_KEY"]
    manager_id = env["STEWARD_FUZZ_MANAGER_ID"]
    operator_key = env["STEWARD_FUZZ_OPERATOR_KEY"]
    ingest_key = env["STEWARD_FUZZ_INGEST_KEY"]
    price_list_id = env["STEWARD_FUZZ_PRICE_LIST_ID"]

    managed = call(base_url, "POST", "/v2/managed_accounts", manager_key, {"business_name": "Fuzz Customer Ltd"})["data"]
    managed_id = managed["id"]
    call(base_url, "PATCH", f"/v2/managed_accounts/{managed_id}/update_global_channel_limit", manager_key,
         {"channel_limit": 5})
    for account in (manager_id, managed_id):
        call(base_url, "POST", f"/admin/v1/accounts/{account}/credits", operator_key,
             {"amount": "1000.00", "reason": "fuzz seed"}, {"Idempotency-Key": f"fuzz-seed-{account}"})
    managed_key_id = call(base_url, "POST", f"/v2/managed_accounts/{managed_id}/api_keys", manager_key)["data"]["id"]

    admission = call(base_url, "POST", "/v2/admissions", ingest_key,
                     {"account_id": managed_id, "product": "voice_outbound", "destination": "+14155550100",
                      "ttl_s": 3600})["data"]
    if not admission.get("admitted"):
        raise SystemExit(f"seeding failed: the seed admission was refused: {admission}")
    lease_id = admission["lease_id"]

    occurred_at = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)).isoformat(timespec="seconds")
    events = [
        {"id": "fuzz-seed-voice", "account_id": managed_id, "product": "voice_outbound",
         "destination": "+14155550100", "quantity": 125, "occurred_at": occurred_at, "lease_id": lease_id},
        {"id": "fuzz-seed-sms", "account_id": managed_id, "product": "sms_outbound",
         "destination": "+447700900123", "quantity": 2, "occurred_at": occurred_at},
        {"id": "fuzz-seed-rental", "account_id": manager_id, "product": "number_rental",
         "destination": "+14155550100", "quantity": 1, "occurred_at": occurred_at},
    ]
    results = call(base_url, "POST", "/v2/usage_events", ingest_key, {"events": events})["data"]
    rejected = [result for result in results if result.get("status") == "rejected"]
    if rejected:
        raise SystemExit(f"seeding failed: seed usage events were rejected: {rejected}")

    today = dt.date.today().isoformat()
    dictionaries = {
        "account_ids": [manager_id, managed_id],
        "managed_ids": [managed_id],
        "managed_key_ids": [managed_key_id],
        "price_list_ids": [price_list_id],
        "lease_ids": [lease_id],
        "products": PRODUCTS,
        "destinations": ["+14155550100", "+447700900123", "14155550100", "+4930123456"],
        "record_types": ["sip-trunking", "messaging", "number-rental"],
        "date_ranges": ["today", "yesterday", "this_week", "last_week", "last_7_days", "last_30_days"],
        "instants": [today, "2025-01-01T00:00:00Z", occurred_at],
        "amounts": ["25.00", "-3.50", "0.000000001", "100"],
        "sorts": ["created_at", "-created_at", "email", "-email", "started_at", "-started_at"],
        "statuses": ["all", "active", "enabled", "cancelled", "disabled", "blocked"],
        "email_fragments": ["fuzz", "reseller.example", "Customer"],
        "business_names": ["Larry's Cat Food Inc", "Fuzz Customer Ltd"],
        "channel_limits": [0, 1, 5],
        "ttls": [1, 60, 300, 14400],
        "page_sizes": [1, 20, 50, 250],
    }

    def bind(dictionary: str) -> str:
        return f'{{ dictionary = "{dictionary}", probability = 0.5 }}'

    # Parameters that mean the same everywhere; per-operation ones (ids) are below.
    common = {
        "query.product": "products",
        "query.destination": "destinations",
        "query.filter[record_type]": "record_types",
        "query.filter[date_range]": "date_ranges",
        "query.filter[started_at][gte]": "instants",
        "query.filter[started_at][lt]": "instants",
        "query.filter[account_id]": "managed_ids",
        "query.filter[status][eq]": "statuses",
        "query.filter[email][contains]": "email_fragments",
        "query.filter[organization_name][contains]": "email_fragments",
        "query.sort": "sorts",
        "query.page[size]": "page_sizes",
        "query.effective_from": "instants",
        "query.assign_to": "account_ids",
        "body.product": "products",
        "body.destination": "destinations",
        "body.account_id": "account_ids",
        "body.amount": "amounts",
        "body.business_name": "business_names",
        "body.channel_limit": "channel_limits",
        "body.ttl_s": "ttls",
        "body.effective_from": "instants",
    }

    def auth(key: str) -> str:
        return f"headers = {{ Authorization = {toml_value('Bearer ' + key)} }}"

    # Operation groups are disjoint: when several [[operations]] match, their settings would merge.
    operations = [
        # The operator API takes an operator key.
        ("^/admin/v1/accounts/", operator_key, {"path.id": "account_ids"}),
        ("^/admin/v1/price_lists", operator_key, {"path.id": "price_list_ids"}),
        # Network elements (usage ingestion, call admission, channel leases) take an ingest key.
        ("^/v2/(usage_events|admissions)$", ingest_key, {}),
        ("^/v2/channel_leases/", ingest_key, {"path.id": "lease_ids"}),
        # Everything else acts as the manager (the top-level headers); these only add ids.
        ("^/v2/managed_accounts/\\{id\\}", manager_key, {"path.id": "managed_ids", "path.key_id": "managed_key_ids"}),
    ]

    lines = [
        "# Written by tests/fuzz/prepare.py for one run of tests/fuzz/run.sh; not kept.",
        auth(manager_key),
        "",
        "[dictionaries]",
    ]
    lines += [f"{toml_value(name)} = {{ values = {toml_value(values)} }}" for name, values in dictionaries.items()]
    lines += ["", "[parameters]"]
    lines += [f"{toml_value(name)} = {bind(dictionary)}" for name, dictionary in common.items()]
    for regex, key, ids in operations:
        lines += ["", "[[operations]]", f"include-path-regex = {toml_value(regex)}", auth(key)]
        if ids:
            lines += ["[operations.parameters]"]
            lines += [f"{toml_value(name)} = {bind(dictionary)}" for name, dictionary in ids.items()]
    with open(config_out, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")

    print(
        f"seeded: managed account {managed_id}, its key {managed_key_id}, lease {lease_id}, "
        f"price list {price_list_id}, {len(events)} usage events",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
