-- Wake the outbox relays only when a statement inserted events. A statement-level trigger fires
-- even when its INSERT wrote no row, and a charger-writer batch of StatusNotifications is one
-- statement whose outbox insert writes rows only for the statuses that changed (ADR 023): a
-- batch that changed nothing must not wake the relay for an empty read. Still one notification
-- per statement, delivered at commit.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted) THEN
        PERFORM pg_notify('chargegrid_outbox', '');
    END IF;
    RETURN NULL;
END;
$$;
DROP TRIGGER outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
