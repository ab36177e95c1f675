-- Per-entity order without an entity probe in the claim; and two inbox
-- indexes that cost more than they gave (at the end).
--
-- Each entity with unfinished jobs has exactly one job that is not
-- blocked: its head. A job enqueued while its entity has an unfinished job
-- is blocked; whatever finishes the head (completion, dead letter) unblocks
-- the entity's oldest blocked job. The claim then reads only the claim
-- index. (SQLite has one writer, which serialises all of this.)

ALTER TABLE tds_sync_queue ADD COLUMN blocked BOOLEAN NOT NULL DEFAULT FALSE;

-- Jobs already waiting: block all but each entity's head, which is the
-- job in processing if there is one, else the oldest unfinished job.
UPDATE tds_sync_queue SET blocked = TRUE
WHERE status IN ('pending', 'retry')
AND EXISTS (
    SELECT 1 FROM tds_sync_queue AS e
    WHERE e.entity_type = tds_sync_queue.entity_type
    AND e.source_entity_id = tds_sync_queue.source_entity_id
    AND e.source = tds_sync_queue.source
    AND e.status IN ('pending', 'retry', 'processing')
    AND (e.id < tds_sync_queue.id OR e.status = 'processing'));

-- next job to claim: the heads that wait, by priority, then arrival
DROP INDEX tds_sync_queue_claim_idx;
CREATE INDEX tds_sync_queue_claim_idx ON tds_sync_queue (priority, id)
    WHERE status IN ('pending', 'retry') AND NOT blocked;
-- does the entity have a job waiting?
DROP INDEX tds_sync_queue_entity_idx;
CREATE INDEX tds_sync_queue_entity_idx ON tds_sync_queue (entity_type, source_entity_id, source, id)
    WHERE status IN ('pending', 'retry');
-- does the entity have a job in processing?
CREATE INDEX tds_sync_queue_running_idx ON tds_sync_queue (entity_type, source_entity_id, source)
    WHERE status = 'processing';
-- the next job of an entity once its head finishes
CREATE INDEX tds_sync_queue_blocked_idx ON tds_sync_queue (entity_type, source_entity_id, source, id)
    WHERE blocked;

-- A completed job marks its inbox event processed without writing
-- processed_at (until housekeeping copies it there): nearly every event
-- has processed_at NULL for the retention period, so this partial index
-- had become a second primary key, paid for on every insert.
DROP INDEX tds_inbox_events_unprocessed_idx;
