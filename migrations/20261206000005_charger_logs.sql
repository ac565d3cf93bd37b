-- Diagnostics and logs a charger uploads on request (1.6 GetDiagnostics, GetLog of the
-- security extension, 2.0.1 GetLog) to the server's own upload endpoint, kept for operators.

CREATE SEQUENCE charger_log_request_id_seq AS INTEGER MINVALUE 1 MAXVALUE 2147483647 CYCLE;

CREATE TABLE charger_logs (
    id              UUID PRIMARY KEY,
    charger_id      TEXT NOT NULL REFERENCES chargers (id) ON DELETE CASCADE,
    log_type        TEXT NOT NULL CHECK (log_type IN ('DIAGNOSTICS', 'SECURITY')),
    request_id      INTEGER NOT NULL DEFAULT nextval('charger_log_request_id_seq'),
    -- the secret in the upload URL the charger is given (one upload per request)
    upload_token    TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL DEFAULT 'REQUESTED'
                    CHECK (status IN ('REQUESTED', 'UPLOADING', 'UPLOADED', 'FAILED')),
    -- the charger's last status notification (Uploading, Uploaded, UploadFailed, ...)
    charger_status  TEXT,
    file_name       TEXT,
    content         BYTEA,
    size_bytes      BIGINT,
    requested_by    UUID,
    requested_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    uploaded_at     TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX charger_logs_charger_idx ON charger_logs (charger_id, requested_at DESC);
