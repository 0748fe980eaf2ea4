#!/usr/bin/env bash
# verify-ledger benchmark: N usage records (default 1,000,000) charged through the ingestion
# code (1,000 managed accounts, every fifth rollup, batches of 100 events of random accounts:
# about one posting per record), then `steward admin verify-ledger` timed as an operator runs
# it, beside a same-run baseline: one plain COUNT(*)/SUM over every usage record.
#
#   bench/verify.sh sqlite|postgres [records] [runs]
#
# postgres uses STEWARD_BENCH_POSTGRES_URL (an empty database the run may fill).
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-sqlite}
records=${2:-1000000}
runs=${3:-3}

cargo build --release --locked -q --bin steward --example verify_bench
work=$(mktemp -d /tmp/steward-verify.XXXXXX)
trap 'rm -rf "$work"' EXIT
case $backend in
  sqlite) db="sqlite://$work/steward.db" ;;
  postgres) db=${STEWARD_BENCH_POSTGRES_URL:?set STEWARD_BENCH_POSTGRES_URL} ;;
  *) echo "unknown backend $backend" >&2; exit 2 ;;
esac
target/release/examples/verify_bench --database-url "$db" --records "$records" --phase seed >"$work/seed.json"
target/release/examples/verify_bench --database-url "$db" --phase baseline >"$work/baseline.json"
for run in $(seq "$runs"); do
  start=$(date +%s.%N)
  target/release/steward admin verify-ledger --database-url "$db" >"$work/verify-$run.json"
  end=$(date +%s.%N)
  echo "$start $end" >"$work/time-$run"
done
python3 - "$backend" "$(nproc)" "$work" "$runs" <<'PY'
import json, sys
backend, cores, work, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
seed = json.load(open(f"{work}/seed.json"))
base = json.load(open(f"{work}/baseline.json"))
seconds = []
for run in range(1, runs + 1):
    start, end = map(float, open(f"{work}/time-{run}").read().split())
    seconds.append(end - start)
    verified = json.load(open(f"{work}/verify-{run}.json"))
    assert verified["ok"] is True and verified["usage_records"] == base["records"], verified
seconds.sort()
median = seconds[len(seconds) // 2]
millions = base["records"] / 1e6
print(json.dumps({
    "backend": backend, "cores": cores, **seed, **base,
    "verify_seconds": [round(s, 3) for s in seconds], "verify_seconds_median": round(median, 3),
    "verify_seconds_per_million_records": round(median / millions, 3),
    "baseline_seconds_per_million_records": round(base["baseline_seconds"] / millions, 3),
    "verify_over_baseline": round(median / max(base["baseline_seconds"], 1e-6), 1),
    "goal_seconds_per_million_records": 2.0,
}, indent=2))
PY
