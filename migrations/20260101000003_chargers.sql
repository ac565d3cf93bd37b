-- OCPP chargers, the live status of their connectors, and the 1.6 transaction id sequence.

CREATE TABLE chargers (
    -- the charge point identity from the OCPP URL
    id                TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 48 AND position(':' IN id) = 0),
    station_id        UUID REFERENCES stations (id),
    -- argon2 PHC string of the HTTP Basic password (security profile 1/2); NULL = no password
    password_hash     TEXT,
    protocol          TEXT CHECK (protocol IN ('OCPP16', 'OCPP201')),
    vendor            TEXT,
    model             TEXT,
    serial_number     TEXT,
    firmware_version  TEXT,
    iccid             TEXT,
    imsi              TEXT,
    meter_type        TEXT,
    meter_serial      TEXT,
    online            BOOLEAN NOT NULL DEFAULT FALSE,
    -- the replica holding the charger's socket and that socket's id: only the holder of the
    -- current connection may mark the charger offline (newest connection wins)
    node_id           TEXT,
    connection_id     UUID,
    last_seen         TIMESTAMPTZ,
    last_boot_at      TIMESTAMPTZ,
    auto_provisioned  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX chargers_station_idx ON chargers (station_id);
CREATE INDEX chargers_online_idx ON chargers (online);

CREATE TABLE connector_status (
    charger_id        TEXT NOT NULL REFERENCES chargers (id) ON DELETE CASCADE,
    -- 1.6 connectorId, or the 2.0.1 evseId (connector 0 = the charger itself)
    connector_id      INTEGER NOT NULL CHECK (connector_id >= 0),
    status            TEXT NOT NULL,
    error_code        TEXT,
    info              TEXT,
    vendor_error_code TEXT,
    -- the charger's own timestamp of the report, if it sent one
    reported_at       TIMESTAMPTZ,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (charger_id, connector_id)
);

-- OCPP 1.6 transactionIds: positive, increasing, 32-bit.
CREATE SEQUENCE ocpp16_transaction_id_seq AS INTEGER START WITH 1 MINVALUE 1 MAXVALUE 2147483647 NO CYCLE;

-- Charger reports that need no table of their own but must not be lost: DataTransfer,
-- diagnostics/firmware status, security events, and StopTransactions for unknown transactions
-- (kept for reconciliation).
CREATE TABLE charger_reports (
    id           BIGSERIAL PRIMARY KEY,
    charger_id   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    payload      JSONB NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX charger_reports_charger_idx ON charger_reports (charger_id, received_at);
