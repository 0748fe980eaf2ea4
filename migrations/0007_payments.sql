-- Money in: payment methods, card top-ups, carding defences, auto-recharge, and the state of
-- the built-in sandbox gateway. Same portable conventions as 0001: text ids, BIGINT numbers
-- and 0/1 flags, instants in epoch ms, money in nano-units.
--
-- No table holds a card number or a security code: Steward keeps the gateway's token and
-- what may be shown (brand, last 4 digits, expiry) plus a keyed fingerprint of the number.

-- Journal entry kinds are owned by the code (`ledger::EntryKind`) rather than by a CHECK, so
-- that a new kind (card payments and refunds here) needs no table rebuild on SQLite, which
-- cannot alter a CHECK. The column is copied without its CHECK under the same name.
ALTER TABLE journal_entries ADD COLUMN entry_kind TEXT NOT NULL DEFAULT '';
UPDATE journal_entries SET entry_kind = kind;
ALTER TABLE journal_entries DROP COLUMN kind;
ALTER TABLE journal_entries RENAME COLUMN entry_kind TO kind;

-- A card saved by an account. Deleted cards stay (deleted_at_ms set): attempts refer to
-- them, and carding rules count cards added over a window whether or not they were removed.
CREATE TABLE payment_methods (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    -- Which gateway issued the token (`sandbox`).
    gateway TEXT NOT NULL,
    -- The gateway's reusable token for the card; useless without the gateway's credentials.
    token TEXT NOT NULL,
    brand TEXT NOT NULL,
    last4 TEXT NOT NULL,
    exp_month BIGINT NOT NULL,
    exp_year BIGINT NOT NULL,
    -- Keyed digest of the card number: the same for the same card on every account.
    fingerprint TEXT NOT NULL,
    is_default BIGINT NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    deleted_at_ms BIGINT,
    -- A token is saved once: a token of another account's card is not found.
    CONSTRAINT payment_methods_gateway_token_key UNIQUE (gateway, token)
);

CREATE INDEX payment_methods_account ON payment_methods (account_id, created_at_ms);
-- One live copy of a card per account, and at most one default card per account.
CREATE UNIQUE INDEX payment_methods_live_card ON payment_methods (account_id, fingerprint)
    WHERE deleted_at_ms IS NULL;
CREATE UNIQUE INDEX payment_methods_default ON payment_methods (account_id)
    WHERE is_default = 1 AND deleted_at_ms IS NULL;

-- One attempt to charge a card, recorded before the gateway is called so that a crash or a
-- lost answer leaves a pending row to reconcile (by its id, the gateway's idempotency key).
CREATE TABLE payment_attempts (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    -- The manager tree the account belongs to: its manager, or itself.
    tree_id TEXT NOT NULL,
    payment_method_id TEXT NOT NULL REFERENCES payment_methods (id),
    fingerprint TEXT NOT NULL,
    amount_nanos BIGINT NOT NULL CHECK (amount_nanos > 0),
    -- 1 for attempts made by auto-recharge.
    auto_recharge BIGINT NOT NULL DEFAULT 0 CHECK (auto_recharge IN (0, 1)),
    -- A digest of the request, to tell a retry from another request with the same key.
    request_sha256 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'declined', 'failed')),
    gateway TEXT NOT NULL,
    gateway_charge_id TEXT,
    decline_code TEXT,
    -- The journal entry posted for a success (exactly one).
    entry_id TEXT,
    refunded_nanos BIGINT NOT NULL DEFAULT 0,
    -- Who asked: `owner`, `manager`, `operator` or `system`, and their id or label.
    actor_kind TEXT NOT NULL,
    actor_ref TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    settled_at_ms BIGINT,
    CONSTRAINT payment_attempts_entry_key UNIQUE (entry_id)
);

-- The client's Idempotency-Key of an attempt, claimed (under the account's row lock) before
-- the attempt is recorded. A table of its own: claiming a key never waits on an attempt row
-- that a settling transaction holds.
CREATE TABLE payment_idempotency_keys (
    account_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    attempt_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (account_id, idempotency_key)
);

-- Velocity counts per card, per account and per tree over a window; pending attempts.
CREATE INDEX payment_attempts_fingerprint ON payment_attempts (fingerprint, created_at_ms);
CREATE INDEX payment_attempts_account ON payment_attempts (account_id, created_at_ms);
CREATE INDEX payment_attempts_tree ON payment_attempts (tree_id, created_at_ms);
CREATE INDEX payment_attempts_pending ON payment_attempts (created_at_ms) WHERE status = 'pending';

-- Refunds of successful attempts (operator). Recorded before the gateway is called.
CREATE TABLE payment_refunds (
    id TEXT PRIMARY KEY,
    attempt_id TEXT NOT NULL REFERENCES payment_attempts (id),
    amount_nanos BIGINT NOT NULL CHECK (amount_nanos > 0),
    reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    gateway_refund_id TEXT,
    entry_id TEXT,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    settled_at_ms BIGINT,
    CONSTRAINT payment_refunds_entry_key UNIQUE (entry_id)
);

CREATE INDEX payment_refunds_attempt ON payment_refunds (attempt_id);

-- One row per carding subject (`card:<fingerprint>`, `account:<id>`, `tree:<id>`), locked
-- by every decision about it so that the limits hold across servers. Velocity counts start
-- at counted_from_ms (the last time the operator lifted a block of the subject) at the earliest.
CREATE TABLE payment_guards (
    subject TEXT PRIMARY KEY,
    counted_from_ms BIGINT NOT NULL DEFAULT 0,
    updated_at_ms BIGINT NOT NULL
);

-- Temporary blocks set by a carding rule. `account_id` is the account whose attempt tripped
-- it (or the tree's manager): the block and its lifting are on that account's audit trail.
CREATE TABLE payment_blocks (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    rule TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    payment_method_id TEXT,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    lifted_at_ms BIGINT,
    lifted_by TEXT
);

CREATE INDEX payment_blocks_subject ON payment_blocks (subject, expires_at_ms);

-- Operator settings of payments (amount bounds, carding thresholds and windows,
-- auto-recharge retries). A missing row means the built-in default; values are nano-units
-- for amounts, seconds for windows, counts otherwise.
CREATE TABLE payment_settings (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Auto-recharge preferences (Telnyx AutoRechargePref), one row per account that set any.
CREATE TABLE auto_recharge_prefs (
    account_id TEXT PRIMARY KEY REFERENCES accounts (id),
    enabled BIGINT NOT NULL CHECK (enabled IN (0, 1)),
    threshold_nanos BIGINT NOT NULL CHECK (threshold_nanos >= 0),
    recharge_nanos BIGINT NOT NULL CHECK (recharge_nanos >= 0),
    preference TEXT NOT NULL,
    invoice_enabled BIGINT NOT NULL CHECK (invoice_enabled IN (0, 1)),
    updated_at_ms BIGINT NOT NULL
);

-- The outbox of auto-recharge: written in the transaction that charges usage when it leaves
-- the balance at or below the threshold, at most one per account (the key). The worker
-- links the attempt it makes, and deletes the row when the recharge succeeded or gave up.
CREATE TABLE auto_recharge_triggers (
    account_id TEXT PRIMARY KEY REFERENCES accounts (id),
    created_at_ms BIGINT NOT NULL,
    next_attempt_at_ms BIGINT NOT NULL,
    failures BIGINT NOT NULL DEFAULT 0,
    attempt_id TEXT
);

CREATE INDEX auto_recharge_triggers_due ON auto_recharge_triggers (next_attempt_at_ms);

-- The sandbox gateway's own state: what a processor would keep on its side. Never a card
-- number or a security code: the token, what may be shown, the fingerprint and the test
-- behaviour of the card.
CREATE TABLE sandbox_cards (
    token TEXT PRIMARY KEY,
    brand TEXT NOT NULL,
    last4 TEXT NOT NULL,
    exp_month BIGINT NOT NULL,
    exp_year BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    behaviour TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- Charges by idempotency key: a repeated charge with the same key returns the first outcome.
CREATE TABLE sandbox_charges (
    idempotency_key TEXT PRIMARY KEY,
    charge_id TEXT NOT NULL,
    token TEXT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('succeeded', 'declined')),
    decline_code TEXT,
    refunded_nanos BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    CONSTRAINT sandbox_charges_charge_id_key UNIQUE (charge_id)
);

CREATE TABLE sandbox_refunds (
    idempotency_key TEXT PRIMARY KEY,
    refund_id TEXT NOT NULL,
    charge_id TEXT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
