-- Per-entity order without an entity probe in the claim; and two inbox
-- indexes that cost more than they gave (at the end).
--
-- Each entity with unfinished jobs has exactly one job that is not
-- blocked: its head. A job enqueued while its entity has an unfinished job
-- is blocked; whatever finishes the head (completion, dead letter) unblocks
-- the entity's oldest blocked job. Both happen under the entity's advisory
-- lock. The claim then reads only the claim index: its cost no longer
-- depends on how many jobs wait (no random leaf of an entity index per
-- claimed job).

ALTER TABLE tds_sync_queue ADD COLUMN blocked BOOLEAN NOT NULL DEFAULT FALSE;

-- Jobs already waiting: block all but each entity's head, which is the
-- job in processing if there is one, else the oldest unfinished job (the
-- rule the claim applied until now).
UPDATE tds_sync_queue AS q SET blocked = TRUE
WHERE q.status IN ('pending', 'retry')
AND EXISTS (
    SELECT 1 FROM tds_sync_queue AS e
    WHERE e.entity_type = q.entity_type
    AND e.source_entity_id = q.source_entity_id
    AND e.source = q.source
    AND e.status IN ('pending', 'retry', 'processing')
    AND (e.id < q.id OR e.status = 'processing'));

-- next job to claim: the heads that wait, by priority, then arrival
DROP INDEX tds_sync_queue_claim_idx;
CREATE INDEX tds_sync_queue_claim_idx ON tds_sync_queue (priority, id)
    WHERE status IN ('pending', 'retry') AND NOT blocked;
-- does the entity have a job waiting? Without 'processing', a claim does
-- not insert into this index.
DROP INDEX tds_sync_queue_entity_idx;
CREATE INDEX tds_sync_queue_entity_idx ON tds_sync_queue (entity_type, source_entity_id, source, id)
    WHERE status IN ('pending', 'retry');
-- does the entity have a job in processing? (small: the jobs in flight)
CREATE INDEX tds_sync_queue_running_idx ON tds_sync_queue (entity_type, source_entity_id, source)
    WHERE status = 'processing';
-- the next job of an entity once its head finishes (small: blocked jobs)
CREATE INDEX tds_sync_queue_blocked_idx ON tds_sync_queue (entity_type, source_entity_id, source, id)
    WHERE blocked;

-- A completed job marks its inbox event processed without writing
-- processed_at (until housekeeping copies it there): nearly every event
-- has processed_at NULL for the retention period, so this partial index
-- had become a second primary key, paid for on every insert.
DROP INDEX tds_inbox_events_unprocessed_idx;
-- Content hashes are looked up by equality only; a hash index stores 4
-- bytes per event instead of the 64-character key, at a random place
-- either way.
DROP INDEX tds_inbox_events_content_hash_idx;
CREATE INDEX tds_inbox_events_content_hash_idx ON tds_inbox_events USING hash (content_hash);

-- tds_busy_entities returns the entities among the given ones that have a
-- head: an unfinished job that is not blocked. Ingest calls it in the
-- statement that inserts the jobs, after that statement took the entities'
-- advisory locks. Being VOLATILE, it reads with a snapshot of its own,
-- taken then: it sees every job committed under those locks, which the
-- statement's snapshot, taken before it waited for them, may not. That
-- holds only at READ COMMITTED, so it refuses to run at any other level.
CREATE FUNCTION tds_busy_entities(after_locks BIGINT, sources TEXT[], entity_types TEXT[], entity_ids TEXT[])
RETURNS TABLE (source TEXT, entity_type TEXT, source_entity_id TEXT)
LANGUAGE plpgsql VOLATILE
-- Its plans are cached for the session: one made while the queue was
-- small would scan the table on every call once it is large.
SET enable_seqscan = off
AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'tds: enqueueing needs READ COMMITTED isolation, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = 'feature_not_supported';
    END IF;
    -- The probes must go to the entity indexes whatever the statistics
    -- (its plan is cached for the session, perhaps made when the queue was
    -- empty). So: scalar subqueries, not EXISTS, which PostgreSQL may turn
    -- into a hash of every waiting job built on each call; and "blocked"
    -- tested in a form that does not match the claim index's predicate,
    -- which would otherwise offer a scan of every claimable job.
    RETURN QUERY
    SELECT k.s, k.t, k.i
    FROM unnest(sources, entity_types, entity_ids) AS k (s, t, i)
    WHERE (SELECT 1 FROM tds_sync_queue AS w
        WHERE w.entity_type = k.t AND w.source_entity_id = k.i AND w.source = k.s
        AND w.status IN ('pending', 'retry') AND (NOT w.blocked) IS TRUE LIMIT 1) IS NOT NULL
    OR (SELECT 1 FROM tds_sync_queue AS r
        WHERE r.entity_type = k.t AND r.source_entity_id = k.i AND r.source = k.s
        AND r.status = 'processing' LIMIT 1) IS NOT NULL;
END
$$;
