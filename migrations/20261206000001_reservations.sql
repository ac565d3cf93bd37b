-- Reservations (docs/reservations.md): a driver holds a connector (or any connector of a
-- charger) for a while. Every change is a guarded transition in src/store/reservations.rs:
-- PENDING -> ACCEPTED | REJECTED | OCCUPIED | FAULTED | UNAVAILABLE (the charger's answer),
-- PENDING | ACCEPTED -> USED | EXPIRED | CANCELLED. The last three are final.

-- OCPP's reservationId is a 32-bit integer the charger echoes back: one sequence for all
CREATE SEQUENCE reservation_ocpp_id_seq AS INTEGER MINVALUE 1 MAXVALUE 2147483647 CYCLE;

CREATE TABLE reservations (
    id            UUID PRIMARY KEY,
    ocpp_id       INTEGER NOT NULL DEFAULT nextval('reservation_ocpp_id_seq'),
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    station_id    UUID NOT NULL REFERENCES stations (id) ON DELETE CASCADE,
    charger_id    TEXT NOT NULL REFERENCES chargers (id) ON DELETE CASCADE,
    -- NULL: any connector (1.6 connectorId 0, 2.0.1 without evseId)
    connector_id  INTEGER CHECK (connector_id IS NULL OR connector_id > 0),
    -- the token the charger holds the connector for, and the group whose cards it accepts
    id_tag        TEXT NOT NULL,
    group_id_tag  TEXT,
    status        TEXT NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'ACCEPTED',
                  'REJECTED', 'OCCUPIED', 'FAULTED', 'UNAVAILABLE', 'USED', 'EXPIRED', 'CANCELLED')),
    -- why it ended: the charger's refusal, who cancelled, what used it
    reason        TEXT,
    session_id    UUID,
    expires_at    TIMESTAMPTZ NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- the id a charger names; a cycled sequence never meets a live reservation's id again
CREATE UNIQUE INDEX reservations_live_ocpp_id ON reservations (ocpp_id)
    WHERE status IN ('PENDING', 'ACCEPTED');
CREATE INDEX reservations_ocpp_id ON reservations (ocpp_id);
-- what holds a charger now (start checks, the connector view, the expiry sweep)
CREATE INDEX reservations_live_charger ON reservations (charger_id, connector_id)
    WHERE status IN ('PENDING', 'ACCEPTED');
CREATE INDEX reservations_live_expiry ON reservations (expires_at)
    WHERE status IN ('PENDING', 'ACCEPTED');
CREATE INDEX reservations_user ON reservations (user_id, created_at DESC);
