-- One-time data upgrades that SQL alone cannot do (they need Rust, e.g. IDNA mapping of
-- email domains). A row marks an upgrade as done; the first server to start after an
-- upgrade ships claims the row and runs it in the same transaction, so it runs once.
CREATE TABLE maintenance_runs (
    name TEXT PRIMARY KEY,
    ran_at_ms BIGINT NOT NULL
);
