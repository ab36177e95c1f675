-- Takes the entity locks of a completing batch as a statement that returns
-- no rows (CALL), so that the worker can send it in one message with the
-- completion that follows: the completion must take its snapshot after the
-- locks are granted, so the locks cannot be a part of its own statement.
CREATE PROCEDURE tds_lock_entities(lock_class int, lock_keys int4[])
LANGUAGE sql
AS $$
    SELECT count(pg_advisory_xact_lock(lock_class, k)) FROM unnest(lock_keys) AS k
$$;
