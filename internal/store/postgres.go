package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/tdscore/tds/migrations"
)

// Postgres is the Store of PostgreSQL (bun's pgdialect and pgdriver), the
// production store, shared by any number of processes.
type Postgres struct {
	common
	// oneMessage: the database's driver sends a statement with its
	// arguments formatted in as one simple-protocol message, which may
	// then hold several statements; pgdriver does. (pgx's database/sql
	// driver, say, prepares statements, and a prepared one holds one.)
	// The worker's transactions then take fewer round trips.
	oneMessage bool
}

var _ Store = Postgres{}

// pgSQL is Postgres's side of the shared operations.
type pgSQL struct{}

var postgresCommon = common{dialect: pgSQL{}}

// NewPostgres returns the PostgreSQL Store.
func NewPostgres() Postgres { return Postgres{common: postgresCommon} }

// Name returns "postgres".
func (Postgres) Name() string { return "postgres" }

// ConcurrentWriters returns true.
func (Postgres) ConcurrentWriters() bool { return true }

// The advisory locks of tds besides the entity locks.
const (
	// MigrateLockKey serialises Migrate across processes: "tds.migr".
	MigrateLockKey = 0x7464732e6d696772
)

// NotifyChannel is the LISTEN/NOTIFY channel on which enqueues wake idle
// workers.
const NotifyChannel = "tds_sync_queue"

const (
	// pgLockSQL takes the entity locks of a key array and reads the
	// isolation level, which must be READ COMMITTED for the statements
	// after it to see what committed under the locks.
	pgLockSQL = `SELECT current_setting('transaction_isolation'),
	(SELECT count(pg_advisory_xact_lock(?, k)) FROM unnest(?::int4[]) AS k)`

	// pgHeadsSQL asks tds_busy_entities which entities have a head.
	pgHeadsSQL = `SELECT source, entity_type, source_entity_id FROM tds_busy_entities(0, ?::text[], ?::text[], ?::text[])`

	// pgUnblockSQL unblocks, for the entity of each job of the first
	// array, its oldest blocked job, unless the entity still has a head
	// other than the finishing jobs (the second array), which the
	// statement's snapshot may still show unfinished. That second test
	// never fails while the rules hold; it keeps a slip from making two
	// heads. The candidates go through ARRAY() so that the UPDATE finds
	// them by primary key whatever the statistics say.
	pgUnblockSQL = `WITH fin (id) AS (SELECT unnest(?::bigint[]))
UPDATE tds_sync_queue AS f SET blocked = FALSE, updated_at = ?
WHERE f.id = ANY(ARRAY(
	SELECT (SELECT b.id FROM tds_sync_queue AS b
		WHERE b.blocked AND b.entity_type = g.entity_type
		AND b.source_entity_id = g.source_entity_id AND b.source = g.source
		ORDER BY b.id LIMIT 1)
	FROM tds_sync_queue AS g WHERE g.id = ANY(?::bigint[])))
AND NOT ` + headRule

	// busyEntitiesPG defines tds_busy_entities from headRule: the entities
	// among the given ones that have a head. Ingest calls it in the
	// statement that inserts the jobs, after that statement took the
	// entities' advisory locks. Being VOLATILE, it reads with a snapshot of
	// its own, taken then: it sees every job committed under those locks,
	// which the statement's snapshot, taken before it waited for them, may
	// not. That holds only at READ COMMITTED, so it refuses to run at any
	// other level. Its plans are cached for the session: one made while
	// the queue was small would scan the table on every call once it is
	// large, hence enable_seqscan off.
	busyEntitiesPG = `CREATE OR REPLACE FUNCTION tds_busy_entities(after_locks BIGINT, sources TEXT[],
	entity_types TEXT[], entity_ids TEXT[])
RETURNS TABLE (source TEXT, entity_type TEXT, source_entity_id TEXT)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'tds: enqueueing needs READ COMMITTED isolation, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = 'feature_not_supported';
    END IF;
    RETURN QUERY
    WITH ` + noFinishing + `
    SELECT f.source, f.entity_type, f.source_entity_id
    FROM unnest(sources, entity_types, entity_ids) AS f (source, entity_type, source_entity_id)
    WHERE ` + headRule + `;
END
$$`

	pgNotifySQL = `SELECT pg_notify('` + NotifyChannel + `', '')`
	// pgNotifyFromSQL is a Processor's NOTIFY, whose payload names its
	// pool (see poolToken).
	pgNotifyFromSQL = `SELECT pg_notify('` + NotifyChannel + `', ?)`

	// pgInsertEventsSQL is the head of InsertEvents's statement: the
	// entity locks, then the inbox rows. Joining lk makes every lock come
	// before the first insert; unnest keeps the arrays' order, so ids
	// follow the batch's.
	pgInsertEventsSQL = `WITH lk AS (
	SELECT count(pg_advisory_xact_lock(?, k)) AS n FROM unnest(?::int4[]) AS k
), ins AS (
	INSERT INTO tds_inbox_events (source, event_type, entity_type, source_entity_id, idempotency_key,
		delivery_id, content_hash, payload, source_modified_at, request_metadata, is_valid,
		validation_errors, validated_at, moved_to_queue, queued_at, received_at, sync_run_id, trace_context)
	SELECT v.* FROM lk, unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[],
		?::jsonb[], ?::timestamptz[], ?::jsonb[], ?::boolean[], ?::jsonb[], ?::timestamptz[], ?::boolean[],
		?::timestamptz[], ?::timestamptz[], ?::bigint[], ?::text[]) AS v
	ON CONFLICT (idempotency_key) DO NOTHING
	RETURNING id, idempotency_key, source, event_type, entity_type, source_entity_id
)`

	// pgInsertEventsOnlySQL stores a batch without valid events.
	pgInsertEventsOnlySQL = pgInsertEventsSQL + `
SELECT id, idempotency_key, NULL::bigint AS job_id, NULL::int AS priority FROM ins`

	// pgInsertEventsAndJobsSQL stores a batch and the jobs of its valid
	// events. A job is blocked when its entity has a head: one earlier in
	// the batch, or one in the table, which tds_busy_entities reads with a
	// snapshot taken once the locks are held (busy takes lk's count so
	// that it runs after them).
	pgInsertEventsAndJobsSQL = pgInsertEventsSQL + `, busy AS (
	SELECT b.source, b.entity_type, b.source_entity_id
	FROM lk, tds_busy_entities(lk.n, ?::text[], ?::text[], ?::text[]) AS b
), q AS (
	INSERT INTO tds_sync_queue (inbox_event_id, source, event_type, entity_type, source_entity_id,
		status, priority, max_retry_attempts, next_retry_at, created_at, updated_at, blocked)
	SELECT ins.id, ins.source, ins.event_type, ins.entity_type, ins.source_entity_id,
		'pending', j.priority, j.max_attempts, j.at, j.at, j.at,
		row_number() OVER (PARTITION BY ins.entity_type, ins.source_entity_id, ins.source ORDER BY ins.id) > 1
		OR EXISTS (SELECT 1 FROM busy WHERE busy.entity_type = ins.entity_type
			AND busy.source_entity_id = ins.source_entity_id AND busy.source = ins.source)
	FROM ins JOIN unnest(?::text[], ?::int[], ?::int[], ?::timestamptz[]) AS j (idempotency_key, priority, max_attempts, at)
		ON j.idempotency_key = ins.idempotency_key
	ORDER BY ins.id
	RETURNING id, inbox_event_id, priority
)
SELECT ins.id, ins.idempotency_key, q.id AS job_id, q.priority FROM ins LEFT JOIN q ON q.inbox_event_id = ins.id`

	pgFindEventsSQL = `SELECT e.id, e.idempotency_key, e.moved_to_queue, e.validation_errors, q.id AS job_id, q.priority
FROM tds_inbox_events AS e LEFT JOIN tds_sync_queue AS q ON q.inbox_event_id = e.id
WHERE e.idempotency_key = ANY(?::text[])`

	pgDeleteCompletedSQL = `WITH d AS (
	SELECT id FROM tds_sync_queue WHERE status = 'completed' AND completed_at < ? LIMIT ?
), p AS (
	UPDATE tds_inbox_events AS e SET processed_at = q.completed_at
	FROM tds_sync_queue AS q, d
	WHERE q.id = d.id AND e.id = q.inbox_event_id AND e.processed_at IS NULL
)
DELETE FROM tds_sync_queue WHERE id IN (SELECT id FROM d) AND status = 'completed'`

	// Two selections, each served by its own index: events marked
	// processed (their processed_at), then events of completed jobs (the
	// queue's status and completed_at), which DeleteCompleted has
	// normally taken already.
	pgDeleteMarkedSQL = `DELETE FROM tds_inbox_events WHERE id IN (
	SELECT e.id FROM tds_inbox_events AS e WHERE e.processed_at < ?
	AND NOT EXISTS (SELECT 1 FROM tds_sync_queue AS q WHERE q.inbox_event_id = e.id AND q.status <> 'completed')
	LIMIT ?)`
	pgDeleteOfCompletedSQL = `DELETE FROM tds_inbox_events WHERE id IN (
	SELECT q.inbox_event_id FROM tds_sync_queue AS q WHERE q.status = 'completed' AND q.completed_at < ?
	AND EXISTS (SELECT 1 FROM tds_inbox_events AS e WHERE e.id = q.inbox_event_id AND e.processed_at IS NULL)
	LIMIT ?)`

	pgRetryDeadSQL = `UPDATE tds_sync_queue SET status = 'pending', blocked = ?, attempt_count = 0,
	next_retry_at = ?, locked_by = NULL, locked_until = NULL, updated_at = ?
WHERE id = ANY(?::bigint[]) AND status = 'dead_letter'
RETURNING inbox_event_id`
	pgUnprocessSQL = `UPDATE tds_inbox_events SET processed_at = NULL WHERE id = ANY(?::bigint[])`

	// pgClaimPlanSQL steers the planner to the ordered index scan, for
	// the claim transaction only: the statistics lag behind a
	// fast-growing queue, and with them it sorts the whole backlog.
	//
	// It also lets the claim commit without waiting for its WAL to reach
	// the disk: one flush fewer between a webhook and its mirror row. A
	// claim needs no durability of its own. Until the database crashes,
	// the committed claim is seen by every session like any other; WAL is
	// flushed in order, so the batch's (synchronous) commit that completes
	// these jobs makes the claim durable first; and a claim lost in a
	// crash of the database leaves its jobs waiting, as if never claimed,
	// while the batch that held them could not commit either. The setting
	// is local to this transaction: the connection's next one, an
	// ingest's say, waits for its flush as before.
	pgClaimPlanSQL = `SELECT set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true),
	set_config('synchronous_commit', 'off', true)`

	// pgClaimSQL takes the first claimable jobs and leases them. A job is
	// claimable when it waits (pending, or retry and due) and is its
	// entity's head: not blocked. That keeps the jobs of one entity one
	// at a time and in order without looking at the entity's other jobs,
	// and since only heads are claimable, concurrent claims need nothing
	// but SKIP LOCKED. The ids go through ARRAY() so that the UPDATE
	// finds its rows by primary key, not by a scan.
	pgClaimSQL = `UPDATE tds_sync_queue
SET status = 'processing', attempt_count = attempt_count + 1,
	locked_by = ?, locked_until = ?, updated_at = ?
WHERE id = ANY(ARRAY(
	SELECT c.id FROM tds_sync_queue AS c
	WHERE c.status IN ('pending', 'retry') AND NOT c.blocked AND c.next_retry_at <= ?
	ORDER BY c.priority, c.id
	LIMIT ? FOR UPDATE SKIP LOCKED))
RETURNING *`

	// pgClaimOneTripSQL is the claim transaction in one message: the
	// settings of pgClaimPlanSQL as SET LOCAL (a message of several
	// statements runs as one transaction, and SET returns no rows, so the
	// driver returns the claim's), then the claim, which also returns each
	// job's event, so that the batch need not read them.
	pgClaimOneTripSQL = `SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off; SET LOCAL synchronous_commit = off;
WITH c AS (` + pgClaimSQL + `)
SELECT c.*, TRUE AS event_read, e.id AS event_id, e.payload AS event_payload, e.content_hash AS event_content_hash,
	e.source_modified_at AS event_version, e.received_at AS event_received_at, e.trace_context AS event_trace_context
FROM c LEFT JOIN tds_inbox_events AS e ON e.id = c.inbox_event_id`

	// pgWarmSQL: see Warm. The statements return no rows.
	pgWarmSQL = `SELECT 1 FROM tds_busy_entities(0, '{}', '{}', '{}') AS b WHERE b.source IS NULL;
SELECT 1 FROM tds_sync_queue AS q JOIN tds_inbox_events AS e ON e.id = q.inbox_event_id WHERE q.id = 0`

	pgPayloadsSQL = `SELECT id, payload, content_hash, source_modified_at, received_at, trace_context FROM tds_inbox_events WHERE id = ANY(?::bigint[])`

	// pgCompleteLockSQL takes the entity locks of a completing batch and
	// turns sequential scans off for the rest of the transaction: the
	// jobs are known by primary key. After a burst the statistics lag
	// behind the table, and PostgreSQL, believing it nearly empty, may
	// join the batch against a scan of the whole table, once per job
	// (measured: 47 s for 1,000 jobs in a 200,000-row queue). From here to
	// COMMIT the batch runs only its own statements, so this touches no
	// Syncer query.
	//
	// When a completion follows (the parameter), it also turns nested
	// loops off, for that one statement, which turns them back on: see
	// pgCompleteSQL.
	pgCompleteLockSQL = `SELECT set_config('enable_seqscan', 'off', true),
	set_config('enable_nestloop', CASE WHEN ?::boolean THEN 'off' ELSE current_setting('enable_nestloop') END, true),
	(SELECT count(pg_advisory_xact_lock(?, k)) FROM unnest(?::int4[]) AS k)`

	// pgCompleteSQL completes a batch's jobs under the worker's leases,
	// records in tds_applied what each synced job applied, and says
	// whether any job of the queue is blocked at all: then the entities of
	// the batch may have a next job to unblock. It runs after the entity
	// locks were granted, so its snapshot shows every job blocked behind
	// them. One statement: the applied rows come from the completed rows
	// and their events, not from a parameter to parse.
	//
	// Its plan must not depend on the statistics. Gathered while no job
	// was processing (an idle queue, analyzed), they put the lease test's
	// rows at one, and PostgreSQL then took the queue as the outer side of
	// a nested loop over the batch's leases, scanning them once per job:
	// 1.1 s for a batch of 1,000 in a 100,000-row queue, against 15 ms.
	// So the ids bound both scans as index conditions (the queue's and,
	// through ARRAY(), the events'), and the statement is planned with
	// nested loops off (pgCompleteLockSQL): hash joins of at most a
	// batch on each side. It sets them back to the session's value when
	// it runs, before the transaction plans anything else.
	pgCompleteCoreSQL = `WITH done AS (
	UPDATE tds_sync_queue SET status = 'completed', outcome = lease.outcome,
		outcome_detail = COALESCE(lease.detail, tds_sync_queue.outcome_detail),
		completed_at = ?, updated_at = ?, locked_until = NULL
	FROM unnest(?::bigint[], ?::int[], ?::text[], ?::text[]) AS lease (job_id, attempt, outcome, detail)
	WHERE tds_sync_queue.id = ANY(?::bigint[]) AND ` + leaseHeld + `
	RETURNING tds_sync_queue.*
), applied AS (
	INSERT INTO tds_applied AS a (source, entity_type, source_entity_id, version, content_hash,
		deleted, synced_at, inbox_event_id, data)
	SELECT DISTINCT ON (q.source, q.entity_type, q.source_entity_id) ` + appliedHead + `?::timestamptz` + appliedTail + `
		AND e.id = ANY(ARRAY(SELECT d.inbox_event_id FROM done AS d))
	ORDER BY q.source, q.entity_type, q.source_entity_id, e.source_modified_at DESC, q.id DESC
	ON CONFLICT (source, entity_type, source_entity_id) DO UPDATE SET ` + appliedSet + `
	WHERE a.version <= excluded.version
)
SELECT id, (SELECT EXISTS (SELECT 1 FROM tds_sync_queue AS bq WHERE bq.blocked)) AS any_blocked FROM done`

	// pgCompleteSQL is the completion, which sets nested loops back as it
	// runs.
	pgCompleteSQL = pgCompleteCoreSQL + `
WHERE (SELECT set_config('enable_nestloop', reset_val, true) FROM pg_settings WHERE name = 'enable_nestloop') IS NOT NULL`

	// pgCompleteOneTripSQL is pgCompleteLockSQL and pgCompleteSQL in one
	// message (see pgClaimOneTripSQL): the settings as SET LOCAL, the
	// locks as a CALL, neither returning rows, the completion, which
	// takes its snapshot once they are granted, as a statement of its own,
	// and nested loops set back by a statement after it, not by a read of
	// pg_settings (which builds all of its 370 rows: measured 1.1 ms, most
	// of the completion's time for a batch of one).
	pgCompleteOneTripSQL = `SET LOCAL enable_seqscan = off; SET LOCAL enable_nestloop = off;
CALL tds_lock_entities(?, ?::int4[]);
` + pgCompleteCoreSQL + `;
SET LOCAL enable_nestloop TO DEFAULT`

	// pgLeases is the lease relation of an array pair (ids, attempts).
	pgLeases = `unnest(?::bigint[], ?::int[]) AS lease (job_id, attempt)`

	// pgRecordFailureSQL moves a job out of processing after a failed
	// attempt, under its lease.
	pgRecordFailureSQL = `UPDATE tds_sync_queue SET status = ?, next_retry_at = ?, last_error = ?,
	last_error_code = ?, locked_by = NULL, locked_until = NULL, updated_at = ?
FROM ` + pgLeases + ` WHERE ` + leaseHeld

	pgHandBackSQL = `UPDATE tds_sync_queue
SET status = CASE WHEN attempt_count > 1 THEN 'retry' ELSE 'pending' END,
	attempt_count = attempt_count - 1, next_retry_at = ?,
	locked_by = NULL, locked_until = NULL, updated_at = ?
FROM ` + pgLeases + ` WHERE ` + leaseHeld + `
RETURNING tds_sync_queue.id, tds_sync_queue.attempt_count, tds_sync_queue.status`
	pgRenewSQL = `UPDATE tds_sync_queue SET locked_until = ? FROM ` + pgLeases + ` WHERE ` + leaseHeld

	pgMirrorDDL = `CREATE TABLE IF NOT EXISTS ? (
	entity_id          TEXT PRIMARY KEY,
	source             TEXT        NOT NULL,
	data               JSONB       NOT NULL,
	source_modified_at TIMESTAMPTZ NOT NULL,
	synced_at          TIMESTAMPTZ NOT NULL,
	deleted_at         TIMESTAMPTZ,
	inbox_event_id     BIGINT      NOT NULL
)`
	pgMigrateXactLockSQL = `SELECT pg_advisory_xact_lock(?)`
	// pgLeadSQL takes the lease when it is free or expired, or renews it
	// for its holder; it returns the holder's row only when it leads.
	pgLeadSQL = `INSERT INTO tds_leader AS l (name, holder, elected_at, expires_at)
VALUES (?, ?, now(), now() + make_interval(secs => ?))
ON CONFLICT (name) DO UPDATE SET
	holder = EXCLUDED.holder,
	elected_at = CASE WHEN l.holder = EXCLUDED.holder THEN l.elected_at ELSE EXCLUDED.elected_at END,
	expires_at = EXCLUDED.expires_at
WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
RETURNING holder`
	pgTableExistsSQL = `SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE tablename = ? AND schemaname = ANY (current_schemas(false))`
)

func (pgSQL) txOptions() *sql.TxOptions { return &sql.TxOptions{Isolation: sql.LevelReadCommitted} }

func (pgSQL) migrations() (fs.FS, error) { return fs.Sub(migrations.Postgres, "postgres") }

// tableExistsSQL looks in the search path, where tds creates its tables.
func (pgSQL) tableExistsSQL() string { return pgTableExistsSQL }

func (pgSQL) reconcile() *reconcileSQL { return &pgReconcile }

func (pgSQL) mirror() *mirrorSQL { return &pgMirror }

func (pgSQL) throughput() string { return pgThroughputSQL }

// pgArray is pgdialect.Array, for the statements' parameters.
func pgArray(v any) any { return pgdialect.Array(v) }

func (pgSQL) ids(ids []int64) any { return pgdialect.Array(ids) }

func (pgSQL) texts(s []string) any { return pgdialect.Array(s) }

// lock takes, in db, the advisory locks of the entities, held until the
// transaction ends. It is a statement of its own so that the statements
// after it read with snapshots taken once the locks are held, which
// requires READ COMMITTED: at another isolation level it fails.
func (pgSQL) lock(ctx context.Context, db bun.IDB, keys []Entity) error {
	if len(keys) == 0 {
		return nil
	}
	var level string
	if err := db.QueryRowContext(ctx, pgLockSQL, EntityLockClass, pgdialect.Array(entityLockKeys(keys))).
		Scan(&level, new(int64)); err != nil {
		return err
	}
	if level != "read committed" {
		return fmt.Errorf("%w, not %s", ErrNeedsReadCommitted, level)
	}
	return nil
}

func entityArrays(keys []Entity) (sources, types, ids []string) {
	for _, k := range keys {
		sources, types, ids = append(sources, k.Source), append(types, k.EntityType), append(ids, k.EntityID)
	}
	return
}

func (pgSQL) heads(ctx context.Context, db bun.IDB, keys []Entity) (map[Entity]bool, error) {
	s, t, i := entityArrays(keys)
	var rows []entityRow
	if err := db.NewRaw(pgHeadsSQL, pgdialect.Array(s), pgdialect.Array(t), pgdialect.Array(i)).Scan(ctx, &rows); err != nil {
		return nil, err
	}
	return entitySet(rows, len(keys)), nil
}

func (pgSQL) unblock(ctx context.Context, db bun.IDB, of, finishing []int64, at time.Time) (int64, error) {
	if len(of) == 0 {
		return 0, nil
	}
	if finishing == nil {
		finishing = []int64{}
	}
	res, err := db.ExecContext(ctx, pgUnblockSQL, pgdialect.Array(finishing), at, pgdialect.Array(of))
	if err != nil {
		return 0, err
	}
	return rowsAffected(res), nil
}

func (pgSQL) notify(ctx context.Context, db bun.IDB) error {
	_, err := db.ExecContext(ctx, pgNotifySQL)
	return err
}

// Migrate applies the schema one migration per transaction, each taking
// the migration lock at transaction level first, so that concurrent
// callers take turns and no lock outlives its transaction (a session lock
// would stay on whichever server connection a transaction pooler lent),
// then defines tds_busy_entities from headRule.
func (p Postgres) Migrate(ctx context.Context, db *bun.DB, table string) error {
	fsys, err := p.dialect.migrations()
	if err != nil {
		return err
	}
	lock := func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.ExecContext(ctx, pgMigrateXactLockSQL, int64(MigrateLockKey)); err != nil {
			return fmt.Errorf("taking the migration lock: %w", err)
		}
		return nil
	}
	if err := ApplyMigrations(ctx, db, fsys, table, lock); err != nil {
		return err
	}
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := lock(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, busyEntitiesPG); err != nil {
			return fmt.Errorf("defining tds_busy_entities: %w", err)
		}
		return nil
	})
}

// MigrateMirror creates the mirror tables under the migration lock.
func (p Postgres) MigrateMirror(ctx context.Context, db *bun.DB, tables []string) error {
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.ExecContext(ctx, pgMigrateXactLockSQL, int64(MigrateLockKey)); err != nil {
			return err
		}
		for _, t := range tables {
			if _, err := tx.ExecContext(ctx, pgMirrorDDL, bun.Ident(t)); err != nil {
				return fmt.Errorf("creating %s: %w", t, err)
			}
		}
		return nil
	})
}

// InsertEvents stores a batch in one statement: it takes the entity locks,
// inserts the inbox rows and the jobs of the valid ones, and returns both.
// One statement needs no explicit transaction: run in autocommit it is one
// round trip and one commit. The rows travel as one array per column, so
// the statement's text and plan are the same for any batch.
//
// The locks serialise the ingestion of an entity, so that its jobs get ids
// in the order their transactions commit.
func (p Postgres) InsertEvents(ctx context.Context, db bun.IDB, batch []Ingest) ([]Stored, error) {
	if err := checkNUL(batch); err != nil {
		return nil, err
	}
	batch = firstPerKey(batch)
	n := len(batch)
	var (
		sources, eventTypes, entityTypes, entityIDs = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		idemKeys, hashes, payloads, metadata        = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		deliveryIDs, verrs                          = make([]*string, n), make([]*string, n)
		valid, moved                                = make([]bool, n), make([]bool, n)
		modified, received                          = make([]time.Time, n), make([]time.Time, n)
		validatedAt, queuedAt                       = make([]*time.Time, n), make([]*time.Time, n)
		runs                                        = make([]*int64, n)
		traces                                      = make([]*string, n)
		keys                                        = make([]Entity, n)
		// the jobs of the valid events
		jobKeys                                 []string
		jobPrios, jobAttempts                   []int
		jobAt                                   []time.Time
		jobSources, jobEntityTypes, jobEntities []string
	)
	for i, in := range batch {
		r := in.Event
		sources[i], eventTypes[i], entityTypes[i], entityIDs[i] = r.Source, r.EventType, r.EntityType, r.EntityID
		idemKeys[i], hashes[i], payloads[i], metadata[i] = r.IdempotencyKey, r.ContentHash, string(r.Payload), string(r.Metadata)
		deliveryIDs[i], verrs[i], valid[i], moved[i] = r.DeliveryID, nullJSON(r.ValidationErrors), r.IsValid, r.MovedToQueue
		modified[i], received[i], validatedAt[i], queuedAt[i] = r.Version, r.ReceivedAt, r.ValidatedAt, r.QueuedAt
		runs[i], traces[i] = r.SyncRunID, r.TraceContext
		keys[i] = Entity{r.Source, r.EntityType, r.EntityID}
		if in.Job != nil {
			jobKeys = append(jobKeys, r.IdempotencyKey)
			jobPrios = append(jobPrios, in.Job.Priority)
			jobAttempts = append(jobAttempts, in.Job.MaxAttempts)
			jobAt = append(jobAt, r.ReceivedAt)
			jobSources, jobEntityTypes, jobEntities = append(jobSources, r.Source), append(jobEntityTypes, r.EntityType), append(jobEntities, r.EntityID)
		}
	}
	arr := pgdialect.Array
	args := []any{EntityLockClass, arr(entityLockKeys(keys)),
		arr(sources), arr(eventTypes), arr(entityTypes), arr(entityIDs), arr(idemKeys), arr(deliveryIDs),
		arr(hashes), arr(payloads), arr(modified), arr(metadata), arr(valid), arr(verrs), arr(validatedAt),
		arr(moved), arr(queuedAt), arr(received), arr(runs), arr(traces)}
	query := pgInsertEventsOnlySQL
	if len(jobKeys) > 0 {
		query = pgInsertEventsAndJobsSQL
		args = append(args, arr(jobSources), arr(jobEntityTypes), arr(jobEntities),
			arr(jobKeys), arr(jobPrios), arr(jobAttempts), arr(jobAt))
	}
	var stored []Stored
	if err := db.NewRaw(query, args...).Scan(ctx, &stored); err != nil {
		var pgErr pgdriver.Error
		if errors.As(err, &pgErr) && pgErr.Field('C') == featureNotSupported {
			// tds_busy_entities refused the isolation level.
			return nil, fmt.Errorf("%w: %s", ErrNeedsReadCommitted, pgErr.Field('M'))
		}
		return nil, err
	}
	return stored, nil
}

// featureNotSupported is the SQLSTATE tds_busy_entities raises outside
// READ COMMITTED.
const featureNotSupported = "0A000"

// FindEvents returns the events with these keys, with their jobs.
func (p Postgres) FindEvents(ctx context.Context, db bun.IDB, keys []string) ([]Existing, error) {
	var out []Existing
	err := db.NewRaw(pgFindEventsSQL, pgdialect.Array(keys)).Scan(ctx, &out)
	return out, err
}

// Enqueue queues a stored event under its entity's lock.
func (p Postgres) Enqueue(ctx context.Context, db bun.IDB, id int64, e Entity, job NewJob, at time.Time) (*Job, error) {
	return p.enqueue(ctx, db, id, e, job, at, enqueueReadSQL, insertJobSQL)
}

// DeleteCompleted deletes a batch of completed jobs.
func (p Postgres) DeleteCompleted(ctx context.Context, db bun.IDB, cutoff time.Time, limit int) (int64, error) {
	res, err := db.ExecContext(ctx, pgDeleteCompletedSQL, cutoff, limit)
	if err != nil {
		return 0, err
	}
	return rowsAffected(res), nil
}

// DeleteProcessedEvents deletes a batch of processed events.
func (p Postgres) DeleteProcessedEvents(ctx context.Context, db bun.IDB, cutoff time.Time, limit int) (int64, error) {
	return deleteProcessed(ctx, db, cutoff, limit, pgDeleteMarkedSQL, pgDeleteOfCompletedSQL)
}

func deleteProcessed(ctx context.Context, db bun.IDB, cutoff time.Time, limit int, marked, ofCompleted string) (int64, error) {
	var total int64
	for _, q := range []string{marked, ofCompleted} {
		res, err := db.ExecContext(ctx, q, cutoff, limit)
		if err != nil {
			return total, err
		}
		total += rowsAffected(res)
		if total >= int64(limit) {
			break
		}
	}
	return total, nil
}

// RetryDeadLetters retries dead letters by filter.
func (p Postgres) RetryDeadLetters(ctx context.Context, db bun.IDB, f DeadLetterFilter, at time.Time) (int64, error) {
	return p.common.RetryDeadLetters(ctx, db, f, at, pgRetryDeadSQL, pgUnprocessSQL)
}

// Claim leases the first claimable jobs, in a transaction whose planner
// settings keep the claim an ordered index scan. Through pgdriver the
// transaction is one message, the claim statement preceded by the
// settings (see pgClaimOneTripSQL), and the jobs come with their events;
// through another driver it takes four round trips and the worker reads
// the events itself.
func (p Postgres) Claim(ctx context.Context, db *bun.DB, owner string, limit int, at, leaseUntil time.Time) ([]*Job, error) {
	var jobs []*Job
	if p.oneMessage {
		err := db.NewRaw(pgClaimOneTripSQL, owner, leaseUntil, at, at, limit).Scan(ctx, &jobs)
		return jobs, err
	}
	err := db.RunInTx(ctx, p.TxOptions(), func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.ExecContext(ctx, pgClaimPlanSQL); err != nil {
			return err
		}
		return tx.NewRaw(pgClaimSQL, owner, leaseUntil, at, at, limit).Scan(ctx, &jobs)
	})
	return jobs, err
}

// Warm implements [Store.Warm]: each connection plans a read of the queue
// and the inbox and compiles tds_busy_entities (no row is read or
// locked).
func (p Postgres) Warm(ctx context.Context, db *bun.DB, n int) error {
	return warm(ctx, db, n, pgWarmSQL)
}

// Payloads reads the events of a batch.
func (p Postgres) Payloads(ctx context.Context, db bun.IDB, eventIDs []int64) ([]Payload, error) {
	var out []Payload
	err := db.NewRaw(pgPayloadsSQL, pgdialect.Array(eventIDs)).Scan(ctx, &out)
	return out, err
}

// completedRow is a row the completion UPDATE returns.
type completedRow struct {
	ID         int64 `bun:"id"`
	AnyBlocked bool  `bun:"any_blocked"`
}

// Complete completes a batch: the entity locks, one lease-guarded UPDATE,
// and, when any job is blocked, the hand-on of each finished entity. The
// locks are taken here, at the end, so that they are held only for the
// commit and do not keep ingestion of those entities waiting on Syncers.
func (p Postgres) Complete(ctx context.Context, db bun.IDB, owner string, done []Completion, dead []*Job, at time.Time) (map[int64]bool, bool, error) {
	keys, finishing := finished(done, dead)
	lockKeys := pgdialect.Array(entityLockKeys(keys))
	oneTrip := p.oneMessage && len(done) > 0
	if !oneTrip {
		if _, err := db.ExecContext(ctx, pgCompleteLockSQL, len(done) > 0, EntityLockClass, lockKeys); err != nil {
			return nil, false, err
		}
	}
	out := make(map[int64]bool, len(done))
	blocked := len(dead) > 0
	if len(done) > 0 {
		ids, attempts := make([]int64, len(done)), make([]int, len(done))
		outcomes, details := make([]string, len(done)), make([]*string, len(done))
		for i, c := range done {
			ids[i], attempts[i], outcomes[i], details[i] = c.Job.ID, c.Job.Attempt, c.Outcome, nullString(c.Detail)
		}
		query, args := pgCompleteSQL, []any{at, at, pgdialect.Array(ids), pgdialect.Array(attempts),
			pgdialect.Array(outcomes), pgdialect.Array(details), pgdialect.Array(ids), owner, at}
		if oneTrip {
			query, args = pgCompleteOneTripSQL, append([]any{EntityLockClass, lockKeys}, args...)
		}
		var rows []completedRow
		if err := db.NewRaw(query, args...).Scan(ctx, &rows); err != nil {
			return nil, false, err
		}
		for _, r := range rows {
			out[r.ID] = true
			blocked = blocked || r.AnyBlocked
		}
		if len(rows) < len(done) {
			return out, false, nil // the caller rolls back
		}
	}
	// Most of the time no job is blocked at all, and the probe per entity
	// is skipped.
	handedOn := false
	if blocked {
		n, err := p.dialect.unblock(ctx, db, finishing, finishing, at)
		if err != nil {
			return nil, false, err
		}
		handedOn = n > 0
	}
	return out, handedOn, nil
}

// finished returns the entities and ids of a batch's finished jobs.
func finished(done []Completion, dead []*Job) ([]Entity, []int64) {
	keys := make([]Entity, 0, len(done)+len(dead))
	ids := make([]int64, 0, len(done)+len(dead))
	for _, c := range done {
		keys, ids = append(keys, c.Job.Entity()), append(ids, c.Job.ID)
	}
	for _, j := range dead {
		keys, ids = append(keys, j.Entity()), append(ids, j.ID)
	}
	return keys, ids
}

func leaseArrays(leases []Lease) (ids []int64, attempts []int) {
	for _, l := range leases {
		ids, attempts = append(ids, l.JobID), append(attempts, l.Attempt)
	}
	return
}

// RecordFailure records a failed attempt under the job's lease.
func (p Postgres) RecordFailure(ctx context.Context, db bun.IDB, f Failure, at time.Time) error {
	return p.recordFailure(ctx, db, f, at, pgRecordFailureSQL,
		pgdialect.Array([]int64{f.Job.ID}), pgdialect.Array([]int{f.Job.Attempt}), f.Owner)
}

// HandBack returns held jobs to the queue.
func (p Postgres) HandBack(ctx context.Context, db bun.IDB, owner string, leases []Lease, at time.Time) ([]HandedBack, error) {
	ids, attempts := leaseArrays(leases)
	var out []HandedBack
	err := db.NewRaw(pgHandBackSQL, at, at, pgdialect.Array(ids), pgdialect.Array(attempts), owner).Scan(ctx, &out)
	return out, err
}

// RenewLeases extends held leases.
func (p Postgres) RenewLeases(ctx context.Context, db bun.IDB, owner string, leases []Lease, until time.Time) (int64, error) {
	ids, attempts := leaseArrays(leases)
	res, err := db.ExecContext(ctx, pgRenewSQL, until, pgdialect.Array(ids), pgdialect.Array(attempts), owner)
	if err != nil {
		return 0, err
	}
	return rowsAffected(res), nil
}

// Subscribe listens on NotifyChannel through pgdriver's listener, which
// pings the server and reconnects on its own. With another driver it
// logs that workers poll only.
func (p Postgres) Subscribe(ctx context.Context, db, pool *bun.DB, log *slog.Logger, wake chan<- struct{}) func() {
	if _, ok := db.Driver().(pgdriver.Driver); !ok {
		log.Info("tds: the database driver is not pgdriver; polling only")
		return func() {}
	}
	ln := pgdriver.NewListener(db)
	if err := ln.Listen(ctx, NotifyChannel); err != nil {
		log.Warn("tds: listening for enqueues failed; polling only", "err", err)
		_ = ln.Close()
		return func() {}
	}
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	ch := ln.Channel(pgdriver.WithChannelSize(16))
	self := poolToken(pool)
	wg.Go(func() {
		for {
			select {
			case <-lctx.Done():
				return
			case n, ok := <-ch:
				if !ok {
					return
				}
				if n.Payload == self {
					continue // a Processor on pool woke this worker already
				}
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		}
	})
	return func() {
		cancel()
		_ = ln.Close()
		wg.Wait()
	}
}

// poolTokens holds a random token per pool (keyed by the pool's dialect,
// which its transactions share): the payload of the NOTIFY a Processor
// sends after waking its pool's workers in process, so that they skip it.
var poolTokens sync.Map

func poolToken(db *bun.DB) string {
	key := db.Dialect()
	if t, ok := poolTokens.Load(key); ok {
		return t.(string)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	t, _ := poolTokens.LoadOrStore(key, hex.EncodeToString(b))
	return t.(string)
}

// pgWaker sends NOTIFY in a transaction of its own rather than in the
// ingest transaction: PostgreSQL serialises the commits of notifying
// transactions (a lock held until after the commit record is flushed),
// which would undo group commit. At most one NOTIFY per process is in
// flight; pokes meanwhile coalesce into one more. Its payload is the
// pool's token (poolToken): the Processor has woken the workers on its own
// pool in process already, and they skip it; it is for the others.
type pgWaker struct {
	db      *bun.DB
	log     *slog.Logger
	mu      sync.Mutex
	sending bool
	again   bool
	wg      sync.WaitGroup
}

// NewWaker returns a Waker that notifies from its own goroutine.
func (p Postgres) NewWaker(db *bun.DB, log *slog.Logger) Waker { return &pgWaker{db: db, log: log} }

// Poke implements [Waker.Poke].
func (w *pgWaker) Poke() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sending {
		w.again = true
		return
	}
	w.sending = true
	w.wg.Go(w.send)
}

func (w *pgWaker) send() {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := w.db.ExecContext(ctx, pgNotifyFromSQL, poolToken(w.db)); err != nil {
			// Workers poll as well; a lost wake-up costs latency, not data.
			w.log.Debug("tds: waking workers failed", "error", err)
		}
		cancel()
		w.mu.Lock()
		if !w.again {
			w.sending = false
			w.mu.Unlock()
			return
		}
		w.again = false
		w.mu.Unlock()
	}
}

// Close implements [Waker.Close].
func (w *pgWaker) Close() { w.wg.Wait() }

// leadQuery implements dialectSQL: the lease timed by the database's
// clock, so that the replicas' clocks need not agree.
func (pgSQL) leadQuery(holder string, ttl time.Duration) (string, []any) {
	return pgLeadSQL, []any{LeaderName, holder, ttl.Seconds()}
}
