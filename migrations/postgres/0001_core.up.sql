-- tds core schema: the inbox of received webhook events and the sync queue.

CREATE TABLE tds_inbox_events (
    id                 BIGSERIAL PRIMARY KEY,
    source             TEXT        NOT NULL,
    event_type         TEXT        NOT NULL,
    entity_type        TEXT        NOT NULL,
    source_entity_id   TEXT        NOT NULL,
    -- source:entity_type:entity_id:event_type:<delivery id or content hash>
    idempotency_key    TEXT        NOT NULL,
    delivery_id        TEXT,
    -- hex SHA-256 of the canonical JSON of data
    content_hash       TEXT        NOT NULL,
    payload            JSONB       NOT NULL,
    -- data.last_modified_time when present, else received_at: the event's version
    source_modified_at TIMESTAMPTZ NOT NULL,
    -- headers (secrets redacted), client IP, signature verification
    request_metadata   JSONB       NOT NULL DEFAULT '{}',
    is_valid           BOOLEAN     NOT NULL DEFAULT FALSE,
    validation_errors  JSONB,
    validated_at       TIMESTAMPTZ,
    moved_to_queue     BOOLEAN     NOT NULL DEFAULT FALSE,
    queued_at          TIMESTAMPTZ,
    processed_at       TIMESTAMPTZ,
    received_at        TIMESTAMPTZ NOT NULL,
    CONSTRAINT tds_inbox_events_idempotency_key_key UNIQUE (idempotency_key)
);

CREATE INDEX tds_inbox_events_received_at_idx ON tds_inbox_events (received_at);
CREATE INDEX tds_inbox_events_content_hash_idx ON tds_inbox_events (content_hash);
CREATE INDEX tds_inbox_events_entity_idx ON tds_inbox_events (entity_type, source_entity_id);
-- valid events not yet synced (or dead-lettered): small, so a partial index
CREATE INDEX tds_inbox_events_unprocessed_idx ON tds_inbox_events (id) WHERE processed_at IS NULL;
-- cleanup of processed events by age
CREATE INDEX tds_inbox_events_processed_at_idx ON tds_inbox_events (processed_at) WHERE processed_at IS NOT NULL;

CREATE TABLE tds_sync_queue (
    id                 BIGSERIAL PRIMARY KEY,
    inbox_event_id     BIGINT      NOT NULL REFERENCES tds_inbox_events (id) ON DELETE CASCADE,
    source             TEXT        NOT NULL,
    event_type         TEXT        NOT NULL,
    entity_type        TEXT        NOT NULL,
    source_entity_id   TEXT        NOT NULL,
    status             TEXT        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'retry', 'completed', 'dead_letter')),
    -- 1 is the highest priority, 10 the lowest
    priority           SMALLINT    NOT NULL CHECK (priority BETWEEN 1 AND 10),
    attempt_count      INTEGER     NOT NULL DEFAULT 0,
    max_retry_attempts INTEGER     NOT NULL CHECK (max_retry_attempts >= 1),
    -- earliest time the job may be claimed (its enqueue time until it fails once)
    next_retry_at      TIMESTAMPTZ NOT NULL,
    -- lease: the worker that holds the job and until when
    locked_by          TEXT,
    locked_until       TIMESTAMPTZ,
    last_error         TEXT,
    last_error_code    TEXT,
    -- how a finished job ended: synced, superseded, discarded
    outcome            TEXT,
    -- why: the superseding version, the operator's reason for a discard
    outcome_detail     TEXT,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    completed_at       TIMESTAMPTZ,
    CONSTRAINT tds_sync_queue_inbox_event_id_key UNIQUE (inbox_event_id)
);

-- next job to claim: waiting jobs by priority, then arrival
CREATE INDEX tds_sync_queue_claim_idx ON tds_sync_queue (priority, id)
    WHERE status IN ('pending', 'retry');
-- per-entity order: is an earlier job of this entity still open?
CREATE INDEX tds_sync_queue_entity_idx ON tds_sync_queue (entity_type, source_entity_id, source, id)
    WHERE status IN ('pending', 'retry', 'processing');
-- lease rescue
CREATE INDEX tds_sync_queue_lease_idx ON tds_sync_queue (locked_until)
    WHERE status = 'processing';
-- stats by status, processing rate, cleanup of finished jobs
CREATE INDEX tds_sync_queue_status_idx ON tds_sync_queue (status, completed_at);

-- every failed attempt of a job, not only the last
CREATE TABLE tds_sync_attempts (
    id          BIGSERIAL PRIMARY KEY,
    job_id      BIGINT      NOT NULL REFERENCES tds_sync_queue (id) ON DELETE CASCADE,
    attempt     INTEGER     NOT NULL,
    worker      TEXT,
    error       TEXT        NOT NULL,
    error_code  TEXT,
    started_at  TIMESTAMPTZ,
    failed_at   TIMESTAMPTZ NOT NULL
);

CREATE INDEX tds_sync_attempts_job_idx ON tds_sync_attempts (job_id, attempt);
