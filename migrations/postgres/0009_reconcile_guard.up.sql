-- Reconciliation never deletes quietly (issue 22).
--
-- A run that would delete more of a type than its threshold applies its
-- other repairs, holds its deletes as drift rows marked pending_delete and
-- ends needs_confirmation, until an operator confirms it.
ALTER TABLE tds_sync_runs DROP CONSTRAINT tds_sync_runs_status_check;
ALTER TABLE tds_sync_runs ADD CONSTRAINT tds_sync_runs_status_check
    CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'needs_confirmation'));
ALTER TABLE tds_sync_runs
    -- deletes ingested, and deletes held for confirmation (counted from the drift)
    ADD COLUMN deletes          INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN pending_deletes  INTEGER NOT NULL DEFAULT 0,
    -- who confirmed the held deletes, and when
    ADD COLUMN confirmed_by     TEXT,
    ADD COLUMN confirmed_at     TIMESTAMPTZ;

-- A drift row is resolved only once its repair was applied (synced); until
-- then reason says why it is open: the repair queued, stored invalid,
-- superseded, dead-lettered, or a delete pending confirmation.
-- repair_hash is the content hash of the repair ingested, so that the next
-- run does not ingest the same repair again while nothing changed.
ALTER TABLE tds_sync_drift
    ADD COLUMN reason         TEXT,
    ADD COLUMN pending_delete BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN repair_hash    TEXT;

CREATE INDEX tds_sync_drift_entity_idx ON tds_sync_drift (entity_type, source_entity_id, id);
CREATE INDEX tds_sync_drift_event_idx ON tds_sync_drift (inbox_event_id) WHERE NOT resolved AND inbox_event_id IS NOT NULL;
