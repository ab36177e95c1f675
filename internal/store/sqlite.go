package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"io/fs"
	"log/slog"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/notify"
	"github.com/tdscore/tds/internal/record"
	"github.com/tdscore/tds/migrations"
)

// SQLite is the Store of SQLite (modernc.org/sqlite, pure Go), the
// embedded default. Its single writer orders everything the entity locks
// order on PostgreSQL, so it takes no lock. Lists travel as JSON arrays,
// read with json_each.
type SQLite struct{ common }

var _ Store = SQLite{}

type sqliteSQL struct{}

var sqliteCommon = common{dialect: sqliteSQL{}}

// NewSQLite returns the SQLite Store.
func NewSQLite() SQLite { return SQLite{sqliteCommon} }

// Name returns "sqlite".
func (SQLite) Name() string { return "sqlite" }

// ConcurrentWriters returns false: the pool has one connection.
func (SQLite) ConcurrentWriters() bool { return false }

// sqliteTimeLayout is how bun writes a time to SQLite; times travelling
// in JSON are written the same way, so that they compare as text.
const sqliteTimeLayout = "2006-01-02 15:04:05.999999-07:00"

const (
	sqHeadsSQL = `WITH ` + noFinishing + `,
f (source, entity_type, source_entity_id) AS (
	SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?))
SELECT DISTINCT f.source, f.entity_type, f.source_entity_id FROM f WHERE ` + headRule

	// sqUnblockSQL: see pgUnblockSQL.
	sqUnblockSQL = `WITH fin (id) AS (SELECT value FROM json_each(?))
UPDATE tds_sync_queue AS f SET blocked = FALSE, updated_at = ?
WHERE f.id IN (
	SELECT (SELECT b.id FROM tds_sync_queue AS b
		WHERE b.blocked AND b.entity_type = g.entity_type
		AND b.source_entity_id = g.source_entity_id AND b.source = g.source
		ORDER BY b.id LIMIT 1)
	FROM tds_sync_queue AS g WHERE g.id IN (SELECT value FROM json_each(?)))
AND NOT ` + headRule

	// sqInsertEventsSQL inserts a batch given as a JSON array of objects,
	// in the array's order. (The WHERE clause lets SQLite tell the
	// upsert from a join.)
	sqInsertEventsSQL = `INSERT INTO tds_inbox_events (source, event_type, entity_type, source_entity_id,
	idempotency_key, delivery_id, content_hash, payload, source_modified_at, request_metadata, is_valid,
	validation_errors, validated_at, moved_to_queue, queued_at, received_at, sync_run_id, trace_context)
SELECT value ->> '$.source', value ->> '$.event_type', value ->> '$.entity_type', value ->> '$.entity_id',
	value ->> '$.key', value ->> '$.delivery_id', value ->> '$.hash', value ->> '$.payload',
	value ->> '$.version', value ->> '$.metadata', value ->> '$.valid', value ->> '$.errors',
	value ->> '$.validated_at', value ->> '$.moved', value ->> '$.queued_at', value ->> '$.received_at',
	value ->> '$.sync_run_id', value ->> '$.trace'
FROM json_each(?) WHERE TRUE ORDER BY key
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, idempotency_key`

	sqInsertJobsSQL = `INSERT INTO tds_sync_queue (inbox_event_id, source, event_type, entity_type, source_entity_id,
	status, priority, blocked, attempt_count, max_retry_attempts, next_retry_at, created_at, updated_at)
SELECT value ->> '$.event', value ->> '$.source', value ->> '$.event_type', value ->> '$.entity_type',
	value ->> '$.entity_id', 'pending', value ->> '$.priority', value ->> '$.blocked', 0,
	value ->> '$.max_attempts', value ->> '$.at', value ->> '$.at', value ->> '$.at'
FROM json_each(?) ORDER BY key
RETURNING id, inbox_event_id, priority`

	sqFindEventsSQL = `SELECT e.id, e.idempotency_key, e.moved_to_queue, e.validation_errors, q.id AS job_id, q.priority
FROM tds_inbox_events AS e LEFT JOIN tds_sync_queue AS q ON q.inbox_event_id = e.id
WHERE e.idempotency_key IN (SELECT value FROM json_each(?))`

	sqDeleteCompletedIDsSQL = `SELECT id FROM tds_sync_queue WHERE status = 'completed' AND completed_at < ? LIMIT ?`
	sqCopyCompletedSQL      = `UPDATE tds_inbox_events SET processed_at = q.completed_at
FROM tds_sync_queue AS q
WHERE q.id IN (SELECT value FROM json_each(?)) AND tds_inbox_events.id = q.inbox_event_id
AND tds_inbox_events.processed_at IS NULL`
	sqDeleteJobsSQL = `DELETE FROM tds_sync_queue WHERE id IN (SELECT value FROM json_each(?)) AND status = 'completed'`

	sqDeleteMarkedSQL = `DELETE FROM tds_inbox_events WHERE id IN (
	SELECT e.id FROM tds_inbox_events AS e WHERE e.processed_at < ?
	AND NOT EXISTS (SELECT 1 FROM tds_sync_queue AS q WHERE q.inbox_event_id = e.id AND q.status <> 'completed')
	LIMIT ?)`
	sqDeleteOfCompletedSQL = `DELETE FROM tds_inbox_events WHERE id IN (
	SELECT q.inbox_event_id FROM tds_sync_queue AS q WHERE q.status = 'completed' AND q.completed_at < ?
	AND EXISTS (SELECT 1 FROM tds_inbox_events AS e WHERE e.id = q.inbox_event_id AND e.processed_at IS NULL)
	LIMIT ?)`

	sqRetryDeadSQL = `UPDATE tds_sync_queue SET status = 'pending', blocked = ?, attempt_count = 0,
	next_retry_at = ?, locked_by = NULL, locked_until = NULL, updated_at = ?
WHERE id IN (SELECT value FROM json_each(?)) AND status = 'dead_letter'
RETURNING inbox_event_id`
	sqUnprocessSQL = `UPDATE tds_inbox_events SET processed_at = NULL WHERE id IN (SELECT value FROM json_each(?))`

	// sqClaimSQL: see pgClaimSQL. INDEXED BY keeps the candidates in
	// claim-index order whatever the statistics.
	sqClaimSQL = `UPDATE tds_sync_queue
SET status = 'processing', attempt_count = attempt_count + 1,
	locked_by = ?, locked_until = ?, updated_at = ?
WHERE id IN (
	SELECT c.id FROM tds_sync_queue AS c INDEXED BY tds_sync_queue_claim_idx
	WHERE c.status IN ('pending', 'retry') AND NOT c.blocked AND c.next_retry_at <= ?
	ORDER BY c.priority, c.id
	LIMIT ?)
RETURNING *`

	sqPayloadsSQL = `SELECT id, payload, content_hash, source_modified_at, received_at, trace_context FROM tds_inbox_events
WHERE id IN (SELECT value FROM json_each(?))`

	// sqCompleteSQL: see pgCompleteSQL. The probe for blocked jobs costs
	// little here, so the hand-on always runs.
	sqCompleteSQL = `UPDATE tds_sync_queue SET status = 'completed', outcome = lease.outcome,
	outcome_detail = COALESCE(lease.detail, tds_sync_queue.outcome_detail),
	completed_at = ?, updated_at = ?, locked_until = NULL
FROM (SELECT value ->> '$[0]' AS job_id, value ->> '$[1]' AS attempt, value ->> '$[2]' AS outcome,
	value ->> '$[3]' AS detail FROM json_each(?)) AS lease
WHERE ` + leaseHeld + `
RETURNING id, TRUE AS any_blocked`

	// sqRecordAppliedSQL records in tds_applied what the synced jobs among
	// a JSON array of ids of jobs just completed applied.
	sqRecordAppliedSQL = `WITH done AS (SELECT * FROM tds_sync_queue WHERE id IN (SELECT value FROM json_each(?)))
INSERT INTO tds_applied (source, entity_type, source_entity_id, version, content_hash,
	deleted, synced_at, inbox_event_id, data)
SELECT ` + appliedHead + `?` + appliedTail + `
ORDER BY e.source_modified_at, q.id
ON CONFLICT (source, entity_type, source_entity_id) DO UPDATE SET ` + appliedSet + `
WHERE tds_applied.version <= excluded.version`

	// sqLeases is the lease relation of a JSON array of [id, attempt]
	// pairs.
	sqLeases = `(SELECT value ->> '$[0]' AS job_id, value ->> '$[1]' AS attempt FROM json_each(?)) AS lease`

	sqRecordFailureSQL = `UPDATE tds_sync_queue SET status = ?, next_retry_at = ?, last_error = ?,
	last_error_code = ?, locked_by = NULL, locked_until = NULL, updated_at = ?
FROM ` + sqLeases + ` WHERE ` + leaseHeld

	sqHandBackSQL = `UPDATE tds_sync_queue
SET status = CASE WHEN attempt_count > 1 THEN 'retry' ELSE 'pending' END,
	attempt_count = attempt_count - 1, next_retry_at = ?,
	locked_by = NULL, locked_until = NULL, updated_at = ?
FROM ` + sqLeases + ` WHERE ` + leaseHeld + `
RETURNING id, attempt_count, status`
	sqRenewSQL = `UPDATE tds_sync_queue SET locked_until = ? FROM ` + sqLeases + ` WHERE ` + leaseHeld

	sqTableExistsSQL = `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`
	sqMirrorDDL      = `CREATE TABLE IF NOT EXISTS ? (
	entity_id          TEXT PRIMARY KEY,
	source             TEXT      NOT NULL,
	data               TEXT      NOT NULL,
	source_modified_at TIMESTAMP NOT NULL,
	synced_at          TIMESTAMP NOT NULL,
	deleted_at         TIMESTAMP,
	inbox_event_id     INTEGER   NOT NULL
)`
)

func (sqliteSQL) txOptions() *sql.TxOptions { return nil }

func (sqliteSQL) migrations() (fs.FS, error) { return fs.Sub(migrations.SQLite, "sqlite") }

func (sqliteSQL) tableExistsSQL() string { return sqTableExistsSQL }

// jsonParam renders v as a JSON text parameter.
func jsonParam(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic("store: encoding a parameter: " + err.Error()) // only plain values are encoded
	}
	return string(b)
}

func (sqliteSQL) reconcile() *reconcileSQL { return &sqReconcile }

func (sqliteSQL) mirror() *mirrorSQL { return &sqMirror }

func (sqliteSQL) throughput() string { return sqThroughputSQL }

func (sqliteSQL) ids(ids []int64) any {
	if ids == nil {
		ids = []int64{}
	}
	return jsonParam(ids)
}

func (sqliteSQL) texts(s []string) any {
	if s == nil {
		s = []string{}
	}
	return jsonParam(s)
}

// lock takes nothing: SQLite's writer is alone.
func (sqliteSQL) lock(context.Context, bun.IDB, []Entity) error { return nil }

func (sqliteSQL) heads(ctx context.Context, db bun.IDB, keys []Entity) (map[Entity]bool, error) {
	triples := make([][3]string, len(keys))
	for i, k := range keys {
		triples[i] = [3]string{k.Source, k.EntityType, k.EntityID}
	}
	var rows []entityRow
	if err := db.NewRaw(sqHeadsSQL, jsonParam(triples)).Scan(ctx, &rows); err != nil {
		return nil, err
	}
	return entitySet(rows, len(keys)), nil
}

func (s sqliteSQL) unblock(ctx context.Context, db bun.IDB, of, finishing []int64, at time.Time) (int64, error) {
	if len(of) == 0 {
		return 0, nil
	}
	res, err := db.ExecContext(ctx, sqUnblockSQL, s.ids(finishing), at, s.ids(of))
	if err != nil {
		return 0, err
	}
	return rowsAffected(res), nil
}

// notify signals the workers of this process that use the same database
// handle; a worker woken before the commit waits for the single
// connection and so sees the job. Polling remains the fallback.
func (sqliteSQL) notify(_ context.Context, db bun.IDB) error {
	notify.Default.Signal(db.Dialect())
	return nil
}

// Migrate applies the schema one migration per transaction; concurrent
// processes take turns through the database's write lock.
func (s SQLite) Migrate(ctx context.Context, db *bun.DB, table string) error {
	fsys, err := s.dialect.migrations()
	if err != nil {
		return err
	}
	return ApplyMigrations(ctx, db, fsys, table, nil)
}

// MigrateMirror creates the mirror tables in one transaction.
func (s SQLite) MigrateMirror(ctx context.Context, db *bun.DB, tables []string) error {
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for _, t := range tables {
			if _, err := tx.ExecContext(ctx, sqMirrorDDL, bun.Ident(t)); err != nil {
				return err
			}
		}
		return nil
	})
}

func sqTime(t time.Time) string { return t.UTC().Format(sqliteTimeLayout) }

func sqNullTime(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := sqTime(*t)
	return &s
}

// sqEvent is an event as InsertEvents sends it.
type sqEvent struct {
	Source      string  `json:"source"`
	EventType   string  `json:"event_type"`
	EntityType  string  `json:"entity_type"`
	EntityID    string  `json:"entity_id"`
	Key         string  `json:"key"`
	DeliveryID  *string `json:"delivery_id"`
	Hash        string  `json:"hash"`
	Payload     string  `json:"payload"`
	Version     string  `json:"version"`
	Metadata    string  `json:"metadata"`
	Valid       bool    `json:"valid"`
	Errors      *string `json:"errors"`
	ValidatedAt *string `json:"validated_at"`
	Moved       bool    `json:"moved"`
	QueuedAt    *string `json:"queued_at"`
	ReceivedAt  string  `json:"received_at"`
	SyncRunID   *int64  `json:"sync_run_id"`
	Trace       *string `json:"trace,omitempty"` // absent, so NULL, when not traced
}

// sqJob is a job as InsertEvents sends it.
type sqJob struct {
	Event       int64  `json:"event"`
	Source      string `json:"source"`
	EventType   string `json:"event_type"`
	EntityType  string `json:"entity_type"`
	EntityID    string `json:"entity_id"`
	Priority    int    `json:"priority"`
	Blocked     bool   `json:"blocked"`
	MaxAttempts int    `json:"max_attempts"`
	At          string `json:"at"`
}

// InsertEvents stores a batch with one INSERT per table, in a transaction
// (its own unless db is one). A job is blocked when its entity has a head:
// in the table, or earlier in the batch.
func (s SQLite) InsertEvents(ctx context.Context, db bun.IDB, batch []Ingest) ([]Stored, error) {
	if err := checkNUL(batch); err != nil {
		return nil, err
	}
	batch = firstPerKey(batch)
	var stored []Stored
	err := RunInTx(ctx, s, db, func(ctx context.Context, tx bun.IDB) error {
		stored = nil
		evs := make([]sqEvent, len(batch))
		for i, in := range batch {
			r := in.Event
			evs[i] = sqEvent{
				Source: r.Source, EventType: r.EventType, EntityType: r.EntityType, EntityID: r.EntityID,
				Key: r.IdempotencyKey, DeliveryID: r.DeliveryID, Hash: r.ContentHash, Payload: string(r.Payload),
				Version: sqTime(r.Version), Metadata: string(r.Metadata), Valid: r.IsValid,
				Errors: nullJSON(r.ValidationErrors), ValidatedAt: sqNullTime(r.ValidatedAt), Moved: r.MovedToQueue,
				QueuedAt: sqNullTime(r.QueuedAt), ReceivedAt: sqTime(r.ReceivedAt), SyncRunID: r.SyncRunID, Trace: r.TraceContext,
			}
		}
		if err := tx.NewRaw(sqInsertEventsSQL, jsonParam(evs)).Scan(ctx, &stored); err != nil {
			return err
		}
		byKey := make(map[string]*Ingest, len(batch))
		for i := range batch {
			byKey[batch[i].Event.IdempotencyKey] = &batch[i]
		}
		var jobs []sqJob
		var keys []Entity
		byEvent := make(map[int64]*Stored, len(stored))
		for i := range stored {
			st := &stored[i]
			byEvent[st.ID] = st
			in := byKey[st.IdempotencyKey]
			if in == nil || in.Job == nil {
				continue
			}
			r := in.Event
			keys = append(keys, Entity{r.Source, r.EntityType, r.EntityID})
			jobs = append(jobs, sqJob{Event: st.ID, Source: r.Source, EventType: r.EventType,
				EntityType: r.EntityType, EntityID: r.EntityID, Priority: in.Job.Priority,
				MaxAttempts: in.Job.MaxAttempts, At: sqTime(r.ReceivedAt)})
		}
		if len(jobs) == 0 {
			return nil
		}
		has, err := s.dialect.heads(ctx, tx, keys)
		if err != nil {
			return err
		}
		for i := range jobs {
			jobs[i].Blocked = has[keys[i]]
			has[keys[i]] = true
		}
		var queued []struct {
			ID           int64 `bun:"id"`
			InboxEventID int64 `bun:"inbox_event_id"`
			Priority     int   `bun:"priority"`
		}
		if err := tx.NewRaw(sqInsertJobsSQL, jsonParam(jobs)).Scan(ctx, &queued); err != nil {
			return err
		}
		for _, q := range queued {
			st := byEvent[q.InboxEventID]
			id, prio := q.ID, q.Priority
			st.JobID, st.Priority = &id, &prio
		}
		return nil
	})
	return stored, err
}

// FindEvents returns the events with these keys, with their jobs.
func (s SQLite) FindEvents(ctx context.Context, db bun.IDB, keys []string) ([]Existing, error) {
	var out []Existing
	err := db.NewRaw(sqFindEventsSQL, s.dialect.texts(keys)).Scan(ctx, &out)
	return out, err
}

// Enqueue queues a stored event.
func (s SQLite) Enqueue(ctx context.Context, db bun.IDB, id int64, e Entity, job NewJob, at time.Time) (*Job, error) {
	return s.enqueue(ctx, db, id, e, job, at, enqueueReadSQL, insertJobSQL)
}

// DeleteCompleted deletes a batch of completed jobs.
func (s SQLite) DeleteCompleted(ctx context.Context, db bun.IDB, cutoff time.Time, limit int) (int64, error) {
	var ids []int64
	if err := db.NewRaw(sqDeleteCompletedIDsSQL, cutoff, limit).Scan(ctx, &ids); err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, nil
	}
	if _, err := db.ExecContext(ctx, sqCopyCompletedSQL, s.dialect.ids(ids)); err != nil {
		return 0, err
	}
	res, err := db.ExecContext(ctx, sqDeleteJobsSQL, s.dialect.ids(ids))
	if err != nil {
		return 0, err
	}
	return rowsAffected(res), nil
}

// DeleteProcessedEvents deletes a batch of processed events.
func (s SQLite) DeleteProcessedEvents(ctx context.Context, db bun.IDB, cutoff time.Time, limit int) (int64, error) {
	return deleteProcessed(ctx, db, cutoff, limit, sqDeleteMarkedSQL, sqDeleteOfCompletedSQL)
}

// RetryDeadLetters retries dead letters by filter.
func (s SQLite) RetryDeadLetters(ctx context.Context, db bun.IDB, f DeadLetterFilter, at time.Time) (int64, error) {
	return s.common.RetryDeadLetters(ctx, db, f, at, sqRetryDeadSQL, sqUnprocessSQL)
}

// Claim leases the first claimable jobs in one statement.
func (s SQLite) Claim(ctx context.Context, db *bun.DB, owner string, limit int, at, leaseUntil time.Time) ([]*Job, error) {
	var jobs []*Job
	err := db.NewRaw(sqClaimSQL, owner, leaseUntil, at, at, limit).Scan(ctx, &jobs)
	return jobs, err
}

// Warm implements [Store.Warm]: SQLite has one connection, opened by then.
func (s SQLite) Warm(context.Context, *bun.DB, int) error { return nil }

// Payloads reads the events of a batch.
func (s SQLite) Payloads(ctx context.Context, db bun.IDB, eventIDs []int64) ([]Payload, error) {
	var out []Payload
	err := db.NewRaw(sqPayloadsSQL, s.dialect.ids(eventIDs)).Scan(ctx, &out)
	return out, err
}

// Complete completes a batch and hands its entities on.
func (s SQLite) Complete(ctx context.Context, db bun.IDB, owner string, done []Completion, dead []*Job, at time.Time) (map[int64]bool, bool, error) {
	_, finishing := finished(done, dead)
	out := make(map[int64]bool, len(done))
	if len(done) > 0 {
		rows := make([][4]any, len(done))
		for i, c := range done {
			rows[i] = [4]any{c.Job.ID, c.Job.Attempt, c.Outcome, nullString(c.Detail)}
		}
		var got []completedRow
		if err := db.NewRaw(sqCompleteSQL, at, at, jsonParam(rows), owner).Scan(ctx, &got); err != nil {
			return nil, false, err
		}
		for _, r := range got {
			out[r.ID] = true
		}
		if len(got) < len(done) {
			return out, false, nil // the caller rolls back
		}
		ids := make([]int64, len(got))
		for i, r := range got {
			ids[i] = r.ID
		}
		if _, err := db.ExecContext(ctx, sqRecordAppliedSQL, jsonParam(ids), sqTime(at)); err != nil {
			return nil, false, err
		}
	}
	n, err := s.dialect.unblock(ctx, db, finishing, finishing, at)
	if err != nil {
		return nil, false, err
	}
	return out, n > 0, nil
}

func sqLeaseParam(leases []Lease) string {
	pairs := make([][2]int64, len(leases))
	for i, l := range leases {
		pairs[i] = [2]int64{l.JobID, int64(l.Attempt)}
	}
	return jsonParam(pairs)
}

// RecordFailure records a failed attempt under the job's lease.
func (s SQLite) RecordFailure(ctx context.Context, db bun.IDB, f Failure, at time.Time) error {
	return s.recordFailure(ctx, db, f, at, sqRecordFailureSQL, sqLeaseParam([]Lease{LeaseOf(f.Job)}), f.Owner)
}

// HandBack returns held jobs to the queue.
func (s SQLite) HandBack(ctx context.Context, db bun.IDB, owner string, leases []Lease, at time.Time) ([]HandedBack, error) {
	var out []HandedBack
	err := db.NewRaw(sqHandBackSQL, at, at, sqLeaseParam(leases), owner).Scan(ctx, &out)
	return out, err
}

// RenewLeases extends held leases.
func (s SQLite) RenewLeases(ctx context.Context, db bun.IDB, owner string, leases []Lease, until time.Time) (int64, error) {
	res, err := db.ExecContext(ctx, sqRenewSQL, until, sqLeaseParam(leases), owner)
	if err != nil {
		return 0, err
	}
	return rowsAffected(res), nil
}

// Subscribe does nothing: processes sharing a SQLite file learn of each
// other's enqueues by polling, and a Worker learns of its own process's at
// once, through the in-process signal keyed by the pool's dialect (for
// every dialect; see notify).
func (s SQLite) Subscribe(context.Context, *bun.DB, *bun.DB, *slog.Logger, chan<- struct{}) func() {
	return func() {}
}

// sqWaker does nothing: see Subscribe.
type sqWaker struct{}

// NewWaker returns a Waker that does nothing: see Subscribe.
func (s SQLite) NewWaker(*bun.DB, *slog.Logger) Waker { return sqWaker{} }

// Poke implements [Waker.Poke].
func (sqWaker) Poke() {}

// Close implements [Waker.Close].
func (sqWaker) Close() {}

// leadQuery implements dialectSQL: the lease timed by the process's
// clock, the processes sharing a database file sharing a machine.
func (sqliteSQL) leadQuery(holder string, ttl time.Duration) (string, []any) {
	now := record.DBTime(time.Now())
	return sqLeadSQL, []any{LeaderName, holder, now, now.Add(ttl), now}
}

// sqLeadSQL is pgLeadSQL with the times given.
const sqLeadSQL = `INSERT INTO tds_leader AS l (name, holder, elected_at, expires_at)
VALUES (?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET
	holder = excluded.holder,
	elected_at = CASE WHEN l.holder = excluded.holder THEN l.elected_at ELSE excluded.elected_at END,
	expires_at = excluded.expires_at
WHERE l.holder = excluded.holder OR l.expires_at < ?
RETURNING holder`
