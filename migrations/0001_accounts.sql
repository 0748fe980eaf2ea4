-- Accounts and their API keys.
--
-- Portable SQL shared by SQLite and PostgreSQL: text ids (UUIDs), BIGINT for every number
-- and flag (sqlx's Any driver maps both engines' BIGINT to i64; a 0/1 flag avoids boolean
-- differences between engines), instants as milliseconds since the Unix epoch (UTC).

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    -- Lower-cased email: the unique key that makes emails unique case-insensitively.
    email_normalized TEXT NOT NULL,
    organization_name TEXT NOT NULL,
    -- Lower-cased organization name, folded in Rust (Unicode-aware on both engines), for
    -- case-insensitive `contains` filters.
    organization_name_folded TEXT NOT NULL,
    -- argon2id PHC string; NULL means the account cannot sign in with a password.
    password_hash TEXT,
    kind TEXT NOT NULL CHECK (kind IN ('standard', 'manager', 'managed')),
    -- Set once at creation for managed accounts; never changes.
    manager_id TEXT REFERENCES accounts (id),
    status TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'cancelled', 'blocked')),
    managed_account_allow_custom_pricing BIGINT NOT NULL DEFAULT 0
        CHECK (managed_account_allow_custom_pricing IN (0, 1)),
    rollup_billing BIGINT NOT NULL DEFAULT 0 CHECK (rollup_billing IN (0, 1)),
    -- Manager limits, set by the operator.
    max_managed_accounts BIGINT NOT NULL DEFAULT 1000 CHECK (max_managed_accounts >= 0),
    allocatable_channels BIGINT NOT NULL DEFAULT 0 CHECK (allocatable_channels >= 0),
    -- A managed account's share of its manager's channel pool.
    channel_limit BIGINT NOT NULL DEFAULT 0 CHECK (channel_limit >= 0),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    CONSTRAINT accounts_email_normalized_key UNIQUE (email_normalized),
    CONSTRAINT accounts_manager_only_for_managed CHECK ((kind = 'managed') = (manager_id IS NOT NULL))
);

-- Lists of a manager's accounts, newest first, page by page.
CREATE INDEX accounts_manager_created ON accounts (manager_id, created_at_ms, id);

CREATE TABLE api_keys (
    -- The public identifier (the part of the key before `_`); safe to show and log.
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    -- SHA-256 of the whole key, hex. Keys are 256-bit random, so a fast hash is enough.
    secret_sha256 TEXT NOT NULL,
    -- Who minted it: the account itself, its manager, or NULL for the operator.
    created_by_account_id TEXT REFERENCES accounts (id),
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT,
    CONSTRAINT api_keys_secret_sha256_key UNIQUE (secret_sha256)
);

CREATE INDEX api_keys_account ON api_keys (account_id, created_at_ms);
