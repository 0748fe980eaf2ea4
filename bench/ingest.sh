#!/usr/bin/env bash
# Ingestion benchmark: events/s over HTTP (batches of 1,000; 1,000 managed accounts under 10
# managers, half rollup; a price list of 20,000 prefixes), beside a baseline written straight
# into the same database in the same run with no rating or ledger.
#
#   bench/ingest.sh sqlite|postgres [batches] [connections]
#
# postgres uses STEWARD_BENCH_POSTGRES_URL (a database the run may fill), or starts nothing
# and fails if it is unset. STEWARD_BENCH_DATABASE_URL runs against any existing database of
# either engine instead (the growth runs: a database that already holds millions of records).
# STEWARD_BENCH_TRAFFIC=friendly sends near-sequential ids at one instant instead of what
# switches send (random v4 ids, times spread over 20 days): an upper bound, labelled so.
#
# STEWARD_BENCH_VERIFY=false skips verify-ledger before and after (growth runs repeat on
# a database whose verification takes minutes; they verify it once on their own).
#
# Besides events/s it prints the HTTP phase's physical cost: bytes written to disk per event
# (the server's and, on a local PostgreSQL, the database processes' /proc/<pid>/io), bytes
# the database grew by per event, their ratio (write amplification) and the server's peak
# resident memory.
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-sqlite}
batches=${2:-200}
connections=${3:-4}

cargo build --release --locked -q --bin steward --example ingest_bench
work=$(mktemp -d /tmp/steward-ingest.XXXXXX)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
case $backend in
  sqlite) db=${STEWARD_BENCH_DATABASE_URL:-"sqlite://$work/steward.db"} ;;
  postgres) db=${STEWARD_BENCH_DATABASE_URL:-${STEWARD_BENCH_POSTGRES_URL:?set STEWARD_BENCH_POSTGRES_URL}} ;;
  *) echo "unknown backend $backend" >&2; exit 2 ;;
esac
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Verify the ledger (and migrate) before the server and the bench open the database side by
# side. Without it the server still migrates before it listens, and the bench starts only
# once the server answers.
verify=${STEWARD_BENCH_VERIFY:-true}
[ "$verify" = false ] || target/release/steward admin verify-ledger --database-url "$db" >/dev/null
RUST_LOG=warn target/release/steward serve --listen "127.0.0.1:$port" --database-url "$db" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/livez" >/dev/null && break; sleep 0.1; done
printf '{"backend":"%s","cores":%s,"result":' "$backend" "$(nproc)"
target/release/examples/ingest_bench --database-url "$db" --server "http://127.0.0.1:$port" \
  --batches "$batches" --connections "$connections" --server-pid "$server_pid" \
  --traffic "${STEWARD_BENCH_TRAFFIC:-realistic}" --verify "$verify" | tr -d '\n'
echo '}'
