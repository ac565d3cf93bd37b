-- meter_values loses its id column and primary key. Nothing reads a sample by id (the meter
-- curve and every other reader go by session, transaction or charger), yet every sample paid
-- for a sequence value and an entry in the primary key's index: ~19,000 samples/s under the
-- transaction-events benchmark. Measured with pgbench on 400-row inserts into the table as it
-- was: 10-15 % less time per row without them.
--
-- The table is append-only. Should rows ever be deleted or updated under logical replication,
-- give it REPLICA IDENTITY FULL (or a key) then.
ALTER TABLE meter_values DROP COLUMN IF EXISTS id;
