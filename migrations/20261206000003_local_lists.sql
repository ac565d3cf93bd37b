-- Local authorization lists (docs/authorization.md): named lists of drivers' tokens, one list
-- per charger, and what each charger holds (its version and the entries it was sent), so that
-- updates can be differential and a charger that lost its list after a reconnect gets it again.

CREATE TABLE local_lists (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 120),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE local_list_tokens (
    list_id     UUID NOT NULL REFERENCES local_lists (id) ON DELETE CASCADE,
    id_tag      TEXT NOT NULL REFERENCES id_tags (id_tag) ON DELETE CASCADE,
    added_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (list_id, id_tag)
);
CREATE INDEX local_list_tokens_id_tag_idx ON local_list_tokens (id_tag);

CREATE TABLE charger_local_lists (
    charger_id        TEXT PRIMARY KEY REFERENCES chargers (id) ON DELETE CASCADE,
    list_id           UUID REFERENCES local_lists (id) ON DELETE SET NULL,
    -- the version the charger accepted last and the entries it then held (idTag -> entry)
    version           INTEGER NOT NULL DEFAULT 0 CHECK (version >= 0),
    entries           JSONB NOT NULL DEFAULT '{}',
    synced_at         TIMESTAMPTZ,
    -- what GetLocalListVersion answered last
    reported_version  INTEGER,
    reported_at       TIMESTAMPTZ
);
CREATE INDEX charger_local_lists_list_idx ON charger_local_lists (list_id);
