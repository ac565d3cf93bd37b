-- Drivers' RFID cards and other tokens (docs/authorization.md): OCPP 2.0.1 token types, up to
-- 36 characters (1.6 chargers take 20), a group (1.6 parentIdTag, 2.0.1 groupIdToken) for
-- fleets, blocking and expiry.

ALTER TABLE id_tags DROP CONSTRAINT id_tags_id_tag_check;
ALTER TABLE id_tags ADD CONSTRAINT id_tags_id_tag_check CHECK (length(id_tag) BETWEEN 1 AND 36);
ALTER TABLE id_tags ADD COLUMN token_type TEXT NOT NULL DEFAULT 'CENTRAL' CHECK (token_type IN
    ('ISO14443', 'ISO15693', 'EMAID', 'CENTRAL', 'KEY_CODE', 'LOCAL', 'MAC_ADDRESS'));
UPDATE id_tags SET token_type = CASE kind WHEN 'RFID' THEN 'ISO14443' WHEN 'EMAID' THEN 'EMAID' ELSE 'CENTRAL' END;
-- NULL: the token's group is its owner's own (their app token), so that every card of a driver
-- can use what the driver reserved
ALTER TABLE id_tags ADD COLUMN group_id_tag TEXT
    CHECK (group_id_tag IS NULL OR length(group_id_tag) BETWEEN 1 AND 36);
ALTER TABLE id_tags ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE INDEX id_tags_group_idx ON id_tags (group_id_tag) WHERE group_id_tag IS NOT NULL;

-- a token's transactions: the concurrent-transaction rule and the chargers to clear a blocked
-- token from
CREATE INDEX charger_transactions_id_tag_idx ON charger_transactions (id_tag, started_at);
