-- The read path: a counter that tells every server when to drop its cache of authenticated
-- keys, and indexes that serve the managed-account list's `contains` filters.
--
-- The two engines index substrings differently, so part of this file is engine-specific:
-- lines after `-- engine: sqlite` or `-- engine: postgres` run only on that engine, up to
-- the next such line or `-- engine: all` (see `db::for_engine`).

-- Moved in the transaction of every change to an account or key that bears on access
-- (status, kind, keys, anything an authenticated caller's account carries). Servers read it
-- every few hundred milliseconds and drop their cache of keys when it moved.
CREATE TABLE access_generation (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO access_generation (id, generation) VALUES (1, 0);

-- engine: postgres
-- Trigram GIN indexes serve `LIKE '%…%'` on the folded columns; PostgreSQL re-checks every
-- candidate row, so results are exactly those of the plain match. Without fastupdate every
-- insert goes straight into the index, leaving no pending list for searches to wade through
-- until a vacuum merges it (measured: 7.6 ms instead of 0.3 ms over 100,000 new accounts).
-- The extension lives in one schema per database (public unless an administrator put it
-- elsewhere): its operator class is named with that schema, so a platform in another schema
-- (as the tests' are) finds it whatever its search_path.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
DO $$
DECLARE
    trgm_schema TEXT;
BEGIN
    SELECT n.nspname INTO trgm_schema FROM pg_extension e
        JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_trgm';
    EXECUTE format(
        'CREATE INDEX accounts_email_trigrams ON accounts '
        'USING gin (email_normalized %I.gin_trgm_ops) WITH (fastupdate = off)', trgm_schema);
    EXECUTE format(
        'CREATE INDEX accounts_organization_name_trigrams ON accounts '
        'USING gin (organization_name_folded %I.gin_trgm_ops) WITH (fastupdate = off)', trgm_schema);
END
$$;

-- engine: sqlite
-- An FTS5 trigram table over the folded columns (case_sensitive 1: they are folded already,
-- so the index compares exactly what the plain match compares), kept by triggers in the
-- transaction that writes each account. Its rows are keyed by `account_search_ids`, whose
-- INTEGER PRIMARY KEY survives VACUUM (the accounts table's implicit rowids may not).
-- Both tables are derived: `copy-database` skips them, the target's triggers rebuild them.
CREATE TABLE account_search_ids (
    search_id INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL UNIQUE
);
CREATE VIRTUAL TABLE account_search USING fts5(
    email_normalized,
    organization_name_folded,
    tokenize = 'trigram case_sensitive 1'
);
CREATE TRIGGER account_search_insert AFTER INSERT ON accounts BEGIN
    INSERT INTO account_search_ids (account_id) VALUES (NEW.id);
    INSERT INTO account_search (rowid, email_normalized, organization_name_folded)
        SELECT search_id, NEW.email_normalized, NEW.organization_name_folded
        FROM account_search_ids WHERE account_id = NEW.id;
END;
CREATE TRIGGER account_search_update
AFTER UPDATE OF email_normalized, organization_name_folded ON accounts BEGIN
    UPDATE account_search
        SET email_normalized = NEW.email_normalized,
            organization_name_folded = NEW.organization_name_folded
        WHERE rowid = (SELECT search_id FROM account_search_ids WHERE account_id = NEW.id);
END;
CREATE TRIGGER account_search_delete AFTER DELETE ON accounts BEGIN
    DELETE FROM account_search
        WHERE rowid = (SELECT search_id FROM account_search_ids WHERE account_id = OLD.id);
    DELETE FROM account_search_ids WHERE account_id = OLD.id;
END;
-- Accounts stored before this migration.
INSERT INTO account_search_ids (account_id) SELECT id FROM accounts ORDER BY created_at_ms, id;
INSERT INTO account_search (rowid, email_normalized, organization_name_folded)
    SELECT i.search_id, a.email_normalized, a.organization_name_folded
    FROM account_search_ids i JOIN accounts a ON a.id = i.account_id;
