#!/usr/bin/env bash
# What a server holds of pricing as lists pile up: N times, a 40,000-rate list is imported as
# the platform default (each superseding the one before), then a server is started on the
# database, one usage batch is ingested (rating loads the pricing index) and the server's
# resident memory is read from /proc. Prints one JSON object: resident KiB after each list.
#
#   bench/pricing_memory.sh [lists] [steward binary]
#
# Run it with the binary of two builds (the second argument) to compare them.
set -euo pipefail
cd "$(dirname "$0")/.."
lists=${1:-8}
bin=${2:-target/release/steward}
[ "$bin" = target/release/steward ] && cargo build --release --locked -q --bin steward
work=$(mktemp -d /tmp/steward-pricing-memory.XXXXXX)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
db="sqlite://$work/steward.db"
admin() { RUST_LOG=error "$bin" admin --database-url "$db" "$@"; }
account=$(admin create-account --email memory@bench.example --business-name "Memory Bench" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
key=$(admin create-ingest-key | python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])')
# 40,000 voice rates on distinct prefixes, plus SMS.
python3 - "$work/list.csv" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("product,prefix,rate,initial_increment_s,subsequent_increment_s\n")
    for n in range(40_000):
        f.write(f"voice_outbound,{1_000_000 + n},0.{n % 9000 + 1000:04d},6,6\n")
    f.write("sms_outbound,,0.004,,\n")
PY
python3 - "$work/batch.json" "$account" <<'PY'
import json, sys, uuid
events = [{"id": str(uuid.uuid4()), "account_id": sys.argv[2], "product": "sms_outbound",
           "destination": "+14155550100", "quantity": 1} for _ in range(100)]
json.dump({"events": events}, open(sys.argv[1], "w"))
PY
resident=()
for n in $(seq "$lists"); do
  admin import-price-list --file "$work/list.csv" --name "list $n" --platform-default >/dev/null
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --database-url "$db" \
    --payment-tasks-interval-ms 0 2>"$work/server.log" &
  server_pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/livez" >/dev/null && break; sleep 0.1; done
  # Fresh ids each time, so the batch is rated (not answered as duplicates).
  python3 -c 'import json, sys, uuid
b = json.load(open(sys.argv[1]))
for e in b["events"]: e["id"] = str(uuid.uuid4())
json.dump(b, open(sys.argv[1], "w"))' "$work/batch.json"
  curl -sf -o /dev/null -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    --data-binary "@$work/batch.json" "http://127.0.0.1:$port/v2/usage_events"
  resident+=("$(awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status")")
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
done
printf '{"rates_per_list":40001,"resident_kib_after_each_list":[%s]}\n' "$(IFS=,; echo "${resident[*]}")"
