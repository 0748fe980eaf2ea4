#!/usr/bin/env bash
# Call admissions per second with leases, on PostgreSQL with two server processes, beside a
# trivial endpoint of the same two servers in the same run.
#
#   STEWARD_BENCH_POSTGRES_URL=postgres://… bench/admissions.sh
#
# 100 managed accounts of one manager (channel limit 10,000 each, funded); every admission
# takes a lease of 1 s under the account's row lock. Load: one wrk per server, side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
db=${STEWARD_BENCH_POSTGRES_URL:?set STEWARD_BENCH_POSTGRES_URL to a database the run may fill}
duration_s=${STEWARD_BENCH_DURATION_S:-10}
connections=${STEWARD_BENCH_CONNECTIONS:-16}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --locked -q --bin steward
bin=target/release/steward
work=$(mktemp -d /tmp/steward-admit.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

manager_key=$("$bin" admin create-account --database-url "$db" --manager --allocatable-channels 1000000 \
  --email "admit-$(tr -dc a-z </dev/urandom | head -c 16)@reseller.example" --business-name "Admission Bench" 2>/dev/null | json_field api_key)
operator_key=$("$bin" admin create-operator-key --database-url "$db" 2>/dev/null | json_field api_key)
ingest_key=$("$bin" admin create-ingest-key --database-url "$db" 2>/dev/null | json_field api_key)

ports=()
for _ in 1 2; do
  port=$(free_port)
  RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --database-url "$db" 2>>"$work/server.log" &
  pids+=($!)
  ports+=("$port")
done
for port in "${ports[@]}"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/livez" >/dev/null && break; sleep 0.1; done
done
python3 bench/admission_setup.py "http://127.0.0.1:${ports[0]}" "$manager_key" "$operator_key" "$ingest_key" >"$work/admit.lua"

# Runs one wrk per server at once; prints total req/s and the worse p99 (ms).
both() {
  local script=$1 path=$2 outputs=()
  for i in 0 1; do
    wrk -t1 -c"$connections" -d"${duration_s}s" --latency ${script:+-s "$script"} "http://127.0.0.1:${ports[$i]}$path" >"$work/wrk.$i" &
    outputs+=($!)
  done
  wait "${outputs[@]}"
  python3 - "$work/wrk.0" "$work/wrk.1" <<'PY'
import re, sys
total, worst = 0.0, 0.0
for name in sys.argv[1:]:
    text = open(name).read()
    total += float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", text).groups()
    worst = max(worst, float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit])
print(f"{total:.0f} {worst:.2f}")
PY
}

read -r base_rps base_p99 <<<"$(both "" /livez)"
read -r admit_rps admit_p99 <<<"$(both "$work/admit.lua" /v2/admissions)"
admitted=$(psql -qtA "$db" -c "SELECT COUNT(*) FROM channel_leases" 2>/dev/null || echo "?")
printf 'backend=postgres servers=2 connections_per_server=%s duration=%ss cores=%s leases_written=%s\n' \
  "$connections" "$duration_s" "$(nproc)" "$admitted"
printf '%-10s %10s %8s %14s\n' endpoint req/s p99_ms rps/baseline
printf '%-10s %10s %8s %14s\n' baseline "$base_rps" "$base_p99" 1.00
python3 -c "import sys; r,p,b=map(float,sys.argv[1:]); print(f'{\"admission\":<10} {r:>10.0f} {p:>8.2f} {r/b:>14.2f}')" \
  "$admit_rps" "$admit_p99" "$base_rps"
