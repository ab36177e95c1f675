package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"
)

// headRule is the rule of per-entity order, written once: it holds when
// the entity of the row aliased f (columns source, entity_type,
// source_entity_id) has a head other than the jobs in fin (a relation of
// ids the statement defines, possibly empty): an unfinished job that is
// not blocked. While the rules hold, an entity has a head exactly when it
// has unfinished jobs; asking for the head rather than for any unfinished
// job lets a new job unstick an entity whose head was lost (rows deleted
// by hand).
//
// It is two probes, each meant for one partial index: the waiting jobs'
// and the few running ones'. They must go there whatever the statistics,
// which lag behind a burst: so they are scalar subqueries, not EXISTS,
// which PostgreSQL may turn into a hash of every waiting job built in each
// statement; and "blocked" is tested in a form that does not match the
// claim index's predicate, which would otherwise offer a scan of every
// claimable job. Every statement that asks whether an entity has a head
// uses it, on both dialects, and so does PostgreSQL's tds_busy_entities
// (see busyEntitiesPG), which Migrate defines from it.
const headRule = `((SELECT 1 FROM tds_sync_queue AS hw
	WHERE hw.entity_type = f.entity_type AND hw.source_entity_id = f.source_entity_id
	AND hw.source = f.source AND hw.status IN ('pending', 'retry') AND (NOT hw.blocked) IS TRUE
	AND hw.id NOT IN (SELECT fin.id FROM fin) LIMIT 1) IS NOT NULL
OR (SELECT 1 FROM tds_sync_queue AS hr
	WHERE hr.entity_type = f.entity_type AND hr.source_entity_id = f.source_entity_id
	AND hr.source = f.source AND hr.status = 'processing'
	AND hr.id NOT IN (SELECT fin.id FROM fin) LIMIT 1) IS NOT NULL)`

// noFinishing is a fin relation without ids, for statements that exclude
// no job from headRule.
const noFinishing = `fin (id) AS (SELECT CAST(0 AS BIGINT) WHERE 1 = 0)`

// leaseHeld is the lease condition, the one place it is written: the row
// of tds_sync_queue is the job of the relation lease (job_id, attempt),
// as owner (the parameter) holds it. The owner and the attempt identify a
// lease, so a job rescued and claimed again cannot be touched by its old
// holder. Each statement joins its lease relation (an array per column on
// PostgreSQL, a JSON array on SQLite) so that the jobs are found by
// primary key, one probe per lease. The status is tested in a form no
// index matches: offered "status = 'processing'", PostgreSQL would rather
// walk the status index, whose estimate is badly off after a burst
// (statistics lag, dead index entries pile up) and which then costs a
// scan of every job in flight per statement (measured 1 s for one batch's
// completion instead of 1 ms).
const leaseHeld = `tds_sync_queue.id = lease.job_id AND tds_sync_queue.attempt_count = lease.attempt
AND tds_sync_queue.locked_by = ? AND (tds_sync_queue.status = 'processing') IS TRUE`

// A completed job marks its inbox event processed without writing to it:
// the worker's burn-down would otherwise rewrite every event's wide row
// (payload, seven indexes) once more. An event is processed when its
// processed_at is set (MarkProcessed, a dead letter, a discard) or its job
// is completed; the job's completed_at is then its processed time, until
// DeleteCompleted copies it into processed_at.
const (
	// eventColumns reads an event (alias e) with its processed time,
	// written or implied by its completed job.
	eventColumns = `e.id, e.source, e.event_type, e.entity_type, e.source_entity_id, e.idempotency_key,
	e.delivery_id, e.content_hash, e.payload, e.source_modified_at, e.request_metadata, e.is_valid,
	e.validation_errors, e.validated_at, e.moved_to_queue, e.queued_at, e.received_at,
	COALESCE(e.processed_at, (SELECT q.completed_at FROM tds_sync_queue AS q
		WHERE q.inbox_event_id = e.id AND q.status = 'completed')) AS processed_at,
	` + eventStatus + ` AS status`
	// eventStatus is where the event e stands, from its own columns and
	// its job's: one of the Event* statuses. An invalid event never has a
	// job; a completed job's outcome names how it ended (a row completed
	// before outcomes were recorded was synced); an event without a job
	// that is processed was marked so by its host, or its completed job
	// is gone (retention), and its outcome is no longer known.
	eventStatus = `(CASE WHEN e.validated_at IS NOT NULL AND NOT e.is_valid THEN 'invalid'
	ELSE COALESCE((SELECT CASE WHEN q.status = 'completed' THEN COALESCE(q.outcome, 'synced')
			WHEN q.status = 'dead_letter' THEN 'dead_letter' ELSE 'waiting' END
		FROM tds_sync_queue AS q WHERE q.inbox_event_id = e.id),
		CASE WHEN e.processed_at IS NULL THEN 'received' ELSE 'closed' END) END)`
	// isUnprocessed holds when the event e is not processed.
	isUnprocessed = `(e.processed_at IS NULL AND NOT EXISTS (SELECT 1 FROM tds_sync_queue AS q
		WHERE q.inbox_event_id = e.id AND q.status = 'completed'))`
)

// Statements that read the same on both dialects.
const (
	insertEventSQL = `INSERT INTO tds_inbox_events (source, event_type, entity_type, source_entity_id,
	idempotency_key, delivery_id, content_hash, payload, source_modified_at, request_metadata, is_valid,
	validation_errors, validated_at, moved_to_queue, queued_at, processed_at, received_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id`
	getEventSQL      = `SELECT ` + eventColumns + ` FROM tds_inbox_events AS e WHERE e.id = ?`
	getEventByKeySQL = `SELECT ` + eventColumns + ` FROM tds_inbox_events AS e WHERE e.idempotency_key = ?`
	markValidSQL     = `UPDATE tds_inbox_events SET is_valid = ?, validation_errors = ?, validated_at = ? WHERE id = ?`
	markQueuedSQL    = `UPDATE tds_inbox_events SET moved_to_queue = TRUE, queued_at = ? WHERE id = ?`
	markProcSQL      = `UPDATE tds_inbox_events SET processed_at = ? WHERE id = ?`
	hasHashSQL       = `SELECT EXISTS (SELECT 1 FROM tds_inbox_events WHERE content_hash = ?)`
	inboxStatsSQL    = `SELECT COUNT(*),
	COALESCE(SUM(CASE WHEN e.is_valid THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN e.moved_to_queue THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN ` + isUnprocessed + ` THEN 1 ELSE 0 END), 0),
	MIN(e.received_at), MAX(e.received_at)
FROM tds_inbox_events AS e`

	// listEventsSQL lists events by filter: an unset filter is NULL (or
	// '' for text), and its test folds away.
	listEventsSQL = `SELECT ` + eventColumns + ` FROM tds_inbox_events AS e
WHERE (? = '' OR e.source = ?) AND (? = '' OR e.entity_type = ?)
AND (? = '' OR e.source_entity_id = ?) AND (? = '' OR e.event_type = ?)
AND (? IS NULL OR e.is_valid = ?) AND (? IS NULL OR e.moved_to_queue = ?)
AND (? IS NULL OR ? = NOT ` + isUnprocessed + `) AND (? = '' OR ` + eventStatus + ` = ?)
AND (? IS NULL OR e.received_at >= ?) AND (? IS NULL OR e.received_at < ?)
AND (? = 0 OR e.id < ?)`
	listEventsNewestSQL = listEventsSQL + ` ORDER BY e.id DESC LIMIT ?`
	listEventsOldestSQL = listEventsSQL + ` ORDER BY e.id ASC LIMIT ?`

	getJobSQL        = `SELECT * FROM tds_sync_queue WHERE id = ?`
	getJobByEventSQL = `SELECT * FROM tds_sync_queue WHERE inbox_event_id = ?`
	listWaitingSQL   = `SELECT * FROM tds_sync_queue WHERE status IN ('pending', 'retry') ORDER BY priority, id LIMIT ?`
	attemptsSQL      = `SELECT * FROM tds_sync_attempts WHERE job_id = ? ORDER BY id`

	// The open statuses are named, not "<> 'completed'", so that both
	// statements read the status index instead of every job.
	statsByStatusSQL = `SELECT status, COUNT(*) AS n FROM tds_sync_queue
WHERE status IN ('pending', 'processing', 'retry', 'dead_letter') GROUP BY status
UNION ALL SELECT 'completed', COUNT(*) FROM tds_sync_queue WHERE status = 'completed' HAVING COUNT(*) > 0`
	statsOpenSQL = `SELECT entity_type, priority, COUNT(*) AS n FROM tds_sync_queue
WHERE status IN ('pending', 'processing', 'retry', 'dead_letter') GROUP BY entity_type, priority`
	statsMiscSQL = `SELECT (SELECT COUNT(*) FROM tds_sync_queue WHERE blocked),
	(SELECT MIN(created_at) FROM tds_sync_queue WHERE status IN ('pending', 'retry')),
	(SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'completed' AND completed_at >= ?)`

	// deadLettersWhere selects dead letters by filter (alias d).
	deadLettersWhere = `d.status = 'dead_letter' AND (? = 0 OR d.id = ?)
AND (? = '' OR d.entity_type = ?) AND (? = '' OR d.last_error_code = ?)
AND (? IS NULL OR d.updated_at >= ?) AND (? IS NULL OR d.updated_at < ?)`
	listDeadSQL = `SELECT d.* FROM tds_sync_queue AS d WHERE ` + deadLettersWhere + `
AND (? = 0 OR d.id < ?) ORDER BY d.id DESC LIMIT ?`
	countDeadSQL = `SELECT COUNT(*) FROM tds_sync_queue AS d WHERE ` + deadLettersWhere
	deadCodesSQL = `SELECT d.last_error_code AS code, COUNT(*) AS n FROM tds_sync_queue AS d
WHERE d.status = 'dead_letter' AND d.last_error_code IS NOT NULL AND d.last_error_code <> ''
GROUP BY d.last_error_code ORDER BY d.last_error_code`
	selectDeadSQL = `SELECT d.id, d.source, d.entity_type, d.source_entity_id FROM tds_sync_queue AS d
WHERE ` + deadLettersWhere + ` ORDER BY d.id`

	discardSQL = `UPDATE tds_sync_queue SET status = 'completed', outcome = 'discarded', outcome_detail = ?,
	completed_at = ?, updated_at = ?
WHERE id = ? AND status = 'dead_letter'
RETURNING inbox_event_id`

	insertAttemptSQL = `INSERT INTO tds_sync_attempts (job_id, attempt, worker, error, error_code, started_at, failed_at)
VALUES (?, ?, ?, ?, ?, ?, ?)`

	// The jobs rescue will dead-letter: their entities are locked first.
	doomedSQL = `SELECT id, source, entity_type, source_entity_id FROM tds_sync_queue
WHERE status = 'processing' AND locked_until < ? AND attempt_count >= max_retry_attempts`
	rescueSQL = `UPDATE tds_sync_queue
SET status = CASE WHEN attempt_count >= max_retry_attempts THEN 'dead_letter' ELSE 'retry' END,
	next_retry_at = ?, last_error = ?, last_error_code = ?, locked_until = NULL, updated_at = ?
WHERE status = 'processing' AND locked_until < ?
RETURNING *`

	// stuckSQL finds the entities whose unfinished jobs are all blocked:
	// no head will ever unblock them.
	stuckSQL = `WITH ` + noFinishing + `
SELECT f.id, f.source, f.entity_type, f.source_entity_id
FROM tds_sync_queue AS f WHERE f.blocked AND NOT ` + headRule + `
LIMIT 1000`

	mirrorUpsertSQL = `INSERT INTO ? AS m
(entity_id, source, data, source_modified_at, synced_at, deleted_at, inbox_event_id)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (entity_id) DO UPDATE SET
	source = excluded.source,
	data = CASE WHEN excluded.deleted_at IS NULL THEN excluded.data ELSE m.data END,
	source_modified_at = excluded.source_modified_at,
	synced_at = excluded.synced_at,
	deleted_at = excluded.deleted_at,
	inbox_event_id = excluded.inbox_event_id
WHERE m.source_modified_at <= excluded.source_modified_at`
	mirrorCurrentSQL = `SELECT source_modified_at, inbox_event_id FROM ? WHERE entity_id = ?`

	migrationsTableSQL = `CREATE TABLE IF NOT EXISTS ? (
	version    BIGINT PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
)`
	migrationAppliedSQL  = `SELECT COUNT(*) FROM ? WHERE version = ?`
	migrationVersionsSQL = `SELECT version FROM ? ORDER BY version`
	migrationRecordSQL   = `INSERT INTO ? (version, name) VALUES (?, ?)`
)

// common holds the operations whose statements are the same on both
// dialects; each dialect's Store embeds it with its own statements.
type common struct {
	dialect dialectSQL
}

// dialectSQL is what differs between the dialects in the statements of
// common.
type dialectSQL interface {
	// lock takes the entity locks in db (nothing on SQLite).
	lock(ctx context.Context, db bun.IDB, keys []Entity) error
	// unblock hands each entity of the jobs of on to its oldest blocked
	// job unless it has a head other than finishing.
	unblock(ctx context.Context, db bun.IDB, of, finishing []int64, at time.Time) (int64, error)
	// heads returns which of the entities have a head.
	heads(ctx context.Context, db bun.IDB, keys []Entity) (map[Entity]bool, error)
	// ids renders ids as one parameter.
	ids(ids []int64) any
	// texts renders strings as one parameter.
	texts(s []string) any
	notify(ctx context.Context, db bun.IDB) error
	// leadQuery is the statement and arguments that take or renew
	// holder's lease for ttl, returning the holder's row when it leads.
	leadQuery(holder string, ttl time.Duration) (string, []any)
	txOptions() *sql.TxOptions
	migrations() (fs.FS, error)
	// tableExistsSQL counts the tables named by its one parameter.
	tableExistsSQL() string
	// reconcile returns the reconciliation statements of the dialect.
	reconcile() *reconcileSQL
	// mirror returns the batched mirror statements of the dialect.
	mirror() *mirrorSQL
	// throughput returns the dialect's statement of Store.Throughput.
	throughput() string
}

// EntityLockClass is the first key of the transaction-scoped advisory
// locks that serialise, per entity, what changes the entity's head
// ("tdse").
const EntityLockClass = 0x74647365

// entityLockKeys returns the second keys of the advisory locks of the
// entities, deduplicated and in ascending order, so that transactions
// taking several never deadlock on each other.
func entityLockKeys(keys []Entity) []int32 {
	out := make([]int32, 0, len(keys))
	for _, k := range keys {
		h := fnv.New32a()
		for _, part := range []string{k.Source, k.EntityType, k.EntityID} {
			h.Write([]byte(part))
			h.Write([]byte{0})
		}
		out = append(out, int32(h.Sum32()))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ErrNUL refuses a text with a NUL character, which PostgreSQL cannot
// store (and bun would drop from an array without a word).
var ErrNUL = errors.New("tds: a NUL character in a text")

// checkNUL refuses a batch with a NUL character in a text column.
func checkNUL(batch []Ingest) error {
	for _, in := range batch {
		r := in.Event
		for _, s := range []string{r.Source, r.EventType, r.EntityType, r.EntityID, r.IdempotencyKey,
			r.ContentHash, string(r.Payload), string(r.Metadata)} {
			if strings.IndexByte(s, 0) >= 0 {
				return ErrNUL
			}
		}
		if r.DeliveryID != nil && strings.IndexByte(*r.DeliveryID, 0) >= 0 {
			return ErrNUL
		}
	}
	return nil
}

// firstPerKey keeps the first event of each idempotency key of a batch:
// the later ones are duplicates of it, stored by nobody.
func firstPerKey(batch []Ingest) []Ingest {
	seen := make(map[string]bool, len(batch))
	out := batch[:0:0]
	for _, in := range batch {
		if !seen[in.Event.IdempotencyKey] {
			seen[in.Event.IdempotencyKey] = true
			out = append(out, in)
		}
	}
	return out
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// MigrationFS returns the embedded schema of s's dialect.
func MigrationFS(s Store) (fs.FS, error) {
	switch s := s.(type) {
	case Postgres:
		return s.dialect.migrations()
	case SQLite:
		return s.dialect.migrations()
	}
	return nil, ErrUnsupportedDialect
}

// entityRow is an entity a statement returns.
type entityRow struct {
	Source     string `bun:"source"`
	EntityType string `bun:"entity_type"`
	EntityID   string `bun:"source_entity_id"`
}

// entitySet turns rows into a set with room for more.
func entitySet(rows []entityRow, room int) map[Entity]bool {
	has := make(map[Entity]bool, len(rows)+room)
	for _, r := range rows {
		has[Entity(r)] = true
	}
	return has
}

func rowsAffected(res sql.Result) int64 {
	n, _ := res.RowsAffected()
	return n
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nullBool(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullJSON(b json.RawMessage) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}

// InsertEvent implements [Store.InsertEvent].
func (c common) InsertEvent(ctx context.Context, db bun.IDB, ev *Event) (*Event, bool, error) {
	var id int64
	err := db.QueryRowContext(ctx, insertEventSQL, ev.Source, ev.EventType, ev.EntityType, ev.EntityID,
		ev.IdempotencyKey, ev.DeliveryID, ev.ContentHash, string(ev.Payload), ev.Version, string(ev.Metadata),
		ev.IsValid, nullJSON(ev.ValidationErrors), ev.ValidatedAt, ev.MovedToQueue, ev.QueuedAt, ev.ProcessedAt,
		ev.ReceivedAt).Scan(&id)
	if err == nil {
		ev.ID = id
		ev.Status = jobless(ev)
		return ev, true, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, false, err
	}
	existing := new(Event)
	if err := db.NewRaw(getEventByKeySQL, ev.IdempotencyKey).Scan(ctx, existing); err != nil {
		return nil, false, err
	}
	return existing, false, nil
}

// jobless is eventStatus for an event that has no job, as a new one has.
func jobless(ev *Event) string {
	switch {
	case ev.ValidatedAt != nil && !ev.IsValid:
		return EventInvalid
	case ev.ProcessedAt != nil:
		return EventClosed
	}
	return EventReceived
}

// GetEvent implements [Store.GetEvent].
func (c common) GetEvent(ctx context.Context, db bun.IDB, id int64) (*Event, error) {
	ev := new(Event)
	if err := db.NewRaw(getEventSQL, id).Scan(ctx, ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// MarkValidated implements [Store.MarkValidated].
func (c common) MarkValidated(ctx context.Context, db bun.IDB, id int64, errs json.RawMessage, at time.Time) (bool, error) {
	res, err := db.ExecContext(ctx, markValidSQL, len(errs) == 0, nullJSON(errs), at, id)
	if err != nil {
		return false, err
	}
	return rowsAffected(res) > 0, nil
}

// MarkQueued implements [Store.MarkQueued].
func (c common) MarkQueued(ctx context.Context, db bun.IDB, id int64, at time.Time) (bool, error) {
	res, err := db.ExecContext(ctx, markQueuedSQL, at, id)
	if err != nil {
		return false, err
	}
	return rowsAffected(res) > 0, nil
}

// MarkProcessed implements [Store.MarkProcessed].
func (c common) MarkProcessed(ctx context.Context, db bun.IDB, id int64, at time.Time) (bool, error) {
	res, err := db.ExecContext(ctx, markProcSQL, at, id)
	if err != nil {
		return false, err
	}
	return rowsAffected(res) > 0, nil
}

// ListEvents implements [Store.ListEvents].
func (c common) ListEvents(ctx context.Context, db bun.IDB, f EventFilter) ([]Event, error) {
	q := listEventsNewestSQL
	if f.Oldest {
		q = listEventsOldestSQL
	}
	since, until := nullTime(f.Since), nullTime(f.Until)
	out := []Event{}
	err := db.NewRaw(q, f.Source, f.Source, f.EntityType, f.EntityType, f.EntityID, f.EntityID,
		f.EventType, f.EventType, nullBool(f.Valid), nullBool(f.Valid), nullBool(f.Queued), nullBool(f.Queued),
		nullBool(f.Processed), nullBool(f.Processed), f.Status, f.Status, since, since, until, until, f.BeforeID, f.BeforeID,
		f.Limit).Scan(ctx, &out)
	return out, err
}

// HasContentHash implements [Store.HasContentHash].
func (c common) HasContentHash(ctx context.Context, db bun.IDB, hash string) (bool, error) {
	var ok bool
	err := db.QueryRowContext(ctx, hasHashSQL, hash).Scan(&ok)
	return ok, err
}

// InboxStats implements [Store.InboxStats].
func (c common) InboxStats(ctx context.Context, db bun.IDB) (*InboxCounts, error) {
	var s InboxCounts
	var oldest, newest bun.NullTime
	if err := db.QueryRowContext(ctx, inboxStatsSQL).Scan(&s.Total, &s.Valid, &s.Queued, &s.Unprocessed,
		&oldest, &newest); err != nil {
		return nil, err
	}
	if !oldest.IsZero() {
		o, n := oldest.UTC(), newest.UTC()
		s.OldestAt, s.NewestAt = &o, &n
	}
	return &s, nil
}

// GetJob implements [Store.GetJob].
func (c common) GetJob(ctx context.Context, db bun.IDB, id int64) (*Job, error) {
	j := new(Job)
	if err := db.NewRaw(getJobSQL, id).Scan(ctx, j); err != nil {
		return nil, err
	}
	return j, nil
}

// GetJobByEvent implements [Store.GetJobByEvent].
func (c common) GetJobByEvent(ctx context.Context, db bun.IDB, eventID int64) (*Job, error) {
	j := new(Job)
	if err := db.NewRaw(getJobByEventSQL, eventID).Scan(ctx, j); err != nil {
		return nil, err
	}
	return j, nil
}

// ListWaiting implements [Store.ListWaiting].
func (c common) ListWaiting(ctx context.Context, db bun.IDB, limit int) ([]Job, error) {
	var out []Job
	err := db.NewRaw(listWaitingSQL, limit).Scan(ctx, &out)
	return out, err
}

// Attempts implements [Store.Attempts].
func (c common) Attempts(ctx context.Context, db bun.IDB, jobID int64) ([]Attempt, error) {
	var out []Attempt
	err := db.NewRaw(attemptsSQL, jobID).Scan(ctx, &out)
	return out, err
}

// QueueStats implements [Store.QueueStats].
func (c common) QueueStats(ctx context.Context, db bun.IDB, completedSince time.Time) (*QueueCounts, error) {
	s := &QueueCounts{ByStatus: map[string]int64{}}
	var byStatus []struct {
		Status string `bun:"status"`
		N      int64  `bun:"n"`
	}
	if err := db.NewRaw(statsByStatusSQL).Scan(ctx, &byStatus); err != nil {
		return nil, err
	}
	for _, r := range byStatus {
		s.ByStatus[r.Status] = r.N
	}
	if err := db.NewRaw(statsOpenSQL).Scan(ctx, &s.Open); err != nil {
		return nil, err
	}
	var oldest bun.NullTime
	if err := db.QueryRowContext(ctx, statsMiscSQL, completedSince).Scan(&s.Blocked, &oldest, &s.CompletedSince); err != nil {
		return nil, err
	}
	if !oldest.IsZero() {
		t := oldest.UTC()
		s.OldestWaiting = &t
	}
	return s, nil
}

func deadArgs(f DeadLetterFilter) []any {
	since, until := nullTime(f.Since), nullTime(f.Until)
	return []any{f.ID, f.ID, f.EntityType, f.EntityType, f.ErrorCode, f.ErrorCode, since, since, until, until}
}

// ListDeadLetters implements [Store.ListDeadLetters].
func (c common) ListDeadLetters(ctx context.Context, db bun.IDB, f DeadLetterFilter) ([]Job, error) {
	out := []Job{}
	err := db.NewRaw(listDeadSQL, append(deadArgs(f), f.BeforeID, f.BeforeID, f.Limit)...).Scan(ctx, &out)
	return out, err
}

// CountDeadLetters implements [Store.CountDeadLetters].
func (c common) CountDeadLetters(ctx context.Context, db bun.IDB, f DeadLetterFilter) (int64, error) {
	var n int64
	err := db.QueryRowContext(ctx, countDeadSQL, deadArgs(f)...).Scan(&n)
	return n, err
}

// DeadLetterCodes implements [Store.DeadLetterCodes].
func (c common) DeadLetterCodes(ctx context.Context, db bun.IDB) ([]CodeCount, error) {
	out := []CodeCount{}
	err := db.NewRaw(deadCodesSQL).Scan(ctx, &out)
	return out, err
}

// DiscardDeadLetter implements [Store.DiscardDeadLetter].
func (c common) DiscardDeadLetter(ctx context.Context, db bun.IDB, id int64, reason string, at time.Time) error {
	var eventID int64
	if err := db.QueryRowContext(ctx, discardSQL, reason, at, at, id).Scan(&eventID); err != nil {
		return err
	}
	_, err := db.ExecContext(ctx, markProcSQL, at, eventID)
	return err
}

// recordFailure is RecordFailure on the dialect's statement, whose lease
// arguments follow the ones set here.
func (c common) recordFailure(ctx context.Context, db bun.IDB, f Failure, at time.Time, query string, lease ...any) error {
	msg := truncate(f.Error, MaxErrorLen)
	status := StatusRetry
	if f.DeadLetter {
		status = StatusDeadLetter
	}
	code := nullString(f.Code)
	res, err := db.ExecContext(ctx, query, append([]any{status, f.RetryAt, msg, code, at}, lease...)...)
	if err != nil {
		return err
	}
	if rowsAffected(res) != 1 {
		return ErrLeaseLost
	}
	owner := f.Owner
	if _, err := db.ExecContext(ctx, insertAttemptSQL, f.Job.ID, f.Job.Attempt, &owner, msg, code,
		f.StartedAt, at); err != nil {
		return err
	}
	if f.DeadLetter {
		_, err = db.ExecContext(ctx, markProcSQL, at, f.Job.InboxEventID)
	}
	return err
}

// FinishDeadLetter implements [Store.FinishDeadLetter].
func (c common) FinishDeadLetter(ctx context.Context, db bun.IDB, job *Job, at time.Time) error {
	if err := c.dialect.lock(ctx, db, []Entity{job.Entity()}); err != nil {
		return err
	}
	_, err := c.dialect.unblock(ctx, db, []int64{job.ID}, []int64{job.ID}, at)
	return err
}

// retryDeadLetters is RetryDeadLetters on the dialect's statements.
func (c common) RetryDeadLetters(ctx context.Context, db bun.IDB, f DeadLetterFilter, at time.Time,
	retrySQL, unprocessSQL string) (int64, error) {
	var jobs []Job
	if err := db.NewRaw(selectDeadSQL, deadArgs(f)...).Scan(ctx, &jobs); err != nil {
		return 0, err
	}
	if len(jobs) == 0 {
		return 0, nil
	}
	// A retried job waits behind its entity's head, if any, and the
	// retried jobs of one entity run oldest first.
	keys := make([]Entity, len(jobs))
	for i := range jobs {
		keys[i] = jobs[i].Entity()
	}
	if err := c.dialect.lock(ctx, db, keys); err != nil {
		return 0, err
	}
	has, err := c.dialect.heads(ctx, db, keys)
	if err != nil {
		return 0, err
	}
	var heads, blocked []int64
	for i := range jobs {
		if has[keys[i]] {
			blocked = append(blocked, jobs[i].ID)
		} else {
			heads = append(heads, jobs[i].ID)
		}
		has[keys[i]] = true
	}
	var events []int64
	headsGone := false
	for _, g := range []struct {
		ids     []int64
		blocked bool
	}{{heads, false}, {blocked, true}} {
		if len(g.ids) == 0 {
			continue
		}
		// Still dead letters: one may have been retried or discarded
		// since the SELECT.
		var got []int64
		if err := db.NewRaw(retrySQL, g.blocked, at, at, c.dialect.ids(g.ids)).Scan(ctx, &got); err != nil {
			return 0, err
		}
		events = append(events, got...)
		headsGone = headsGone || !g.blocked && len(got) < len(g.ids)
	}
	if len(events) == 0 {
		return 0, nil
	}
	if headsGone && len(blocked) > 0 {
		// A job meant to be a head is no longer a dead letter: the jobs
		// blocked behind it need another.
		if _, err := c.dialect.unblock(ctx, db, blocked, nil, at); err != nil {
			return 0, err
		}
	}
	// Their inbox events are unprocessed again.
	if _, err := db.ExecContext(ctx, unprocessSQL, c.dialect.ids(events)); err != nil {
		return 0, err
	}
	return int64(len(events)), c.dialect.notify(ctx, db)
}

// enqueue is Enqueue on the dialect's statements.
func (c common) enqueue(ctx context.Context, db bun.IDB, id int64, e Entity, nj NewJob, at time.Time,
	readSQL, insertSQL string) (*Job, error) {
	if err := c.dialect.lock(ctx, db, []Entity{e}); err != nil {
		return nil, err
	}
	// Read under the lock: what was stored decides, not what the caller
	// believes.
	var ev struct {
		Source     string `bun:"source"`
		EntityType string `bun:"entity_type"`
		EntityID   string `bun:"source_entity_id"`
		EventType  string `bun:"event_type"`
		IsValid    bool   `bun:"is_valid"`
	}
	if err := db.NewRaw(readSQL, id).Scan(ctx, &ev); err != nil {
		return nil, err
	}
	if (Entity{ev.Source, ev.EntityType, ev.EntityID}) != e {
		return nil, ErrEntityMismatch
	}
	if !ev.IsValid {
		return nil, ErrNotValid
	}
	has, err := c.dialect.heads(ctx, db, []Entity{e})
	if err != nil {
		return nil, err
	}
	job := &Job{
		InboxEventID: id, Source: e.Source, EventType: ev.EventType, EntityType: e.EntityType, EntityID: e.EntityID,
		Status: StatusPending, Priority: nj.Priority, Blocked: has[e], MaxAttempts: nj.MaxAttempts,
		NextRetryAt: at, CreatedAt: at, UpdatedAt: at,
	}
	var jobID int64
	err = db.QueryRowContext(ctx, insertSQL, job.InboxEventID, job.Source, job.EventType, job.EntityType,
		job.EntityID, job.Priority, job.Blocked, job.MaxAttempts, at, at, at).Scan(&jobID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// Queued already: its job stands.
		if job, err = c.GetJobByEvent(ctx, db, id); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		job.ID = jobID
	}
	if _, err := db.ExecContext(ctx, markQueuedOnceSQL, at, id); err != nil {
		return nil, err
	}
	return job, c.dialect.notify(ctx, db)
}

const (
	enqueueReadSQL = `SELECT source, entity_type, source_entity_id, event_type, is_valid
FROM tds_inbox_events WHERE id = ?`
	markQueuedOnceSQL = `UPDATE tds_inbox_events SET moved_to_queue = TRUE, queued_at = COALESCE(queued_at, ?)
WHERE id = ?`
	insertJobSQL = `INSERT INTO tds_sync_queue (inbox_event_id, source, event_type, entity_type, source_entity_id,
	status, priority, blocked, attempt_count, max_retry_attempts, next_retry_at, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, 0, ?, ?, ?, ?)
ON CONFLICT (inbox_event_id) DO NOTHING
RETURNING id`
)

// RescueExpired implements [Store.RescueExpired].
func (c common) RescueExpired(ctx context.Context, db *bun.DB, at time.Time, msg, code string) ([]Job, error) {
	var rescued []Job
	err := db.RunInTx(ctx, c.dialect.txOptions(), func(ctx context.Context, tx bun.Tx) error {
		rescued = nil
		// The jobs that will be dead-lettered hand their entities on to
		// the next job: their entities are locked first, as a worker
		// completing a batch does, so the two cannot deadlock. No job can
		// join them between this SELECT and the UPDATE: a lease only
		// moves forward.
		var doomed []Job
		if err := tx.NewRaw(doomedSQL, at).Scan(ctx, &doomed); err != nil {
			return err
		}
		keys := make([]Entity, len(doomed))
		for i := range doomed {
			keys[i] = doomed[i].Entity()
		}
		if err := c.dialect.lock(ctx, tx, keys); err != nil {
			return err
		}
		if err := tx.NewRaw(rescueSQL, at, msg, code, at, at).Scan(ctx, &rescued); err != nil {
			return err
		}
		var deadJobs, deadEvents []int64
		for i := range rescued {
			j := &rescued[i]
			c := code
			if _, err := tx.ExecContext(ctx, insertAttemptSQL, j.ID, j.Attempt, j.LeasedBy, msg, &c, nil, at); err != nil {
				return err
			}
			if j.Status == StatusDeadLetter {
				deadJobs, deadEvents = append(deadJobs, j.ID), append(deadEvents, j.InboxEventID)
			}
		}
		if len(deadJobs) == 0 {
			return nil
		}
		for _, id := range deadEvents {
			if _, err := tx.ExecContext(ctx, markProcSQL, at, id); err != nil {
				return err
			}
		}
		// Their entities were locked above.
		_, err := c.dialect.unblock(ctx, tx, deadJobs, deadJobs, at)
		return err
	})
	return rescued, err
}

// RepairHeads implements [Store.RepairHeads].
func (c common) RepairHeads(ctx context.Context, db *bun.DB, at time.Time) (int64, error) {
	var stuck []Job
	if err := db.NewRaw(stuckSQL).Scan(ctx, &stuck); err != nil {
		return 0, err
	}
	if len(stuck) == 0 {
		return 0, nil
	}
	keys := make([]Entity, len(stuck))
	ids := make([]int64, len(stuck))
	for i := range stuck {
		keys[i], ids[i] = stuck[i].Entity(), stuck[i].ID
	}
	var n int64
	err := db.RunInTx(ctx, c.dialect.txOptions(), func(ctx context.Context, tx bun.Tx) error {
		if err := c.dialect.lock(ctx, tx, keys); err != nil {
			return err
		}
		var err error
		n, err = c.dialect.unblock(ctx, tx, ids, nil, at)
		return err
	})
	return n, err
}

// MirrorUpsert implements [Store.MirrorUpsert].
func (c common) MirrorUpsert(ctx context.Context, db bun.IDB, m *Mirror) (*MirrorCurrent, bool, error) {
	res, err := db.ExecContext(ctx, mirrorUpsertSQL, bun.Ident(m.Table), m.EntityID, m.Source, m.Data,
		m.Version, m.SyncedAt, m.DeletedAt, m.InboxEventID)
	if err != nil {
		return nil, false, err
	}
	if rowsAffected(res) > 0 {
		return nil, true, nil
	}
	cur := new(MirrorCurrent)
	err = db.NewRaw(mirrorCurrentSQL, bun.Ident(m.Table), m.EntityID).Scan(ctx, cur)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, errors.New("the row was neither written nor found")
	}
	if err != nil {
		return nil, false, err
	}
	return cur, false, nil
}

// Notify implements [Store.Notify].
func (c common) Notify(ctx context.Context, db bun.IDB) error { return c.dialect.notify(ctx, db) }

// TxOptions implements [Store.TxOptions].
func (c common) TxOptions() *sql.TxOptions { return c.dialect.txOptions() }

// migrationFile is one *.up.sql file of the embedded schema.
type migrationFile struct {
	version int64
	name    string
	sql     string
}

// ReadMigrations reads the *.up.sql files of fsys in version order.
func ReadMigrations(fsys fs.FS) ([]migrationFile, error) {
	names, err := fs.Glob(fsys, "*.up.sql")
	if err != nil {
		return nil, err
	}
	var out []migrationFile
	seen := map[int64]string{}
	for _, n := range names {
		num, _, ok := strings.Cut(path.Base(n), "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("tds: migration %s: name must start with a number and '_'", n)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("tds: migrations %s and %s share version %d", other, n, v)
		}
		seen[v] = n
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		out = append(out, migrationFile{version: v, name: strings.TrimSuffix(n, ".up.sql"), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// leaderReleaseSQL gives the housekeeping lease up.
const leaderReleaseSQL = `DELETE FROM tds_leader WHERE name = ? AND holder = ?`

// leaseLeader is holder's part in the housekeeping election, a lease row
// taken and renewed by the dialect's leadQuery.
type leaseLeader struct {
	db      *bun.DB
	dialect dialectSQL
	holder  string
	ttl     time.Duration
}

// NewLeader implements [Store.NewLeader].
func (c common) NewLeader(db *bun.DB, holder string, ttl time.Duration) Leader {
	return &leaseLeader{db: db, dialect: c.dialect, holder: holder, ttl: ttl}
}

// Lead implements [Leader.Lead].
func (l *leaseLeader) Lead(ctx context.Context) (bool, error) {
	query, args := l.dialect.leadQuery(l.holder, l.ttl)
	var got []string
	err := l.db.NewRaw(query, args...).Scan(ctx, &got)
	return err == nil && len(got) == 1, err
}

// Release implements [Leader.Release].
func (l *leaseLeader) Release(ctx context.Context) error {
	_, err := l.db.ExecContext(ctx, leaderReleaseSQL, LeaderName, l.holder)
	return err
}

// ApplyMigrations applies the *.up.sql files of fsys not yet recorded in
// table, in version order, each in a transaction with the row that
// records it; lock, when not nil, runs first in each of those
// transactions (and in the one that creates table).
func ApplyMigrations(ctx context.Context, db bun.IDB, fsys fs.FS, table string, lock func(context.Context, bun.Tx) error) error {
	files, err := ReadMigrations(fsys)
	if err != nil {
		return err
	}
	if lock == nil {
		lock = func(context.Context, bun.Tx) error { return nil }
	}
	err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := lock(ctx, tx); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, migrationsTableSQL, bun.Ident(table))
		return err
	})
	if err != nil {
		return fmt.Errorf("creating %s: %w", table, err)
	}
	for _, m := range files {
		err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if err := lock(ctx, tx); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRowContext(ctx, migrationAppliedSQL, bun.Ident(table), m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, migrationRecordSQL, bun.Ident(table), m.version, m.name)
			return err
		})
		if err != nil {
			return &MigrationError{Name: m.name, Err: err}
		}
	}
	return nil
}

// MigrationError is a migration that failed; nothing of it was applied.
type MigrationError struct {
	Name string
	Err  error
}

// Error names the migration.
func (e *MigrationError) Error() string { return "applying migration " + e.Name + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *MigrationError) Unwrap() error { return e.Err }

// Schema is how a database's tds schema compares with the embedded one.
type Schema struct {
	// Applied are the versions recorded as applied, in order.
	Applied []int64
	// Missing are the names of the embedded migrations not applied: the
	// schema is behind this binary.
	Missing []string
	// Unknown are the versions applied that this binary does not embed:
	// a newer binary migrated the database.
	Unknown []int64
}

// SchemaStatus implements [Store.SchemaStatus].
func (c common) SchemaStatus(ctx context.Context, db bun.IDB, table string) (*Schema, error) {
	fsys, err := c.dialect.migrations()
	if err != nil {
		return nil, err
	}
	files, err := ReadMigrations(fsys)
	if err != nil {
		return nil, err
	}
	var tables int
	if err := db.QueryRowContext(ctx, c.dialect.tableExistsSQL(), table).Scan(&tables); err != nil {
		return nil, fmt.Errorf("looking for %s: %w", table, err)
	}
	s := &Schema{}
	if tables > 0 {
		if err := db.NewRaw(migrationVersionsSQL, bun.Ident(table)).Scan(ctx, &s.Applied); err != nil {
			return nil, fmt.Errorf("reading %s: %w", table, err)
		}
	}
	embedded := make(map[int64]bool, len(files))
	for _, f := range files {
		embedded[f.version] = true
		if !slices.Contains(s.Applied, f.version) {
			s.Missing = append(s.Missing, f.name)
		}
	}
	for _, v := range s.Applied {
		if !embedded[v] {
			s.Unknown = append(s.Unknown, v)
		}
	}
	return s, nil
}

// warm runs query on up to n connections of db, held at once: never more
// than the pool may open, or the last would wait for the others, which
// are held until all are done.
func warm(ctx context.Context, db *bun.DB, n int, query string) error {
	if max := db.Stats().MaxOpenConnections; max > 0 {
		n = min(n, max)
	}
	conns := make([]bun.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for range n {
		wg.Go(func() {
			c, err := db.Conn(ctx)
			if err == nil {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				_, err = c.ExecContext(ctx, query)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
