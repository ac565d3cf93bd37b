-- A database in service for the session benchmarks: 1,000 past drivers who charged on 200
-- chargers of a station of their own (offline: they take no part in the run), with `sessions`
-- finished sessions over the past 60 days, each with its transaction (1.6 and 2.0.1 alike), its paid invoice, four readings and
-- the consumers' de-duplication rows. The caller runs VACUUM ANALYZE after it.
--
-- Why: a database created empty for a run makes PostgreSQL plan the hot statements for tables of
-- a few hundred rows (hash joins over sequential scans of charger_transactions and invoices), and
-- those plans stay cached on the pooled connections while the tables grow during the run. A
-- database in service, analyzed by autovacuum, never sees that: 21.7 million tuples were read by
-- sequential scans in one 20 s run of the transaction-events benchmark.
--
-- The caller creates `bench_history(sessions int)` (a temporary table, one row) in the same
-- connection first. The history's station is 'History station', its chargers HIST-*, its
-- drivers history-*@example.com, so the benchmarks' own figures leave them out.
BEGIN;
INSERT INTO users (id, email, name, password_hash, role)
SELECT gen_random_uuid(), 'history-' || i || '@example.com', 'History Driver', 'not-a-login', 'DRIVER'
FROM generate_series(1, 1000) i;
INSERT INTO id_tags (id_tag, user_id, kind, token_type)
SELECT 'HIST' || substr(md5(id::text), 1, 16), id, 'RFID', 'ISO14443' FROM users WHERE email LIKE 'history-%@example.com';
INSERT INTO stations (id, name, latitude, longitude) VALUES (gen_random_uuid(), 'History station', 48.14, 11.58);
INSERT INTO chargers (id, station_id)
SELECT 'HIST-' || lpad(i::text, 4, '0'), s.id FROM stations s, generate_series(0, 199) i WHERE s.name = 'History station';
CREATE TEMP TABLE hist AS
SELECT i, gen_random_uuid() AS session_id, t.user_id, t.id_tag, 'HIST-' || lpad((i % 200)::text, 4, '0') AS charger_id,
    i % 2 = 0 AS v16, now() - interval '60 days' - interval '1 hour' + (interval '60 days' / b.sessions) * i AS started_at, s.id AS station_id
FROM bench_history b CROSS JOIN generate_series(0, b.sessions - 1) i
JOIN stations s ON s.name = 'History station'
JOIN (SELECT row_number() OVER (ORDER BY id_tag) - 1 AS n, user_id, id_tag FROM id_tags WHERE id_tag LIKE 'HIST%') t
    ON t.n = i % 1000;
INSERT INTO sessions (id, user_id, station_id, charger_id, connector_id, id_tag, status, origin, start_time, end_time,
    meter_start_wh, meter_last_wh, energy_kwh, power_kw, stop_reason, cost, currency, created_at, updated_at)
SELECT session_id, user_id, station_id, charger_id, 1, id_tag, 'COMPLETED', 'CHARGER', started_at,
    started_at + interval '40 minutes', 0, 20000, 20, 0, 'Local', 7.00, 'EUR', started_at, started_at + interval '40 minutes'
FROM hist;
INSERT INTO charger_transactions (charger_id, connector_id, transaction_id, transaction_ref, id_tag, id_tag_status, session_id,
    started_at, meter_start_wh, stopped_at, meter_stop_wh, stop_reason, last_seq_no, first_seq_no, created_at, updated_at)
SELECT charger_id, 1, CASE WHEN v16 THEN nextval('ocpp16_transaction_id_seq')::integer END,
    CASE WHEN NOT v16 THEN 'HIST-' || i END, id_tag, 'Accepted', session_id, started_at, 0,
    started_at + interval '40 minutes', 20000, 'Local', CASE WHEN NOT v16 THEN 21 END, CASE WHEN NOT v16 THEN 0 END,
    started_at, started_at + interval '40 minutes'
FROM hist;
INSERT INTO invoices (id, session_id, user_id, amount, cost_amount, currency, energy_kwh, duration_minutes, status, due_date,
    paid_at, created_at, updated_at)
SELECT gen_random_uuid(), session_id, user_id, 7.00, 7.00, 'EUR', 20, 40, 'PAID', started_at + interval '14 days',
    started_at + interval '40 minutes', started_at + interval '40 minutes', started_at + interval '40 minutes'
FROM hist;
INSERT INTO meter_values (charger_id, connector_id, transaction_pk, session_id, sampled_at, measurand, unit, value, received_at)
SELECT h.charger_id, 1, t.id, h.session_id, h.started_at + k * interval '10 minutes', 'Energy.Active.Import.Register', 'Wh',
    k * 5000, h.started_at + k * interval '10 minutes'
FROM hist h JOIN charger_transactions t ON t.session_id = h.session_id CROSS JOIN generate_series(1, 4) k;
INSERT INTO processed_events (consumer, event_id, processed_at)
SELECT c, gen_random_uuid(), started_at + interval '40 minutes'
FROM hist CROSS JOIN unnest(ARRAY['billing', 'notifications', 'notifications']) c;
DROP TABLE hist;
COMMIT;
