-- Chargers answered Pending at boot until an operator adopts them (auto-provisioned ones start
-- here; an operator can put any charger back).
ALTER TABLE chargers ADD COLUMN quarantined BOOLEAN NOT NULL DEFAULT FALSE;
-- chargers created by auto-provisioning before this migration were accepted at once: keep them
-- so, an operator decides
