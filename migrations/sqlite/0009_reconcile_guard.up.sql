-- Reconciliation never deletes quietly (issue 22).
--
-- A run that would delete more of a type than its threshold applies its
-- other repairs, holds its deletes as drift rows marked pending_delete and
-- ends needs_confirmation, until an operator confirms it.
--
-- SQLite cannot change a CHECK constraint: tds_sync_runs is rebuilt. The
-- migration runs in a transaction with foreign keys on, where dropping the
-- old table deletes its drift and staged rows by cascade: they are kept
-- aside and put back.
CREATE TABLE tds_sync_runs_0009 (
    id               INTEGER     PRIMARY KEY AUTOINCREMENT,
    source           TEXT        NOT NULL,
    mode             TEXT        NOT NULL CHECK (mode IN ('incremental', 'full')),
    entity_types     TEXT        NOT NULL,
    dry_run          BOOLEAN     NOT NULL,
    status           TEXT        NOT NULL
        CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'needs_confirmation')),
    cancel_requested BOOLEAN     NOT NULL DEFAULT FALSE,
    started_at       TIMESTAMP   NOT NULL,
    finished_at      TIMESTAMP  ,
    locked_by        TEXT,
    locked_until     TIMESTAMP  ,
    cursor           TEXT        NOT NULL DEFAULT '{}',
    api_calls        INTEGER     NOT NULL DEFAULT 0,
    pages            INTEGER     NOT NULL DEFAULT 0,
    missing_local    INTEGER     NOT NULL DEFAULT 0,
    stale_local      INTEGER     NOT NULL DEFAULT 0,
    missing_remote   INTEGER     NOT NULL DEFAULT 0,
    changed          INTEGER     NOT NULL DEFAULT 0,
    repaired         INTEGER     NOT NULL DEFAULT 0,
    error            TEXT,
    api_error        TEXT,
    -- deletes ingested, and deletes held for confirmation (counted from the drift)
    deletes          INTEGER     NOT NULL DEFAULT 0,
    pending_deletes  INTEGER     NOT NULL DEFAULT 0,
    -- who confirmed the held deletes, and when
    confirmed_by     TEXT,
    confirmed_at     TIMESTAMP
);
INSERT INTO tds_sync_runs_0009 (id, source, mode, entity_types, dry_run, status, cancel_requested, started_at,
    finished_at, locked_by, locked_until, cursor, api_calls, pages, missing_local, stale_local, missing_remote,
    changed, repaired, error, api_error)
SELECT id, source, mode, entity_types, dry_run, status, cancel_requested, started_at,
    finished_at, locked_by, locked_until, cursor, api_calls, pages, missing_local, stale_local, missing_remote,
    changed, repaired, error, api_error
FROM tds_sync_runs;

CREATE TEMP TABLE tds_keep_drift AS SELECT * FROM tds_sync_drift;
CREATE TEMP TABLE tds_keep_remote AS SELECT * FROM tds_sync_remote;
DROP TABLE tds_sync_runs;
ALTER TABLE tds_sync_runs_0009 RENAME TO tds_sync_runs;
CREATE UNIQUE INDEX tds_sync_runs_running_idx ON tds_sync_runs (source, mode) WHERE status = 'running';
CREATE INDEX tds_sync_runs_started_at_idx ON tds_sync_runs (started_at);
INSERT INTO tds_sync_drift SELECT * FROM tds_keep_drift;
INSERT INTO tds_sync_remote SELECT * FROM tds_keep_remote;
DROP TABLE tds_keep_drift;
DROP TABLE tds_keep_remote;

-- A drift row is resolved only once its repair was applied (synced); until
-- then reason says why it is open: the repair queued, stored invalid,
-- superseded, dead-lettered, or a delete pending confirmation.
-- repair_hash is the content hash of the repair ingested, so that the next
-- run does not ingest the same repair again while nothing changed.
ALTER TABLE tds_sync_drift ADD COLUMN reason TEXT;
ALTER TABLE tds_sync_drift ADD COLUMN pending_delete BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE tds_sync_drift ADD COLUMN repair_hash TEXT;

CREATE INDEX tds_sync_drift_entity_idx ON tds_sync_drift (entity_type, source_entity_id, id);
CREATE INDEX tds_sync_drift_event_idx ON tds_sync_drift (inbox_event_id) WHERE NOT resolved AND inbox_event_id IS NOT NULL;
