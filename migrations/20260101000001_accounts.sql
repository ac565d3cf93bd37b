-- Accounts: users, their idTags, vehicles, refresh tokens and the wallet ledger.
-- Money is NUMERIC everywhere; the ledger is append-only.

CREATE TABLE users (
    id              UUID PRIMARY KEY,
    email           TEXT NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    password_hash   TEXT NOT NULL,
    role            TEXT NOT NULL DEFAULT 'DRIVER' CHECK (role IN ('DRIVER', 'OPERATOR', 'ADMIN')),
    plan            TEXT NOT NULL DEFAULT 'PAY_AS_YOU_GO' CHECK (plan IN ('PAY_AS_YOU_GO', 'FLAT_RATE')),
    blocked         BOOLEAN NOT NULL DEFAULT FALSE,
    wallet_balance  NUMERIC(14, 2) NOT NULL DEFAULT 0 CHECK (wallet_balance >= 0),
    wallet_currency CHAR(3) NOT NULL DEFAULT 'EUR',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Emails are unique case-insensitively; the original spelling is kept for display.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

-- The tokens chargers present (RFID cards, the app's virtual token). OCPP 1.6 caps idTag at 20 chars.
CREATE TABLE id_tags (
    id_tag      TEXT PRIMARY KEY CHECK (length(id_tag) BETWEEN 1 AND 20),
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL DEFAULT 'APP' CHECK (kind IN ('APP', 'RFID', 'EMAID')),
    status      TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'BLOCKED', 'EXPIRED')),
    expires_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX id_tags_user_idx ON id_tags (user_id);

CREATE TABLE vehicles (
    id                   UUID PRIMARY KEY,
    user_id              UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    brand                TEXT NOT NULL CHECK (length(brand) BETWEEN 1 AND 100),
    model                TEXT NOT NULL CHECK (length(model) BETWEEN 1 AND 100),
    battery_capacity_kwh DOUBLE PRECISION CHECK (battery_capacity_kwh IS NULL OR battery_capacity_kwh > 0),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX vehicles_user_idx ON vehicles (user_id, created_at);

-- Opaque refresh tokens, stored only as SHA-256 digests. Each use rotates the token; presenting
-- an already-rotated token revokes its whole family (token theft detection).
CREATE TABLE refresh_tokens (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   UUID NOT NULL,
    token_hash  BYTEA NOT NULL UNIQUE,
    expires_at  TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    used_at     TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Every balance change is one row; users.wallet_balance is the running total kept in the same
-- transaction. (user_id, idempotency_key) makes top-ups and payments safe to retry.
CREATE TABLE wallet_ledger (
    id              BIGSERIAL PRIMARY KEY,
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    amount          NUMERIC(14, 2) NOT NULL CHECK (amount <> 0),
    currency        CHAR(3) NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('TOP_UP', 'INVOICE_PAYMENT', 'REFUND', 'ADJUSTMENT')),
    idempotency_key TEXT NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    reference_id    UUID,
    balance_after   NUMERIC(14, 2) NOT NULL CHECK (balance_after >= 0),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, idempotency_key)
);

CREATE FUNCTION wallet_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'wallet_ledger is append-only';
END;
$$;
CREATE TRIGGER wallet_ledger_no_update BEFORE UPDATE OR DELETE ON wallet_ledger
    FOR EACH ROW EXECUTE FUNCTION wallet_ledger_append_only();
