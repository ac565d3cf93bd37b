-- Invoices, the transactional outbox, and consumer de-duplication.

CREATE TABLE invoices (
    id               UUID PRIMARY KEY,
    session_id       UUID NOT NULL UNIQUE REFERENCES sessions (id),
    user_id          UUID NOT NULL REFERENCES users (id),
    -- what the user owes (0 when a flat-rate plan covers the session)
    amount           NUMERIC(14, 2) NOT NULL CHECK (amount >= 0),
    -- what the session cost at the tariff, recorded for settlement with the operator
    cost_amount      NUMERIC(14, 2) NOT NULL CHECK (cost_amount >= 0),
    currency         CHAR(3) NOT NULL,
    energy_kwh       NUMERIC(14, 3) NOT NULL,
    duration_minutes INTEGER NOT NULL,
    tariff_id        UUID REFERENCES tariffs (id),
    breakdown        JSONB NOT NULL DEFAULT '{}',
    covered_by_plan  BOOLEAN NOT NULL DEFAULT FALSE,
    status           TEXT NOT NULL CHECK (status IN ('PENDING', 'PAID', 'OVERDUE', 'VOID')),
    due_date         TIMESTAMPTZ NOT NULL,
    paid_at          TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX invoices_user_idx ON invoices (user_id, created_at DESC);
CREATE INDEX invoices_unpaid_due_idx ON invoices (due_date) WHERE status = 'PENDING';

-- Events written in the same transaction as the state change they describe; the relay publishes
-- them in id order per aggregate and marks them published once RabbitMQ confirms.
-- body is TEXT, not JSONB: the envelope's field order is part of the contract.
CREATE TABLE outbox (
    id            BIGSERIAL PRIMARY KEY,
    event_id      UUID NOT NULL UNIQUE,
    event_type    TEXT NOT NULL,
    aggregate_id  TEXT NOT NULL,
    routing_key   TEXT NOT NULL,
    body          TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at  TIMESTAMPTZ,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_aggregate_pending_idx ON outbox (aggregate_id, id) WHERE published_at IS NULL;

-- Which events each consumer has already applied (idempotency on eventId).
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
