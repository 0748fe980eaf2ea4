-- The monthly rollups hold the days before `closed_until_ms` (a UTC midnight). A day from it
-- on is summed in the daily rollups only, until a background task closes it: adds its daily
-- rows to its month and moves the mark past it. Charging today's usage then upserts one
-- rollup row per key instead of two; a report reads a month as its monthly rows plus its
-- days not yet closed.
CREATE TABLE usage_rollups_closed (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    closed_until_ms BIGINT NOT NULL
);

-- Until now every day was added to its month as it was charged: all days held are closed.
INSERT INTO usage_rollups_closed (id, closed_until_ms)
SELECT 1, COALESCE(MAX(bucket_ms) + 86400000, 0) FROM usage_rollups_daily;
