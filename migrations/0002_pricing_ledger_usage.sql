-- Price lists, the double-entry ledger, rated usage, channel leases, service keys, audit.
-- Same portable conventions as 0001: text ids, BIGINT numbers, instants in epoch ms,
-- money in nano-units of the currency (BIGINT).

CREATE TABLE price_lists (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    currency TEXT NOT NULL,
    -- Usage that occurred before this instant is not rated with this list.
    effective_from_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE price_list_rates (
    price_list_id TEXT NOT NULL REFERENCES price_lists (id),
    product TEXT NOT NULL,
    -- E.164 digits without '+'; '' is the catch-all. Longest matching prefix wins.
    prefix TEXT NOT NULL,
    -- Per minute (voice), per message part (SMS/MMS) or per number-month (rental).
    rate_nanos BIGINT NOT NULL CHECK (rate_nanos >= 0),
    -- Voice billing increments in seconds; NULL for other products.
    initial_increment_s BIGINT,
    subsequent_increment_s BIGINT,
    PRIMARY KEY (price_list_id, product, prefix)
);

-- Which list an account rates with, from when. account_id NULL is the platform default.
-- Rows are never updated: a new assignment supersedes older ones from its instant on, so
-- usage already rated keeps the list that rated it.
CREATE TABLE price_list_assignments (
    id TEXT PRIMARY KEY,
    account_id TEXT REFERENCES accounts (id),
    price_list_id TEXT NOT NULL REFERENCES price_lists (id),
    effective_from_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE INDEX price_list_assignments_account ON price_list_assignments (account_id, effective_from_ms);

-- Bumped by every pricing change, in the same transaction: servers compare it once per
-- batch and reload their in-memory rate index when it moved.
CREATE TABLE pricing_generation (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);

INSERT INTO pricing_generation (id, generation) VALUES (1, 0);

-- One row per money movement. Its postings sum to zero.
CREATE TABLE journal_entries (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('usage', 'credit', 'adjustment', 'credit_limit')),
    -- The account whose money moves (for usage: the account of the batch's first payer).
    account_id TEXT REFERENCES accounts (id),
    reason TEXT,
    -- Who asked: an operator key id, `cli`, or `ingest:<key id>`.
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- Books: `balance:<account>` (the account's money), `credit_line:<account>` (its credit
-- limit), `platform:revenue`, `platform:funding`, `platform:adjustments`,
-- `platform:credit_lines`. Credits are positive, debits negative.
CREATE TABLE postings (
    entry_id TEXT NOT NULL REFERENCES journal_entries (id),
    seq BIGINT NOT NULL,
    book TEXT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    -- For rollup charges: the managed account whose usage this is.
    spender_account_id TEXT,
    PRIMARY KEY (entry_id, seq)
);

CREATE INDEX postings_book ON postings (book);

-- Cached sum of each book's postings, updated in the same transaction as the postings.
CREATE TABLE book_balances (
    book TEXT PRIMARY KEY,
    balance_nanos BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Idempotency of money-moving requests: the first response is kept and replayed.
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, idempotency_key)
);

-- Rated usage. The event id is the primary key: an event is charged once, ever.
CREATE TABLE usage_records (
    event_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    payer_account_id TEXT NOT NULL REFERENCES accounts (id),
    product TEXT NOT NULL,
    destination TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    billable_quantity BIGINT NOT NULL,
    price_list_id TEXT NOT NULL,
    rate_prefix TEXT NOT NULL,
    rate_nanos BIGINT NOT NULL,
    cost_nanos BIGINT NOT NULL,
    occurred_at_ms BIGINT NOT NULL,
    lease_id TEXT,
    -- The journal entry that charged it (written in the same transaction).
    entry_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE INDEX usage_records_account_time ON usage_records (account_id, occurred_at_ms);
CREATE INDEX usage_records_entry ON usage_records (entry_id);

-- Channel leases of admitted calls; live while not released and not expired.
CREATE TABLE channel_leases (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    product TEXT NOT NULL,
    destination TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    released_at_ms BIGINT
);

CREATE INDEX channel_leases_live ON channel_leases (account_id, released_at_ms, expires_at_ms);

-- Keys of the operator API and of network elements (ingest, admission).
CREATE TABLE service_keys (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('operator', 'ingest')),
    secret_sha256 TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT,
    CONSTRAINT service_keys_secret_sha256_key UNIQUE (secret_sha256)
);

-- Who did what, for operator actions on money and pricing.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    account_id TEXT,
    details TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE INDEX audit_events_account ON audit_events (account_id, created_at_ms);
