-- Chargers proving who they are: security profiles, certificates, password rotation and
-- security events.

-- The lowest security profile a charger may connect with (1: Basic over plain WebSocket,
-- 2: TLS + Basic, 3: TLS with a client certificate). Existing chargers keep connecting as
-- before. `pending_security_profile` is an upgrade the operator asked for: the charger may
-- still connect at the old profile (the spec's fallback) until it first connects at the new
-- one, which then becomes its minimum.
ALTER TABLE chargers
    ADD COLUMN security_profile SMALLINT NOT NULL DEFAULT 1
        CHECK (security_profile BETWEEN 1 AND 3),
    ADD COLUMN pending_security_profile SMALLINT
        CHECK (pending_security_profile BETWEEN 1 AND 3),
    -- a Basic password the server set on the charger (ChangeConfiguration AuthorizationKey /
    -- SetVariables BasicAuthPassword), accepted beside the current one until the charger first
    -- uses it
    ADD COLUMN pending_password_hash TEXT,
    ADD COLUMN pending_password_at TIMESTAMPTZ;

-- The CSMS CA generated for development when none is configured (one row, shared by every
-- replica). A production CA is configured from files (OCPP_CA_CERT, OCPP_CA_KEY), never stored.
CREATE TABLE csms_ca (
    id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    certificate_pem TEXT NOT NULL,
    private_key_pem TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Certificates the CSMS CA signed for chargers (SignCertificate), and their revocation.
CREATE TABLE charger_certificates (
    serial TEXT PRIMARY KEY,
    charger_id TEXT NOT NULL REFERENCES chargers (id) ON DELETE CASCADE,
    certificate_type TEXT NOT NULL,
    subject TEXT NOT NULL,
    certificate_pem TEXT NOT NULL,
    not_before TIMESTAMPTZ NOT NULL,
    not_after TIMESTAMPTZ NOT NULL,
    issued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ,
    revoked_reason TEXT
);
CREATE INDEX charger_certificates_by_charger ON charger_certificates (charger_id, issued_at DESC);
CREATE INDEX charger_certificates_revoked ON charger_certificates (serial) WHERE revoked_at IS NOT NULL;

-- Security events: what chargers report (SecurityEventNotification) and what the server saw
-- (refused handshakes, profile violations, certificates signed or refused). `charger_id` has
-- no foreign key: the server also records events about ids it does not know.
CREATE TABLE security_events (
    id BIGSERIAL PRIMARY KEY,
    charger_id TEXT,
    source TEXT NOT NULL CHECK (source IN ('charger', 'server')),
    event_type TEXT NOT NULL,
    tech_info TEXT,
    critical BOOLEAN NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX security_events_by_charger ON security_events (charger_id, occurred_at DESC);
CREATE INDEX security_events_by_time ON security_events (occurred_at DESC);
