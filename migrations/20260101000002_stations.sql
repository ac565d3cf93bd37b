-- Stations and their connections, normalised from the OpenChargeMap mirror (upsert by ocm_id,
-- stable internal ids), plus the tariffs billing prices sessions with.

CREATE TABLE tariffs (
    id                UUID PRIMARY KEY,
    name              TEXT NOT NULL,
    currency          CHAR(3) NOT NULL,
    price_per_kwh     NUMERIC(10, 4) NOT NULL CHECK (price_per_kwh >= 0),
    price_per_minute  NUMERIC(10, 4) NOT NULL DEFAULT 0 CHECK (price_per_minute >= 0),
    grace_minutes     INTEGER NOT NULL DEFAULT 0 CHECK (grace_minutes >= 0),
    session_fee       NUMERIC(10, 2) NOT NULL DEFAULT 0 CHECK (session_fee >= 0),
    is_default        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- At most one default tariff.
CREATE UNIQUE INDEX tariffs_one_default ON tariffs (is_default) WHERE is_default;

CREATE TABLE stations (
    id                UUID PRIMARY KEY,
    ocm_id            INTEGER UNIQUE,
    name              TEXT NOT NULL,
    address_line      TEXT,
    town              TEXT,
    state             TEXT,
    postcode          TEXT,
    country           TEXT,
    latitude          DOUBLE PRECISION NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude         DOUBLE PRECISION NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    operator          TEXT,
    status            TEXT,
    usage_type        TEXT,
    usage_cost        TEXT,
    number_of_points  INTEGER,
    last_verified     TIMESTAMPTZ,
    ocm_modified_at   TIMESTAMPTZ,
    -- false once OCM stops returning the POI as live; kept for sessions that point at it
    is_live           BOOLEAN NOT NULL DEFAULT TRUE,
    tariff_id         UUID REFERENCES tariffs (id),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE connections (
    id                 UUID PRIMARY KEY,
    station_id         UUID NOT NULL REFERENCES stations (id) ON DELETE CASCADE,
    ocm_connection_id  INTEGER,
    type               TEXT NOT NULL,
    connection_type_id INTEGER,
    level              INTEGER,
    power_kw           DOUBLE PRECISION,
    current_type       TEXT,
    amps               INTEGER,
    voltage            INTEGER,
    quantity           INTEGER,
    status             TEXT,
    UNIQUE (station_id, ocm_connection_id)
);
CREATE INDEX connections_station_idx ON connections (station_id);
