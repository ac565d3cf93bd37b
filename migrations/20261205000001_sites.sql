-- Load management (docs/smart-charging.md): a site has one grid connection, optional circuits
-- below it, and chargers attached to the grid connection or to a circuit. The allocator shares
-- each limit among the sessions below it.

CREATE TABLE sites (
    id                   UUID PRIMARY KEY,
    name                 TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    -- per phase, in ampere
    grid_limit_amps      DOUBLE PRECISION NOT NULL CHECK (grid_limit_amps > 0 AND grid_limit_amps <= 100000),
    phases               SMALLINT NOT NULL DEFAULT 3 CHECK (phases IN (1, 3)),
    voltage              DOUBLE PRECISION NOT NULL DEFAULT 230 CHECK (voltage BETWEEN 100 AND 1000),
    margin_amps          DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (margin_amps >= 0),
    -- load on the connection that is not a charger of the site: a fixed share per phase, and
    -- the last value reported live through the API (used while it is fresh)
    other_load_amps      DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (other_load_amps >= 0),
    reported_load_amps   DOUBLE PRECISION[] CHECK (reported_load_amps IS NULL OR cardinality(reported_load_amps) = 3),
    reported_load_at     TIMESTAMPTZ,
    -- the last allocation's snapshot (Site.load): allocated and measured per phase, per session
    load                 JSONB,
    load_at              TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE site_circuits (
    id          UUID PRIMARY KEY,
    site_id     UUID NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    -- NULL: directly below the grid connection
    parent_id   UUID REFERENCES site_circuits (id) ON DELETE CASCADE,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    limit_amps  DOUBLE PRECISION NOT NULL CHECK (limit_amps > 0 AND limit_amps <= 100000),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX site_circuits_site_idx ON site_circuits (site_id);

CREATE TABLE site_chargers (
    charger_id          TEXT PRIMARY KEY REFERENCES chargers (id) ON DELETE CASCADE,
    site_id             UUID NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    circuit_id          UUID REFERENCES site_circuits (id) ON DELETE SET NULL,
    phases              SMALLINT NOT NULL DEFAULT 3 CHECK (phases IN (1, 3)),
    -- the grid phase each of the charger's L1, L2, L3 is wired to
    phase_rotation      TEXT NOT NULL DEFAULT 'RST' CHECK (phase_rotation IN ('RST', 'RTS', 'SRT', 'STR', 'TRS', 'TSR')),
    min_amps            DOUBLE PRECISION NOT NULL DEFAULT 6 CHECK (min_amps >= 0),
    max_amps            DOUBLE PRECISION NOT NULL DEFAULT 32 CHECK (max_amps > 0 AND max_amps >= min_amps),
    -- a limit set outside this server (2.0.1 NotifyChargingLimit), honoured until cleared
    external_limit_amps DOUBLE PRECISION CHECK (external_limit_amps IS NULL OR external_limit_amps >= 0),
    external_limit_source TEXT,
    -- when the charger last accepted its fallback profiles (charger maximum and a default at
    -- the minimum for new transactions); NULL: it holds none that we know of
    fallback_installed_at TIMESTAMPTZ,
    attached_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX site_chargers_site_idx ON site_chargers (site_id);

-- Each session's current allocation on its site (what its TxProfile says), kept for the
-- session's record after it ends.
CREATE TABLE session_allocations (
    session_id  UUID PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    site_id     UUID NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    charger_id  TEXT NOT NULL,
    amps        DOUBLE PRECISION NOT NULL CHECK (amps >= 0),
    phases      SMALLINT NOT NULL,
    -- whether the charger accepted the profile
    applied     BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX session_allocations_site_idx ON session_allocations (site_id);

-- What the driver (app) or the car (2.0.1 NotifyEVChargingNeeds) says a session needs; it
-- raises the session's share when the departure is near.
CREATE TABLE session_charging_needs (
    session_id      UUID PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    departure_time  TIMESTAMPTZ,
    energy_kwh      DOUBLE PRECISION CHECK (energy_kwh IS NULL OR energy_kwh > 0),
    -- the car's own limits, when it reported them
    ev_max_amps     DOUBLE PRECISION CHECK (ev_max_amps IS NULL OR ev_max_amps >= 0),
    ev_phases       SMALLINT CHECK (ev_phases IS NULL OR ev_phases IN (1, 2, 3)),
    source          TEXT NOT NULL CHECK (source IN ('APP', 'EV')),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
