-- Firmware a local controller publishes to the stations behind it (OCPP 2.0.1 L05 /
-- PublishFirmware, UnpublishFirmware): what was asked, and its progress as the controller
-- reports it in PublishFirmwareStatusNotification.
CREATE SEQUENCE firmware_publication_request_ids AS INTEGER MINVALUE 1 CYCLE;

CREATE TABLE firmware_publications (
    id           UUID PRIMARY KEY,
    charger_id   TEXT NOT NULL REFERENCES chargers (id) ON DELETE CASCADE,
    -- PublishFirmware's requestId: the notifications name it
    request_id   INTEGER NOT NULL,
    location     TEXT NOT NULL CHECK (length(location) BETWEEN 1 AND 512),
    -- MD5 of the image, 32 hex digits
    checksum     TEXT NOT NULL CHECK (checksum ~ '^[0-9a-f]{32}$'),
    -- SENT, REJECTED (the controller refused), the controller's last PublishFirmwareStatus
    -- (Downloading, Published, InvalidChecksum, ...) or UNPUBLISHED
    status       TEXT NOT NULL,
    -- where the stations behind the controller fetch it, once Published
    published_locations TEXT[] NOT NULL DEFAULT '{}',
    created_by   UUID,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (charger_id, request_id)
);
CREATE INDEX firmware_publications_charger_idx ON firmware_publications (charger_id, created_at DESC);
