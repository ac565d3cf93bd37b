-- Charging sessions (the domain view), the charger's transactions (the OCPP view) and meter values.

CREATE TABLE sessions (
    id                UUID PRIMARY KEY,
    user_id           UUID NOT NULL REFERENCES users (id),
    station_id        UUID NOT NULL REFERENCES stations (id),
    charger_id        TEXT NOT NULL REFERENCES chargers (id),
    connector_id      INTEGER,
    id_tag            TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('PENDING', 'IN_PROGRESS', 'STOPPING', 'COMPLETED', 'REJECTED', 'FAILED')),
    origin            TEXT NOT NULL CHECK (origin IN ('APP', 'CHARGER')),
    -- 2.0.1 remoteStartId we sent with RequestStartTransaction
    remote_start_id   INTEGER,
    start_time        TIMESTAMPTZ,
    end_time          TIMESTAMPTZ,
    meter_start_wh    NUMERIC(16, 3),
    meter_last_wh     NUMERIC(16, 3),
    energy_kwh        NUMERIC(14, 3) NOT NULL DEFAULT 0 CHECK (energy_kwh >= 0),
    power_kw          DOUBLE PRECISION,
    max_power_kw      DOUBLE PRECISION CHECK (max_power_kw IS NULL OR max_power_kw > 0),
    max_energy_kwh    NUMERIC(14, 3) CHECK (max_energy_kwh IS NULL OR max_energy_kwh > 0),
    stop_reason       TEXT,
    failure_reason    TEXT,
    cost              NUMERIC(14, 2),
    currency          CHAR(3),
    -- a PENDING session not started by then becomes FAILED
    pending_expires_at TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sessions_user_idx ON sessions (user_id, created_at DESC);
CREATE INDEX sessions_open_idx ON sessions (status) WHERE status IN ('PENDING', 'IN_PROGRESS', 'STOPPING');
-- Exactly one open session per connector: concurrent startSession calls race on this index.
CREATE UNIQUE INDEX sessions_one_open_per_connector ON sessions (charger_id, connector_id)
    WHERE status IN ('PENDING', 'IN_PROGRESS', 'STOPPING') AND connector_id IS NOT NULL;

-- Every transaction a charger reports, whether or not it belongs to a known user's session.
CREATE TABLE charger_transactions (
    id                 BIGSERIAL PRIMARY KEY,
    charger_id         TEXT NOT NULL REFERENCES chargers (id),
    connector_id       INTEGER NOT NULL,
    -- 1.6: our integer transactionId; 2.0.1: NULL
    transaction_id     INTEGER UNIQUE,
    -- 2.0.1: the charger's transactionId string; 1.6: NULL
    transaction_ref    TEXT,
    id_tag             TEXT,
    id_tag_status      TEXT,
    session_id         UUID REFERENCES sessions (id),
    started_at         TIMESTAMPTZ NOT NULL,
    meter_start_wh     NUMERIC(16, 3),
    stopped_at         TIMESTAMPTZ,
    meter_stop_wh      NUMERIC(16, 3),
    stop_reason        TEXT,
    -- 2.0.1 TransactionEvent seqNo bookkeeping
    last_seq_no        INTEGER,
    seq_gaps           INTEGER[] NOT NULL DEFAULT '{}',
    offline_events     INTEGER NOT NULL DEFAULT 0,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- A repeated StartTransaction (same connector, idTag, timestamp, meterStart) maps to the same row.
CREATE UNIQUE INDEX charger_transactions_dedup ON charger_transactions (charger_id, connector_id, id_tag, started_at, meter_start_wh)
    WHERE transaction_id IS NOT NULL;
CREATE UNIQUE INDEX charger_transactions_ref ON charger_transactions (charger_id, transaction_ref)
    WHERE transaction_ref IS NOT NULL;
CREATE INDEX charger_transactions_session_idx ON charger_transactions (session_id);

CREATE TABLE meter_values (
    id               BIGSERIAL PRIMARY KEY,
    charger_id       TEXT NOT NULL,
    connector_id     INTEGER NOT NULL,
    transaction_pk   BIGINT REFERENCES charger_transactions (id),
    session_id       UUID,
    sampled_at       TIMESTAMPTZ NOT NULL,
    measurand        TEXT NOT NULL,
    phase            TEXT,
    context          TEXT,
    location         TEXT,
    -- normalised: energy in Wh, power in W, current in A, voltage in V, SoC in percent
    unit             TEXT NOT NULL,
    value            NUMERIC(20, 4) NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX meter_values_session_idx ON meter_values (session_id, sampled_at);
CREATE INDEX meter_values_charger_idx ON meter_values (charger_id, sampled_at);
