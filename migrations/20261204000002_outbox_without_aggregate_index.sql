-- The relay no longer looks for each aggregate's oldest pending event (it publishes the oldest
-- pending events in id order, one relay at a time): nothing reads this index, and every event
-- written paid for it.
DROP INDEX IF EXISTS outbox_aggregate_pending_idx;
