-- OpenChargeMap sync: the cursors of the mirror (so a sync that stops half-way resumes where it
-- stopped), the outcome of the last run, a content hash per station (re-syncs skip unchanged
-- POIs), and a generation counter the in-memory station search index polls to know when to
-- reload.

-- SHA-256 of the POI as OCM sent it (plus the normalisation version); NULL for stations that did
-- not come from OCM.
ALTER TABLE stations ADD COLUMN ocm_content_hash TEXT;

-- One row: the mirror's position in the OCM data set.
CREATE TABLE ocm_sync_state (
    id                 TEXT PRIMARY KEY CHECK (id = 'openchargemap'),
    -- highest OCM ID and latest DateLastStatusUpdate held (API pages and dump imports alike)
    max_id_held        INTEGER,
    max_modified_held  TIMESTAMPTZ,
    -- the ID scan in progress (sortby=id_asc&greaterthanid=scan_cursor); NULL when none is
    scan_cursor        INTEGER,
    -- the scan in progress started at ID 0: it also marks POIs OCM no longer returns as not live
    scan_is_full       BOOLEAN NOT NULL DEFAULT FALSE,
    scan_started_at    TIMESTAMPTZ,
    last_full_scan_at  TIMESTAMPTZ,
    -- modifiedsince of the next incremental pass (inclusive, minute precision)
    modified_cursor    TIMESTAMPTZ,
    -- the last run
    run_status         TEXT NOT NULL DEFAULT 'NEVER'
                       CHECK (run_status IN ('NEVER', 'RUNNING', 'SUCCEEDED', 'FAILED')),
    run_source         TEXT,
    run_node           TEXT,
    run_started_at     TIMESTAMPTZ,
    run_finished_at    TIMESTAMPTZ,
    run_error          TEXT,
    run_processed      BIGINT NOT NULL DEFAULT 0,
    run_updated        BIGINT NOT NULL DEFAULT 0,
    run_failed         BIGINT NOT NULL DEFAULT 0,
    -- finish time of the last successful API sync: the scheduler of every replica waits for
    -- sync_interval after it, so one replica syncs per period
    last_success_at    TIMESTAMPTZ,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO ocm_sync_state (id) VALUES ('openchargemap');

-- Bumped by every statement that writes stations or connections; a serving replica reloads its
-- search index when the value differs from the one it loaded. A counter (not max(updated_at)):
-- a transaction that commits after a poll with an older now() would otherwise go unnoticed.
CREATE TABLE station_generation (
    id          BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    generation  BIGINT NOT NULL
);
INSERT INTO station_generation (id, generation) VALUES (TRUE, 0);

CREATE FUNCTION bump_station_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE station_generation SET generation = generation + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER stations_bump_generation
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON stations
    FOR EACH STATEMENT EXECUTE FUNCTION bump_station_generation();
CREATE TRIGGER connections_bump_generation
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON connections
    FOR EACH STATEMENT EXECUTE FUNCTION bump_station_generation();
