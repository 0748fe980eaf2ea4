-- The portal: server-side sessions and sign-in backoff, both in the database so that a
-- session survives a restart and works on every server behind a load balancer, and so that
-- a password guesser gets the same backoff from every server.

-- One row per signed-in browser. Only a digest of the session token is stored (the token
-- itself lives in the browser's cookie), so a copy of the database holds no usable session.
-- `acting_as_account_id` is set while a manager acts as one of its managed accounts ("log
-- in as"); acting ends at `acting_until_ms` at the latest.
CREATE TABLE portal_sessions (
    token_sha256 TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    acting_as_account_id TEXT REFERENCES accounts (id),
    acting_until_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    last_seen_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

-- Ending every session of an account (a password change), and purging expired rows.
CREATE INDEX portal_sessions_account ON portal_sessions (account_id);
CREATE INDEX portal_sessions_expires ON portal_sessions (expires_at_ms);

-- Failed sign-ins per subject: `email:<SHA-256 of the email's unique key>` (whether or not an
-- account has that email, so the backoff says nothing about which emails exist) or
-- `address:<client address or IPv6 /64>`.
CREATE TABLE portal_sign_in_failures (
    subject TEXT PRIMARY KEY,
    window_started_ms BIGINT NOT NULL,
    failures_in_window BIGINT NOT NULL,
    backoff_until_ms BIGINT NOT NULL,
    backoff_level BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
