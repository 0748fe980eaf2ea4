-- Every rated event paid for three B-tree inserts (event id, account/time, entry). The entry
-- index served only verification (a full scan anyway) and the rare read-back of a batch that
-- held duplicates, which now goes through the event-id key instead.
DROP INDEX usage_records_entry;
