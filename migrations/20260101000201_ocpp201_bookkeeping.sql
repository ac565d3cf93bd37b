-- OCPP 2.0.1 bookkeeping: why a charger last booted, and the lowest TransactionEvent seqNo seen
-- per transaction (with last_seq_no and seq_gaps it tells a repeated seqNo from a late one).

ALTER TABLE chargers ADD COLUMN last_boot_reason TEXT;

ALTER TABLE charger_transactions ADD COLUMN first_seq_no INTEGER;
