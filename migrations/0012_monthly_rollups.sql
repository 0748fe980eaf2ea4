-- Usage rollups by calendar month (UTC), beside the hourly and daily ones: a report over a
-- month (the common case: re-billing customers monthly) reads one row per account, product,
-- country and number type instead of one per day. Kept in the charging transaction like the
-- others; filled from the daily rollups for usage charged before this (a one-time upgrade).
CREATE TABLE usage_rollups_monthly (
    bucket_ms BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    product TEXT NOT NULL,
    country_code TEXT NOT NULL,
    number_type TEXT NOT NULL,
    event_count BIGINT NOT NULL,
    quantity BIGINT NOT NULL,
    billable_quantity BIGINT NOT NULL,
    cost_nanos BIGINT NOT NULL,
    PRIMARY KEY (bucket_ms, account_id, product, country_code, number_type)
);
