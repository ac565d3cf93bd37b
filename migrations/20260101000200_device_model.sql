-- The OCPP 2.0.1 device model as chargers report it through NotifyReport: one row per
-- component / variable / attribute. A later report (by its generatedAt) replaces an earlier one;
-- an older report arriving late changes nothing.

CREATE TABLE device_model_variables (
    charger_id          TEXT NOT NULL REFERENCES chargers (id) ON DELETE CASCADE,
    component           TEXT NOT NULL,
    component_instance  TEXT,
    -- the component's EVSE and connector, when it belongs to one
    evse_id             INTEGER,
    connector_id        INTEGER,
    variable            TEXT NOT NULL,
    variable_instance   TEXT,
    -- Actual, Target, MinSet or MaxSet
    attribute_type      TEXT NOT NULL,
    value               TEXT,
    -- ReadOnly, WriteOnly or ReadWrite
    mutability          TEXT,
    -- string, decimal, integer, dateTime, boolean, OptionList, SequenceList, MemberList
    data_type           TEXT,
    unit                TEXT,
    -- the report's generatedAt (charger time)
    reported_at         TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- absent instances, EVSEs and connectors are one value each (NULLS NOT DISTINCT)
    CONSTRAINT device_model_variables_key UNIQUE NULLS NOT DISTINCT
        (charger_id, component, component_instance, evse_id, connector_id, variable, variable_instance, attribute_type)
);
