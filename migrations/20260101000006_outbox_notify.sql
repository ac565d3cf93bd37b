-- Wake the outbox relays (LISTEN chargegrid_outbox) as soon as events are committed, instead of
-- leaving them to their poll interval. One notification per statement, delivered at commit.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chargegrid_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
