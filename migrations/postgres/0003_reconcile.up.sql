-- Reconciliation: what tds has applied, runs against the source's API, and
-- the drift they found.

-- the run whose repair stored this event (NULL for webhooks)
ALTER TABLE tds_inbox_events ADD COLUMN sync_run_id BIGINT;

-- What tds has applied: one row per entity, written by the worker in the
-- transaction that completes the entity's job, whatever the Syncer. No
-- foreign key: the inbox event may be deleted by retention long before.
CREATE TABLE tds_applied (
    source           TEXT        NOT NULL,
    entity_type      TEXT        NOT NULL,
    source_entity_id TEXT        NOT NULL,
    -- source_modified_at of the applied event
    version          TIMESTAMPTZ NOT NULL,
    content_hash     TEXT        NOT NULL,
    deleted          BOOLEAN     NOT NULL,
    synced_at        TIMESTAMPTZ NOT NULL,
    inbox_event_id   BIGINT      NOT NULL,
    -- the record itself, kept only when it carries no version: a sweep
    -- compares its fields with the source's list record instead
    data             JSONB,
    PRIMARY KEY (source, entity_type, source_entity_id)
);

CREATE TABLE tds_sync_runs (
    id               BIGSERIAL   PRIMARY KEY,
    source           TEXT        NOT NULL,
    mode             TEXT        NOT NULL CHECK (mode IN ('incremental', 'full')),
    entity_types     JSONB       NOT NULL,
    dry_run          BOOLEAN     NOT NULL,
    status           TEXT        NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    cancel_requested BOOLEAN     NOT NULL DEFAULT FALSE,
    started_at       TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ,
    -- the process running it, until when: a run whose holder stopped
    -- renewing is resumed by the next process that starts one
    locked_by        TEXT,
    locked_until     TIMESTAMPTZ,
    -- where the run stands, so that it resumes there after a crash
    cursor           JSONB       NOT NULL DEFAULT '{}',
    api_calls        INTEGER     NOT NULL DEFAULT 0,
    pages            INTEGER     NOT NULL DEFAULT 0,
    missing_local    INTEGER     NOT NULL DEFAULT 0,
    stale_local      INTEGER     NOT NULL DEFAULT 0,
    missing_remote   INTEGER     NOT NULL DEFAULT 0,
    changed          INTEGER     NOT NULL DEFAULT 0,
    repaired         INTEGER     NOT NULL DEFAULT 0,
    error            TEXT,
    -- the source API's error body ({"code", "message"}) when a call failed
    api_error        JSONB
);

-- one run at a time, across every process
CREATE UNIQUE INDEX tds_sync_runs_running_idx ON tds_sync_runs (status) WHERE status = 'running';
CREATE INDEX tds_sync_runs_started_at_idx ON tds_sync_runs (started_at);

CREATE TABLE tds_sync_drift (
    id               BIGSERIAL   PRIMARY KEY,
    run_id           BIGINT      NOT NULL REFERENCES tds_sync_runs (id) ON DELETE CASCADE,
    entity_type      TEXT        NOT NULL,
    source_entity_id TEXT        NOT NULL,
    kind             TEXT        NOT NULL
        CHECK (kind IN ('missing_local', 'stale_local', 'missing_remote', 'changed')),
    local_version    TIMESTAMPTZ,
    remote_version   TIMESTAMPTZ,
    -- repaired (or found needing nothing); the event that repaired it
    resolved         BOOLEAN     NOT NULL DEFAULT FALSE,
    inbox_event_id   BIGINT,
    detected_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT tds_sync_drift_entity_key UNIQUE (run_id, entity_type, source_entity_id)
);

CREATE INDEX tds_sync_drift_unresolved_idx ON tds_sync_drift (run_id, id) WHERE NOT resolved;

-- A full sweep's listing of the source, staged so that it is compared in
-- SQL whatever its size; deleted when the run ends.
CREATE TABLE tds_sync_remote (
    run_id           BIGINT      NOT NULL REFERENCES tds_sync_runs (id) ON DELETE CASCADE,
    entity_type      TEXT        NOT NULL,
    source_entity_id TEXT        NOT NULL,
    version          TIMESTAMPTZ,
    -- for records without a version: the hash of the list record's fields,
    -- and of the same fields of what was applied
    fields_hash      TEXT,
    local_hash       TEXT,
    PRIMARY KEY (run_id, entity_type, source_entity_id)
);

-- Where the last completed incremental run of each type stopped.
CREATE TABLE tds_sync_watermarks (
    source      TEXT        NOT NULL,
    entity_type TEXT        NOT NULL,
    watermark   TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, entity_type)
);
