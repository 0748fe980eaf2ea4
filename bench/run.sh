#!/usr/bin/env bash
# Read-path benchmark of the Managed Accounts API, as ratios to a trivial endpoint of the
# same server measured in the same run (this machine is noisy; ratios travel, absolutes don't).
#
#   bench/run.sh [sqlite|postgres]    (default: sqlite; postgres needs STEWARD_BENCH_POSTGRES_URL,
#                                      a database URL the run may fill)
#   STEWARD_BENCH_ACCOUNTS=100000 bench/run.sh …   (managed accounts to seed; default 1000)
#   STEWARD_BENCH_BIN=/path/to/steward bench/run.sh …   (another build, for an A/B)
#   STEWARD_BENCH_DATABASE_URL=sqlite:///… bench/run.sh sqlite   (an existing database of the
#                                      named engine, e.g. one that holds 10 M usage records)
#
# Seeds one manager with the managed accounts (its limit raised by the operator to fit): the
# first 1000 over HTTP, any beyond with one SQL insert of the same account rows (no keys, no
# audit; names that the list's filter does not match, so it still finds the same 100 among
# them; creating them over HTTP slows down with the count and would take an hour), then
# runs wrk against:
#   baseline  GET /livez                                     (JSON, touches nothing)
#   retrieve  GET /v2/managed_accounts/{id}                  (auth + one account)
#   balance   GET /v2/balance                                (auth + the caller's balance)
#   list      GET /v2/managed_accounts?filter[organization_name][contains]=…&page[size]=20
set -euo pipefail
cd "$(dirname "$0")/.."

backend=${1:-sqlite}
duration_s=${STEWARD_BENCH_DURATION_S:-10}
connections=${STEWARD_BENCH_CONNECTIONS:-32}
accounts=${STEWARD_BENCH_ACCOUNTS:-1000}
threads=1

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
# STEWARD_BENCH_BIN runs another build's binary (an A/B against the build before).
bin=${STEWARD_BENCH_BIN:-target/release/steward}
[ -n "${STEWARD_BENCH_BIN:-}" ] || cargo build --release --locked -q

work=$(mktemp -d /tmp/steward-bench.XXXXXX)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

case $backend in
  sqlite) db=${STEWARD_BENCH_DATABASE_URL:-"sqlite://$work/steward.db"} ;;
  postgres) db=${STEWARD_BENCH_DATABASE_URL:-${STEWARD_BENCH_POSTGRES_URL:?set STEWARD_BENCH_POSTGRES_URL}} ;;
  *) echo "unknown backend $backend" >&2; exit 2 ;;
esac

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
manager_json=$("$bin" admin create-account --database-url "$db" --manager \
  --max-managed-accounts "$accounts" --email "bench-$(tr -dc a-z </dev/urandom | head -c 16)@reseller.example" --business-name "Bench Reseller" 2>/dev/null)
key=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])' <<<"$manager_json")
manager_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$manager_json")

RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --database-url "$db" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 600); do curl -sf "$base/livez" >/dev/null && break; sleep 0.1; done

over_http=$(( accounts < 1000 ? accounts : 1000 ))
echo "seeding $accounts managed accounts ($backend, $over_http over HTTP)…" >&2
seed_started=$(date +%s)
sample=$(python3 bench/seed.py "$base" "$key" "$over_http")
if (( accounts > over_http )); then
  # Row for row what the API writes for an account (triggers and indexes included).
  columns="id, email, email_normalized, organization_name, organization_name_folded, kind, \
manager_id, status, created_at_ms, updated_at_ms"
  values="'filler-' || n || '@bench.example', 'filler-' || n || '@bench.example', \
'Filler Account ' || n, 'filler account ' || n, 'managed', '$manager_id', 'active', n, n"
  case $backend in
    sqlite) sqlite_path=${db#sqlite://}; sqlite3 -cmd '.timeout 10000' "${sqlite_path%%\?*}" \
      "WITH RECURSIVE s(n) AS (SELECT $over_http UNION ALL SELECT n + 1 FROM s WHERE n < $accounts - 1)
       INSERT INTO accounts ($columns) SELECT lower(hex(randomblob(16))), $values FROM s;" ;;
    postgres) psql -q "$db" -c "INSERT INTO accounts ($columns) SELECT gen_random_uuid()::text, $values
       FROM generate_series($over_http, $accounts - 1) AS s (n); ANALYZE accounts;" ;;
  esac
fi
echo "seeded in $(( $(date +%s) - seed_started )) s" >&2

run() {
  local name=$1 url=$2
  local out rps p99
  out=$(wrk -t"$threads" -c"$connections" -d"${duration_s}s" --latency -H "Authorization: Bearer $key" "$url")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  printf '%s %s %s\n' "$name" "$rps" "$p99"
}

to_ms() { # wrk prints 1.23ms / 850.00us / 1.02s
  python3 -c 'import sys,re
v=sys.argv[1]; n=float(re.match(r"[\d.]+",v).group()); u=v[len(re.match(r"[\d.]+",v).group()):]
print(round(n*{"us":0.001,"ms":1,"s":1000}[u],3))' "$1"
}

results=()
results+=("$(run baseline "$base/livez")")
results+=("$(run retrieve "$base/v2/managed_accounts/$sample")")
results+=("$(run balance "$base/v2/balance")")
results+=("$(run list "$base/v2/managed_accounts?filter%5Borganization_name%5D%5Bcontains%5D=customer%2005&page%5Bsize%5D=20")")

read -r _ base_rps base_p99 <<<"${results[0]}"
base_p99_ms=$(to_ms "$base_p99")
printf '\nbackend=%s accounts=%s connections=%s duration=%ss cores=%s load=%s\n' "$backend" "$accounts" \
  "$connections" "$duration_s" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %12s %10s %14s %14s\n' endpoint req/s p99_ms rps/baseline p99/baseline
for line in "${results[@]}"; do
  read -r name rps p99 <<<"$line"
  p99_ms=$(to_ms "$p99")
  python3 -c 'import sys
n,r,p,br,bp=sys.argv[1],float(sys.argv[2]),float(sys.argv[3]),float(sys.argv[4]),float(sys.argv[5])
print(f"{n:<9} {r:>12.0f} {p:>10.2f} {r/br:>14.2f} {p/bp:>14.2f}")' "$name" "$rps" "$p99_ms" "$base_rps" "$base_p99_ms"
done
