-- Usage events that were well-formed but could not be charged when they arrived (no price
-- list in force, no rate, an account id naming no account). Kept once per event id until a
-- re-rating charges them (the row then leaves in the charging transaction) so that nothing
-- a network element sent is lost. No foreign key on account_id: `unknown_account` rows name
-- accounts that do not exist (yet).
CREATE TABLE suspended_usage (
    event_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL CHECK (reason IN ('no_price_list', 'no_rate', 'unknown_account')),
    account_id TEXT NOT NULL,
    product TEXT NOT NULL,
    destination TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    occurred_at_ms BIGINT NOT NULL,
    lease_id TEXT,
    first_seen_at_ms BIGINT NOT NULL,
    last_seen_at_ms BIGINT NOT NULL,
    seen_count BIGINT NOT NULL
);

-- The operator's list reads oldest first, whole or by reason or by account.
CREATE INDEX suspended_usage_first_seen ON suspended_usage (first_seen_at_ms, event_id);
CREATE INDEX suspended_usage_reason ON suspended_usage (reason, first_seen_at_ms);
CREATE INDEX suspended_usage_account ON suspended_usage (account_id, first_seen_at_ms);
