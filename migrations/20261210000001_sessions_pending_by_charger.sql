-- A charger's PENDING sessions straight from an index. A charger's start (1.6 StartTransaction,
-- 2.0.1 TransactionEvent Started) links its transaction to the app session `startSession` left
-- PENDING for that charger (`starts_and_stops::LINKING_SESSIONS`, `sessions::pending_for`).
-- No index served that look-up: `sessions_one_open_per_connector` leaves out sessions without a
-- connector, which the look-up must find, so the planner read every PENDING entry of
-- `sessions_open_idx` (dead ones included, until vacuum) for each start of a batch. In the
-- start-session benchmark that made a start cost ~565 µs of PostgreSQL time against ~330 µs for
-- a charger-started session. PENDING sessions are few at any time, so the index stays small.
CREATE INDEX sessions_pending_by_charger ON sessions (charger_id) WHERE status = 'PENDING';
