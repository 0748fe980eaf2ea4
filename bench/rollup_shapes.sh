#!/usr/bin/env bash
# What one batch's daily-rollup write costs PostgreSQL, by the shape of the rollup rows,
# measured alone in `psql` (no Steward process): the statement the charging transaction
# runs today; the same statement handed the batch as one typed array per column instead of
# one JSON document; and rows that pack a day's keys per account (or per account and
# product) into one JSON map, merged by the same upsert. Packing writes fewer rows per
# batch; this measures whether it writes them for less.
#
#   bench/rollup_shapes.sh [rounds]
#
# Uses STEWARD_BENCH_POSTGRES_URL (an empty database the run may fill). One day of the
# report benchmark's A/B traffic in shape: 1,000 accounts with ~18,700 keys (product,
# country, number type) in all, each upserted batch 3,140 of them (what a 5,000-event batch
# of that traffic touches). Each round runs 30 batches per shape, the shapes alternated
# batch by batch, each statement its own transaction; prints each shape's median statement
# time and its time per row and per event.
set -euo pipefail
rounds=${1:-3}
url=${STEWARD_BENCH_POSTGRES_URL:?set STEWARD_BENCH_POSTGRES_URL}
work=$(mktemp -d /tmp/steward-rollup-shapes.XXXXXX)
trap 'rm -rf "$work"' EXIT

psql "$url" -q -v ON_ERROR_STOP=1 <<'EOF'
SET client_min_messages = warning;
DROP TABLE IF EXISTS shape_flat, shape_account, shape_product, shape_keys, shape_batches;
CREATE TABLE shape_flat (
    bucket_ms BIGINT NOT NULL, account_id TEXT NOT NULL, product TEXT NOT NULL,
    country_code TEXT NOT NULL, number_type TEXT NOT NULL, event_count BIGINT NOT NULL,
    quantity BIGINT NOT NULL, billable_quantity BIGINT NOT NULL, cost_nanos BIGINT NOT NULL,
    PRIMARY KEY (bucket_ms, account_id, product, country_code, number_type));
-- sums: {"product|country|number type": [events, quantity, billable quantity, cost]}
CREATE TABLE shape_account (
    bucket_ms BIGINT NOT NULL, account_id TEXT NOT NULL, sums JSONB NOT NULL,
    PRIMARY KEY (bucket_ms, account_id));
-- sums: {"country|number type": [events, quantity, billable quantity, cost]}
CREATE TABLE shape_product (
    bucket_ms BIGINT NOT NULL, account_id TEXT NOT NULL, product TEXT NOT NULL,
    sums JSONB NOT NULL, PRIMARY KEY (bucket_ms, account_id, product));
SELECT setseed(0.5) \g /dev/null
CREATE TABLE shape_keys AS
SELECT a.account_id, p.product, c.country_code, t.number_type
FROM (SELECT md5(i::text)::uuid::text AS account_id FROM generate_series(1, 1000) AS i) AS a
CROSS JOIN (VALUES ('voice_outbound'), ('voice_inbound'), ('sms_outbound'), ('sms_inbound'),
    ('mms_outbound'), ('number_rental')) AS p (product)
CROSS JOIN (VALUES ('GB'), ('US'), ('DE')) AS c (country_code)
CROSS JOIN (VALUES ('mobile'), ('geographic')) AS t (number_type)
WHERE random() < 0.52;
-- The day's keys exist (the A/B's warm-up round creates them), as the batches find them.
INSERT INTO shape_flat
SELECT 0, account_id, product, country_code, number_type, 1, 60, 60, 1000 FROM shape_keys;
INSERT INTO shape_account
SELECT 0, account_id, jsonb_object_agg(product || '|' || country_code || '|' || number_type,
    jsonb_build_array(1, 60, 60, 1000))
FROM shape_keys GROUP BY account_id;
INSERT INTO shape_product
SELECT 0, account_id, product, jsonb_object_agg(country_code || '|' || number_type,
    jsonb_build_array(1, 60, 60, 1000))
FROM shape_keys GROUP BY account_id, product;
-- Each batch as the JSON document each shape's upsert is handed.
CREATE TABLE shape_batches (n INT, flat TEXT, account TEXT, product TEXT, c_bucket TEXT,
    c_account TEXT, c_product TEXT, c_country TEXT, c_type TEXT, c_sum TEXT);
DO $$
BEGIN
  FOR b IN 1..30 LOOP
    CREATE TEMP TABLE pick AS SELECT * FROM shape_keys ORDER BY random() LIMIT 3140;
    -- In key order, as charging hands its rows over.
    INSERT INTO shape_batches (n, flat, account, product) SELECT b,
      (SELECT jsonb_agg(jsonb_build_array(0, account_id, product, country_code, number_type,
          2, 120, 120, 2000) ORDER BY account_id, product, country_code, number_type)::text
       FROM pick),
      (SELECT jsonb_agg(jsonb_build_array(0, account_id, s) ORDER BY account_id)::text FROM
         (SELECT account_id, jsonb_object_agg(product || '|' || country_code || '|' ||
             number_type, jsonb_build_array(2, 120, 120, 2000)) AS s
          FROM pick GROUP BY account_id) AS g),
      (SELECT jsonb_agg(jsonb_build_array(0, account_id, product, s)
          ORDER BY account_id, product)::text FROM
         (SELECT account_id, product, jsonb_object_agg(country_code || '|' || number_type,
             jsonb_build_array(2, 120, 120, 2000)) AS s
          FROM pick GROUP BY account_id, product) AS g);
    -- Array literals with every text element quoted, as a client would write them.
    UPDATE shape_batches SET
      c_bucket = (SELECT '{' || string_agg('0', ',') || '}' FROM pick),
      c_account = (SELECT '{' || string_agg('"' || account_id || '"', ','
          ORDER BY account_id, product, country_code, number_type) || '}' FROM pick),
      c_product = (SELECT '{' || string_agg('"' || product || '"', ','
          ORDER BY account_id, product, country_code, number_type) || '}' FROM pick),
      c_country = (SELECT '{' || string_agg('"' || country_code || '"', ','
          ORDER BY account_id, product, country_code, number_type) || '}' FROM pick),
      c_type = (SELECT '{' || string_agg('"' || number_type || '"', ','
          ORDER BY account_id, product, country_code, number_type) || '}' FROM pick),
      c_sum = (SELECT '{' || string_agg('120', ',') || '}' FROM pick)
    WHERE n = b;
    DROP TABLE pick;
  END LOOP;
END $$;
VACUUM ANALYZE;
SELECT (SELECT count(*) FROM shape_keys) AS keys,
    (SELECT avg(jsonb_array_length(flat::jsonb)) FROM shape_batches) AS flat_rows,
    (SELECT avg(jsonb_array_length(account::jsonb)) FROM shape_batches) AS account_rows,
    (SELECT avg(jsonb_array_length(product::jsonb)) FROM shape_batches) AS product_rows;
EOF

# The flat statement is the daily upsert of `usage::rollups` as PostgreSQL receives it.
# A packed row's merge adds the batch's sums key by key and keeps the row's other keys.
merge() {
  cat <<EOF
ON CONFLICT ($1) DO UPDATE SET sums = t.sums || (
  SELECT jsonb_object_agg(e.key, CASE WHEN t.sums ? e.key THEN jsonb_build_array(
      CAST(t.sums -> e.key ->> 0 AS BIGINT) + CAST(e.value ->> 0 AS BIGINT),
      CAST(t.sums -> e.key ->> 1 AS BIGINT) + CAST(e.value ->> 1 AS BIGINT),
      CAST(t.sums -> e.key ->> 2 AS BIGINT) + CAST(e.value ->> 2 AS BIGINT),
      CAST(t.sums -> e.key ->> 3 AS BIGINT) + CAST(e.value ->> 3 AS BIGINT))
    ELSE e.value END)
  FROM jsonb_each(excluded.sums) AS e);
EOF
}
{
  cat <<'EOF'
PREPARE flat(text) AS
INSERT INTO shape_flat (bucket_ms, account_id, product, country_code, number_type,
    event_count, quantity, billable_quantity, cost_nanos)
SELECT CAST(value ->> 0 AS BIGINT), (value ->> 1), (value ->> 2), (value ->> 3), (value ->> 4),
    CAST(value ->> 5 AS BIGINT), CAST(value ->> 6 AS BIGINT), CAST(value ->> 7 AS BIGINT),
    CAST(value ->> 8 AS BIGINT)
FROM jsonb_array_elements(CAST($1 AS JSONB)) AS rows (value) WHERE true ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (bucket_ms, account_id, product, country_code, number_type) DO UPDATE SET
    event_count = shape_flat.event_count + excluded.event_count,
    quantity = shape_flat.quantity + excluded.quantity,
    billable_quantity = shape_flat.billable_quantity + excluded.billable_quantity,
    cost_nanos = shape_flat.cost_nanos + excluded.cost_nanos;
PREPARE arrays(text, text, text, text, text, text) AS
INSERT INTO shape_flat (bucket_ms, account_id, product, country_code, number_type,
    event_count, quantity, billable_quantity, cost_nanos)
SELECT * FROM unnest(CAST($1 AS BIGINT[]), CAST($2 AS TEXT[]), CAST($3 AS TEXT[]),
    CAST($4 AS TEXT[]), CAST($5 AS TEXT[]), CAST($6 AS BIGINT[]), CAST($6 AS BIGINT[]),
    CAST($6 AS BIGINT[]), CAST($6 AS BIGINT[])) AS rows WHERE true ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (bucket_ms, account_id, product, country_code, number_type) DO UPDATE SET
    event_count = shape_flat.event_count + excluded.event_count,
    quantity = shape_flat.quantity + excluded.quantity,
    billable_quantity = shape_flat.billable_quantity + excluded.billable_quantity,
    cost_nanos = shape_flat.cost_nanos + excluded.cost_nanos;
PREPARE account(text) AS
INSERT INTO shape_account AS t (bucket_ms, account_id, sums)
SELECT CAST(value ->> 0 AS BIGINT), (value ->> 1), (value -> 2)
FROM jsonb_array_elements(CAST($1 AS JSONB)) AS rows (value) WHERE true ORDER BY 1, 2
EOF
  merge "bucket_ms, account_id"
  cat <<'EOF'
PREPARE product(text) AS
INSERT INTO shape_product AS t (bucket_ms, account_id, product, sums)
SELECT CAST(value ->> 0 AS BIGINT), (value ->> 1), (value ->> 2), (value -> 3)
FROM jsonb_array_elements(CAST($1 AS JSONB)) AS rows (value) WHERE true ORDER BY 1, 2, 3
EOF
  merge "bucket_ms, account_id, product"
  echo '\timing on'
  for _ in $(seq "$rounds"); do
    for n in $(seq 30); do
      echo "SELECT flat, account, product, c_bucket, c_account, c_product, c_country," \
        "c_type, c_sum FROM shape_batches WHERE n = $n \\gset"
      for shape in flat arrays account product; do
        echo "\\echo shape $shape"
        if [ "$shape" = arrays ]; then
          echo "EXECUTE arrays(:'c_bucket', :'c_account', :'c_product', :'c_country', :'c_type', :'c_sum');"
        else
          echo "EXECUTE $shape(:'$shape');"
        fi
      done
    done
  done
} >"$work/run.sql"
psql "$url" -q -v ON_ERROR_STOP=1 -f "$work/run.sql" >"$work/out.txt"
rows=$(psql "$url" -At -c "SELECT avg(jsonb_array_length(flat::jsonb)), \
  avg(jsonb_array_length(account::jsonb)), avg(jsonb_array_length(product::jsonb)) \
  FROM shape_batches")
python3 - "$work/out.txt" "$rows" <<'EOF'
import re, statistics, sys
shape, times = None, {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("shape "):
        shape = line.split()[1]
        continue
    m = re.match(r"Time: ([\d.]+) ms", line)
    if m and shape:
        times.setdefault(shape, []).append(float(m.group(1)))
        shape = None
rows = dict(zip(["flat", "account", "product"], map(float, sys.argv[2].split("|"))))
rows["arrays"] = rows["flat"]
for name, ms in times.items():
    p50 = statistics.median(ms)
    print(f"{name:8} statements {len(ms):3}  rows {rows[name]:7.1f}  p50 {p50:6.1f} ms  "
          f"per row {p50 * 1000 / rows[name]:5.1f} us  per event {p50 * 1000 / 5000:4.2f} us  "
          f"vs flat {p50 / statistics.median(times['flat']):4.2f}")
EOF
psql "$url" -q -c "DROP TABLE shape_flat, shape_account, shape_product, shape_keys, shape_batches"
