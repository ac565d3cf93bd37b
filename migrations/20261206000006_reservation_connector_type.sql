-- A 2.0.1 reservation may hold any EVSE with a connector of one type (ReserveNow connectorType).
ALTER TABLE reservations ADD COLUMN connector_type TEXT CHECK (connector_type IS NULL OR length(connector_type) <= 20);
