#!/usr/bin/env bash
# Call admissions per second with leases, with two server processes on one database, beside
# a trivial endpoint of the same two servers in the same run.
#
#   STEWARD_BENCH_POSTGRES_URL=postgres://… bench/admissions.sh
#   STEWARD_BENCH_POSTGRES_URL=sqlite:///tmp/admit.db?mode=rwc bench/admissions.sh
#   STEWARD_BENCH_BIN=/path/to/steward bench/admissions.sh   (another build, for an A/B)
#   STEWARD_BENCH_CONNECTIONS (per server, default 16), STEWARD_BENCH_DURATION_S (default 10),
#   STEWARD_BENCH_LOG (the servers' RUST_LOG, default warn) and STEWARD_BENCH_KEEP_LOG (a
#   file to keep their log in, e.g. with steward::admission=debug for batch sizes).
#
# 100 managed accounts of one manager (channel limit 10,000 each, funded); every admission
# takes a lease of 1 s under the account's row lock. Load: one wrk per server, side by side.
# Two runs: admissions alone (each lease left to lapse), then admit + release pairs (every
# granted lease released by the connection's next request); admissions per second are the
# leases the run wrote, divided by its duration.
set -euo pipefail
cd "$(dirname "$0")/.."
db=${STEWARD_BENCH_POSTGRES_URL:?set STEWARD_BENCH_POSTGRES_URL to a database the run may fill}
duration_s=${STEWARD_BENCH_DURATION_S:-10}
connections=${STEWARD_BENCH_CONNECTIONS:-16}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
# STEWARD_BENCH_BIN runs another build's binary (an A/B against the build before).
bin=${STEWARD_BENCH_BIN:-target/release/steward}
[ -n "${STEWARD_BENCH_BIN:-}" ] || cargo build --release --locked -q --bin steward
work=$(mktemp -d /tmp/steward-admit.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
[ -z "${STEWARD_BENCH_KEEP_LOG:-}" ] || trap 'cp "$work/server.log" "$STEWARD_BENCH_KEEP_LOG"; cleanup' EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

manager_key=$("$bin" admin create-account --database-url "$db" --manager --allocatable-channels 1000000 \
  --email "admit-$(tr -dc a-z </dev/urandom | head -c 16)@reseller.example" --business-name "Admission Bench" 2>/dev/null | json_field api_key)
operator_key=$("$bin" admin create-operator-key --database-url "$db" 2>/dev/null | json_field api_key)
ingest_key=$("$bin" admin create-ingest-key --database-url "$db" 2>/dev/null | json_field api_key)

ports=()
for _ in 1 2; do
  port=$(free_port)
  RUST_LOG=${STEWARD_BENCH_LOG:-warn} "$bin" serve --listen "127.0.0.1:$port" --database-url "$db" 2>>"$work/server.log" &
  pids+=($!)
  ports+=("$port")
done
for port in "${ports[@]}"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/livez" >/dev/null && break; sleep 0.1; done
done
python3 bench/admission_setup.py "http://127.0.0.1:${ports[0]}" "$manager_key" "$operator_key" "$ingest_key" >"$work/admit.lua"

# Runs one wrk per server at once; prints total req/s and the worse p99 (ms). Arguments after
# the path go to the script.
both() {
  local script=$1 path=$2 outputs=()
  shift 2
  for i in 0 1; do
    wrk -t1 -c"$connections" -d"${duration_s}s" --latency ${script:+-s "$script"} "http://127.0.0.1:${ports[$i]}$path" ${1:+-- "$@"} >"$work/wrk.$i" &
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

# Leases written so far, and how many of them were released.
leases() {
  python3 - "$db" <<'PY'
import subprocess, sys
url = sys.argv[1]
sql = "SELECT COUNT(*), COUNT(released_at_ms) FROM channel_leases"
if url.startswith("sqlite:"):
    import sqlite3
    path = url[len("sqlite:"):].split("?")[0].removeprefix("//")
    print(*sqlite3.connect(path).execute(sql).fetchone())
else:
    out = subprocess.run(["psql", "-qtA", "-F", " ", url, "-c", sql], capture_output=True, text=True, check=True)
    print(out.stdout.strip())
PY
}

read -r base_rps base_p99 <<<"$(both "" /livez)"
read -r leases_0 _ <<<"$(leases)"
read -r admit_rps admit_p99 <<<"$(both "$work/admit.lua" /v2/admissions)"
read -r leases_1 released_1 <<<"$(leases)"
read -r pairs_rps pairs_p99 <<<"$(both "$work/admit.lua" /v2/admissions pairs)"
read -r leases_2 released_2 <<<"$(leases)"
printf 'backend=%s servers=2 connections_per_server=%s duration=%ss cores=%s\n' \
  "${db%%:*}" "$connections" "$duration_s" "$(nproc)"
python3 - "$duration_s" "$base_rps" "$base_p99" "$admit_rps" "$admit_p99" "$((leases_1 - leases_0))" \
  "$pairs_rps" "$pairs_p99" "$((leases_2 - leases_1))" "$((released_2 - released_1))" <<'PY'
import sys
d, base, base_p99, admit, admit_p99, admit_leases, pairs, pairs_p99, pair_leases, released = map(float, sys.argv[1:])
print(f"{'run':<16} {'req/s':>9} {'p99_ms':>8} {'req/s÷base':>11} {'admissions/s':>13} {'released':>9}")
print(f"{'baseline /livez':<16} {base:>9.0f} {base_p99:>8.2f} {1:>11.2f} {'':>13} {'':>9}")
print(f"{'admit':<16} {admit:>9.0f} {admit_p99:>8.2f} {admit / base:>11.2f} {admit_leases / d:>13.0f} {'':>9}")
print(f"{'admit+release':<16} {pairs:>9.0f} {pairs_p99:>8.2f} {pairs / base:>11.2f} {pair_leases / d:>13.0f} {released:>9.0f}")
PY
