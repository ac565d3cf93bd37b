-- The outbox's event_id loses its unique index. Nothing looks an outbox row up by its event id
-- (the relay reads and deletes by id, consumers de-duplicate on eventId in processed_events),
-- and the id is a UUIDv7 drawn by the writer of the event, unique by construction; yet every
-- event paid for an entry in that index: seven a session, ~3,500 a second at 500 session ends/s,
-- beside the two indexes on id the relay reads by.
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_event_id_key;
