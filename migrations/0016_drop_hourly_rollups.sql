-- Reports cover whole UTC days, read from the daily and monthly rollups: the hourly ones
-- are no longer kept (they cost ingestion nearly a row per event).
DROP TABLE usage_rollups_hourly;
