#!/usr/bin/env bash
# Growth benchmark: ingestion, the authenticated reads and the server's memory with N usage
# records already stored, beside the same measurements on an empty database in the same run.
#
#   bench/growth.sh sqlite|postgres [records] [rounds]      (default 10,000,000 records, 2 rounds)
#
# Seeds the records with the report benchmark's seeding (rating, ledger and rollups, 1,000
# accounts, one month), prints the stored bytes per record, then alternates
# `bench/ingest.sh` on an empty database and on the seeded one, `rounds` times (a round
# fails unless every event was accepted), runs `bench/run.sh` (the reads) once on each, and
# verifies the seeded ledger at the end.
#
# STEWARD_BENCH_GROWTH_URL names an already seeded database to use instead of seeding one:
# 50 million records took 35 minutes to seed on PostgreSQL and 83 on SQLite here. Else
# sqlite seeds a file under /tmp (kept: its path is printed; ~465 bytes per record) and
# postgres seeds STEWARD_BENCH_POSTGRES_URL (an empty database the run may fill).
# postgres also needs STEWARD_BENCH_POSTGRES_EMPTY_URL: a scratch database that each empty
# round wipes (its schema `public` is dropped and made again).
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-sqlite}
records=${2:-10000000}
rounds=${3:-2}

cargo build --release --locked -q --bin steward --example report_bench --example ingest_bench
work=$(mktemp -d /tmp/steward-growth.XXXXXX)
trap 'rm -rf "$work"' EXIT

case $backend in
  sqlite) ;;
  postgres) empty=${STEWARD_BENCH_POSTGRES_EMPTY_URL:?set STEWARD_BENCH_POSTGRES_EMPTY_URL} ;;
  *) echo "unknown backend $backend" >&2; exit 2 ;;
esac

if [ -n "${STEWARD_BENCH_GROWTH_URL:-}" ]; then
  seeded=$STEWARD_BENCH_GROWTH_URL
else
  case $backend in
    sqlite) seeded="sqlite://$(mktemp -d /tmp/steward-growth-db.XXXXXX)/steward.db" ;;
    postgres) seeded=${STEWARD_BENCH_POSTGRES_URL:?set STEWARD_BENCH_POSTGRES_URL} ;;
  esac
  echo "seeding $records records into $seeded …" >&2
  STEWARD_REPORT_BENCH_STATE=$work/state.json target/release/examples/report_bench \
    --database-url "$seeded" --events "$records" --phase seed >"$work/seed.json"
  cat "$work/seed.json" >&2
fi

sqlite_path() { local path=${1#sqlite://}; echo "${path%%\?*}"; }

# Stored records and bytes of the seeded database, before any run adds to it.
case $backend in
  sqlite)
    stored=$(sqlite3 -cmd '.timeout 10000' "$(sqlite_path "$seeded")" \
      "SELECT count(*), (SELECT (p.page_count - f.freelist_count) * s.page_size
         FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s)
       FROM usage_records" | tr '|' ' ') ;;
  postgres)
    psql -q "$seeded" -c 'ANALYZE' >/dev/null
    stored=$(psql -At "$seeded" -c \
      "SELECT count(*), pg_database_size(current_database()) FROM usage_records" | tr '|' ' ') ;;
esac
read -r stored_records stored_bytes <<<"$stored"
printf 'stored records %s, database bytes %s, bytes per record %s\n' "$stored_records" \
  "$stored_bytes" "$(( stored_bytes / (stored_records > 0 ? stored_records : 1) ))"

empty_database() { # prints the URL of an empty database
  case $backend in
    sqlite) rm -f "$work"/empty.db*; echo "sqlite://$work/empty.db" ;;
    postgres)
      psql -q "$empty" -c 'DROP SCHEMA public CASCADE; CREATE SCHEMA public;' >/dev/null 2>&1
      echo "$empty" ;;
  esac
}

ingest() { # label url
  local out
  out=$(STEWARD_BENCH_DATABASE_URL=$2 STEWARD_BENCH_VERIFY=false bench/ingest.sh "$backend" 200 4 \
    2>/dev/null | tail -1)
  python3 - "$1" "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[2])["result"]
if r["accepted"] != r["events"]:
    sys.exit(f"ingest {sys.argv[1]}: {r['accepted']} of {r['events']} events accepted")
print(f"ingest {sys.argv[1]:<7} events/s {r['ingest_events_per_s']:>8.0f}"
      f"  peak MiB {r['physical']['server_peak_rss_mib']}")
PY
}

for round in $(seq "$rounds"); do
  echo "round $round, load $(cut -d' ' -f1-3 /proc/loadavg)"
  ingest empty "$(empty_database)"
  ingest seeded "$seeded"
done

reads() { # label url
  echo "reads $1:"
  STEWARD_BENCH_DATABASE_URL=$2 bench/run.sh "$backend" 2>"$work/reads.log" >"$work/reads.out" \
    || { cat "$work/reads.log" >&2; exit 1; }
  grep -E '^(baseline|retrieve|balance|list) ' "$work/reads.out"
}
reads empty "$(empty_database)"
reads seeded "$seeded"

# Once, at the end: the seeded ledger with every round's events on it.
echo "verify-ledger on the seeded database:"
target/release/steward admin verify-ledger --database-url "$seeded"
