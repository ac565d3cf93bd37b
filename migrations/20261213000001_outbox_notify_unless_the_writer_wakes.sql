-- A connection with `chargegrid.outbox_notify = off` writes outbox rows without a NOTIFY: its
-- committer wakes the relay itself once the transaction committed (ADR 016, fifth amendment).
--
-- PostgreSQL serializes the commits of notifying transactions: each takes one lock for the whole
-- cluster before it commits and holds it until its commit record is flushed. Every transaction
-- that wrote an event committed, and flushed the WAL, one after the other, without group commit;
-- at 500 session ends/s the writers' commits waited on that lock for 0.57 backends on average.
-- The writers of the durable path (transactions and chargers) open their connections with the
-- setting; every other connection notifies as before.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('chargegrid.outbox_notify', true) IS DISTINCT FROM 'off'
        AND EXISTS (SELECT 1 FROM inserted) THEN
        PERFORM pg_notify('chargegrid_outbox', '');
    END IF;
    RETURN NULL;
END;
$$;
