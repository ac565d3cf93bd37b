-- Money enters a wallet only with proof: a top-up is a payment with the provider, credited once
-- when the provider's signed webhook confirms it. Every provider event is processed once.
CREATE TABLE top_ups (
    id              UUID PRIMARY KEY,
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    amount          NUMERIC(14, 2) NOT NULL CHECK (amount > 0),
    currency        CHAR(3) NOT NULL,
    status          TEXT NOT NULL DEFAULT 'PENDING'
                    CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
    provider        TEXT NOT NULL,
    -- the provider's payment (a Stripe PaymentIntent id), once created
    provider_ref    TEXT UNIQUE,
    client_secret   TEXT,
    idempotency_key TEXT NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX top_ups_by_user ON top_ups (user_id, created_at DESC);

CREATE TABLE payment_events (
    provider      TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    received_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);

-- Who did what: operator commands, manual credits, registrations. Append-only.
CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    -- no foreign key: the record outlives the account
    actor_id    UUID,
    action      TEXT NOT NULL,
    target      TEXT,
    details     JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_by_time ON audit_log (created_at DESC);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
