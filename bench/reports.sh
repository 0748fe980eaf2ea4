#!/usr/bin/env bash
# Usage-report benchmark: one manager, 1,000 managed accounts, N events (default 10,000,000)
# over the latest 31-day calendar month, seeded through rating, the ledger and the rollups,
# and the month's days closed (added to the monthly rollups, as a server does as each day
# ends; timed apart), and on PostgreSQL the tables analyzed (as autovacuum does later);
# then the manager's per-account report over the month (monthly rollups) and over 31 days
# that are not a month (daily rollups), timed through HTTP, beside the same aggregation
# over the raw records.
#
#   bench/reports.sh sqlite|postgres [events] [reports] [ab-events] [ab-order] [ab-ingest]
#
# Then what the rollups cost ingestion: on a second, empty database, ab-events (default
# 2,000,000) are seeded in five pairs of rounds, one with rollup maintenance and one
# without, after a warm-up round that is not counted; each pair gives a ratio of rates and
# one of the machine's busy CPU time per event (`rollups_ab.cpu`, from /proc/stat, which
# counts the local PostgreSQL server too). `report_bench --phase aa` runs the same with
# neither side maintaining rollups: both ratios should then be 1. ab-order is `spread`
# (default: every batch over the whole month), `arrival` (each batch the last minutes, a
# few events late, the month passing in one round) or `live` (each batch the last minutes
# on the wall clock, as a platform ingests). The days before today are closed first, as a
# running server keeps them: `live` usage of today goes to the daily rollups only, the past
# month of `spread` and `arrival` to both. ab-ingest is `library` (default: ingestion's code
# called directly) or `http` (`POST /v2/usage_events` batches to a server the benchmark runs
# in its own process on the A/B's database, so that it can turn that server's rollups off).
#
# postgres uses STEWARD_BENCH_POSTGRES_URL (an empty database the run may fill) and, for the
# A/B, STEWARD_BENCH_POSTGRES_AB_URL (another).
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-sqlite}
events=${2:-10000000}
reports=${3:-100}
ab_events=${4:-2000000}
ab_order=${5:-spread}
ab_ingest=${6:-library}

cargo build --release --locked -q --bin steward --example report_bench
work=$(mktemp -d /tmp/steward-reports.XXXXXX)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
case $backend in
  sqlite) db="sqlite://$work/steward.db"; ab_db="sqlite://$work/ab.db" ;;
  postgres)
    db=${STEWARD_BENCH_POSTGRES_URL:?set STEWARD_BENCH_POSTGRES_URL}
    ab_db=${STEWARD_BENCH_POSTGRES_AB_URL:?set STEWARD_BENCH_POSTGRES_AB_URL} ;;
  *) echo "unknown backend $backend" >&2; exit 2 ;;
esac
export STEWARD_REPORT_BENCH_STATE=$work/state.json
target/release/examples/report_bench --database-url "$db" --events "$events" --phase seed >"$work/seed.json"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RUST_LOG=warn target/release/steward serve --listen "127.0.0.1:$port" --database-url "$db" \
  --payment-tasks-interval-ms 0 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/livez" >/dev/null && break; sleep 0.1; done
target/release/examples/report_bench --database-url "$db" --server "http://127.0.0.1:$port" \
  --events "$events" --reports "$reports" --phase measure >"$work/measure.json"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
target/release/examples/report_bench --database-url "$ab_db" --events "$ab_events" --phase ab \
  --order "$ab_order" --ingest "$ab_ingest" >"$work/ab.json"
python3 - "$backend" "$(nproc)" "$work/seed.json" "$work/measure.json" "$work/ab.json" <<'PY'
import json, sys
backend, cores, seed, measure, ab = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
out = {"backend": backend, "cores": cores, **json.load(open(seed)), **json.load(open(measure)),
       "rollups_ab": json.load(open(ab))["rollups_ab"]}
print(json.dumps(out, indent=2))
PY
