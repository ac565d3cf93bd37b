-- Firmware campaigns (docs/firmware.md): one firmware image rolled out to a set of chargers,
-- a few at a time, each charger's progress from its FirmwareStatusNotifications, failed
-- attempts retried up to a limit.

CREATE SEQUENCE firmware_request_id_seq AS INTEGER MINVALUE 1 MAXVALUE 2147483647 CYCLE;

CREATE TABLE firmware_campaigns (
    id                   UUID PRIMARY KEY,
    location             TEXT NOT NULL CHECK (length(location) BETWEEN 1 AND 512),
    retrieve_at          TIMESTAMPTZ,
    signature            TEXT CHECK (signature IS NULL OR length(signature) <= 800),
    signing_certificate  TEXT CHECK (signing_certificate IS NULL OR length(signing_certificate) <= 5500),
    status               TEXT NOT NULL DEFAULT 'RUNNING'
                         CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    -- chargers updating at once, and attempts per charger
    concurrency          INTEGER NOT NULL DEFAULT 10 CHECK (concurrency BETWEEN 1 AND 1000),
    max_attempts         INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 10),
    created_by           UUID,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX firmware_campaigns_running_idx ON firmware_campaigns (created_at) WHERE status = 'RUNNING';

CREATE TABLE firmware_campaign_chargers (
    campaign_id      UUID NOT NULL REFERENCES firmware_campaigns (id) ON DELETE CASCADE,
    charger_id       TEXT NOT NULL REFERENCES chargers (id) ON DELETE CASCADE,
    -- QUEUED: waiting its turn; SENT: the charger has it; DONE: Installed; FAILED: out of
    -- attempts; CANCELLED: the campaign was cancelled before its turn
    state            TEXT NOT NULL DEFAULT 'QUEUED'
                     CHECK (state IN ('QUEUED', 'SENT', 'DONE', 'FAILED', 'CANCELLED')),
    -- the charger's last FirmwareStatusNotification status, or ours (Queued, Sent, Rejected, ...)
    status           TEXT NOT NULL DEFAULT 'Queued',
    request_id       INTEGER NOT NULL DEFAULT nextval('firmware_request_id_seq'),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_at  TIMESTAMPTZ,
    sent_at          TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, charger_id)
);
CREATE INDEX firmware_campaign_chargers_sent_idx ON firmware_campaign_chargers (charger_id) WHERE state = 'SENT';
