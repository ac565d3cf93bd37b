-- meter_values loses its index on (charger_id, sampled_at): no query reads it (the meter curve
-- goes through meter_values_session_idx), and every sample paid for an entry in it. Measured on
-- 400-row inserts into the table as it is (pgbench, one client): 3.6 ms with the index, 2.9 ms
-- without. The foreign key on transaction_pk went earlier (ADR 012). A query by charger over
-- time, if one comes, gets an index chosen for it.
DROP INDEX IF EXISTS meter_values_charger_idx;
