-- Foreign-key checks on the durable path's hottest inserts, dropped (ADR 012).
--
-- A foreign-key check locks the referenced row (FOR KEY SHARE), which PostgreSQL records in the
-- row itself: every check dirties the parent's page and writes WAL, and when several open
-- transactions reference the same parent (every session of a station, every reading of a
-- transaction in one group commit) the lock becomes a MultiXact. Measured with
-- pg_stat_statements under the transaction-events benchmark: an INSERT INTO sessions took
-- 3.5 ms, most of it in these checks.
--
-- Both references are written only by code that read the parent in the same transaction
-- (a session's station is its charger's; a reading's transaction is looked up by the batch that
-- stores it), and neither parent is ever deleted (stations and transactions have no DELETE
-- anywhere). The columns and their indexes stay.
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_station_id_fkey;
ALTER TABLE meter_values DROP CONSTRAINT IF EXISTS meter_values_transaction_pk_fkey;
