-- Monthly invoices derived from the ledger, the platform's invoice numbering, the record of
-- periods closed for every account, and the platform's own settings (its name on invoices).
-- Same portable conventions as 0001: text ids, BIGINT numbers and 0/1 flags, instants in
-- epoch ms, money in nano-units.

-- One closed month of one paying account. Written once, in one transaction with its lines
-- and its number, and never changed: usage charged later for the month appears on a later
-- invoice as late usage. Money columns are movements of the account's balance (credits
-- positive, usage negative), so closing = opening + usage + credits + adjustments +
-- payments + other, and each equals the ledger's movements of that kind in the period
-- (verify-ledger checks it).
CREATE TABLE invoices (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    -- The calendar month in UTC, `YYYY-MM`.
    period TEXT NOT NULL,
    period_start_ms BIGINT NOT NULL,
    period_end_ms BIGINT NOT NULL,
    -- Sequential across the platform, without gaps: taken from invoice_counters in the
    -- transaction that writes the invoice.
    invoice_number BIGINT NOT NULL,
    -- The id of the PDF document (Telnyx `file_id`).
    file_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    opening_balance_nanos BIGINT NOT NULL,
    usage_nanos BIGINT NOT NULL,
    credits_nanos BIGINT NOT NULL,
    adjustments_nanos BIGINT NOT NULL,
    payments_nanos BIGINT NOT NULL,
    other_nanos BIGINT NOT NULL,
    closing_balance_nanos BIGINT NOT NULL,
    -- What the account owes: the closing balance's shortfall below zero, else 0.
    amount_due_nanos BIGINT NOT NULL CHECK (amount_due_nanos >= 0),
    -- 1 when the invoice may show unit prices (a manager's or standard account's), 0 for a
    -- managed account, whose lines were stored without rates.
    shows_rates BIGINT NOT NULL CHECK (shows_rates IN (0, 1)),
    -- As they were at closing: the invoice never changes when they do.
    platform_name TEXT NOT NULL,
    business_name TEXT NOT NULL,
    email TEXT NOT NULL,
    -- The document, rendered once at closing.
    pdf BYTEA NOT NULL,
    pdf_sha256 TEXT NOT NULL,
    -- Who closed it (`system:invoices`, `operator:cli` …).
    closed_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    -- Each account-month is closed exactly once, whichever server gets there first.
    CONSTRAINT invoices_account_period_key UNIQUE (account_id, period),
    CONSTRAINT invoices_invoice_number_key UNIQUE (invoice_number)
);

-- An account's invoices by period (lists, sorted either way).
CREATE INDEX invoices_account_start ON invoices (account_id, period_start_ms);

-- The lines of an invoice. `section_account_id` is NULL for the payer's own usage and money
-- movements, and names the rollup-billing managed account whose usage a manager pays.
-- `amount_nanos` is the line's movement of the balance (usage negative).
CREATE TABLE invoice_lines (
    invoice_id TEXT NOT NULL REFERENCES invoices (id),
    seq BIGINT NOT NULL,
    -- usage, credit, adjustment, payment, other.
    category TEXT NOT NULL,
    section_account_id TEXT,
    section_name TEXT,
    -- Usage lines: the product; `usage_month` (`YYYY-MM`) only for late usage, charged in
    -- this period for an earlier month; `rate_nanos` only when the invoice shows rates.
    product TEXT,
    usage_month TEXT,
    rate_nanos BIGINT,
    event_count BIGINT NOT NULL,
    quantity BIGINT NOT NULL,
    billable_quantity BIGINT NOT NULL,
    -- Money lines: the journal entry, its kind, when it was posted and why.
    entry_id TEXT,
    entry_kind TEXT,
    posted_at_ms BIGINT,
    description TEXT,
    amount_nanos BIGINT NOT NULL,
    PRIMARY KEY (invoice_id, seq)
);

-- The platform's last invoice number; locked by the transaction that writes an invoice.
CREATE TABLE invoice_counters (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    last_number BIGINT NOT NULL
);

INSERT INTO invoice_counters (id, last_number) VALUES (1, 0);

-- Periods for which every paying account has its invoice: the closing task skips them.
CREATE TABLE invoice_periods (
    period TEXT PRIMARY KEY,
    completed_at_ms BIGINT NOT NULL
);

-- Invoices read one payer's usage of one period. Records are written with their charging
-- entry's instant, so this range is the period's usage by posting time.
CREATE INDEX usage_records_payer_created ON usage_records (payer_account_id, created_at_ms);

-- Operator settings that every server must read alike (the platform's name on invoices).
-- A missing row means the built-in default.
CREATE TABLE platform_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
