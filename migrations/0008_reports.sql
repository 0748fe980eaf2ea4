-- Usage reports: what each record's destination is (derived once, at ingestion, so reports
-- never re-parse numbers), rollups maintained in the transaction that charges the usage
-- (so a report is never ahead of or behind the ledger), report jobs, and the platform's
-- secret for signed links.

-- ISO 3166 alpha-2 region of the destination ('' when it has none, e.g. +800 numbers) and
-- its kind (geographic, mobile, toll-free …). NULL only on rows written before this.
ALTER TABLE usage_records ADD COLUMN country_code TEXT;
ALTER TABLE usage_records ADD COLUMN number_type TEXT;

-- Sums of charged usage per account, product, destination country and number type, by UTC
-- hour and by UTC day. The time bucket leads the key, so the rows a batch of recent usage
-- touches sit together (a small working set), and a report reads a contiguous range.
-- `quantity` is the reported quantity (seconds, parts, months), `billable_quantity` the
-- quantity after billing increments.
CREATE TABLE usage_rollups_hourly (
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

CREATE TABLE usage_rollups_daily (
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

-- Asynchronous usage-report jobs (the Telnyx legacy voice and messaging reports). A server
-- claims a pending job by setting `claimed_until` (a lease); a job whose lease ran out (its
-- server died) is claimed again by one server.
CREATE TABLE report_jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('voice', 'messaging')),
    owner_account_id TEXT NOT NULL REFERENCES accounts (id),
    -- The request as given (JSON), and whether cost columns may be shown to the owner.
    request TEXT NOT NULL,
    show_cost BIGINT NOT NULL CHECK (show_cost IN (0, 1)),
    -- 1 pending, 2 complete, 3 failed (Telnyx's codes).
    status BIGINT NOT NULL CHECK (status IN (1, 2, 3)),
    failure_reason TEXT,
    result TEXT,
    csv TEXT,
    claimed_until_ms BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    deleted_at_ms BIGINT
);

CREATE INDEX report_jobs_owner ON report_jobs (owner_account_id, kind, created_at_ms);
CREATE INDEX report_jobs_pending ON report_jobs (status, created_at_ms);

-- Platform secrets generated once and shared by every server on the database (e.g. the key
-- that signs download links).
CREATE TABLE platform_secrets (
    name TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
