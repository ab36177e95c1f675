// Package store is everything tds says to a database: one interface,
// [Store], with a method per database operation, and one implementation per
// dialect ([Postgres], [SQLite]). Every statement is a constant of this
// package; lists travel as array parameters (PostgreSQL arrays, SQLite JSON
// arrays read with json_each), never as literal lists spliced into the text.
//
// The root package decides what to do; this package knows how to say it in
// SQL. It never imports the root package: rows are the types below, which
// the root converts to and from its public types.
//
// Per-entity order. The jobs of one entity (source, entity type, entity
// id) are synced one at a time, in the order they were enqueued. What keeps
// it so is the blocked flag: every entity with unfinished jobs has exactly
// one that is not blocked, its head, and only heads are claimed.
//
//   - A job that becomes unfinished (enqueued, or a dead letter retried) is
//     blocked if its entity has a head already.
//   - A head that finishes (completed, dead-lettered) unblocks its entity's
//     oldest blocked job.
//   - Claims, retries and hand-backs keep a head the head.
//
// The first two read the entity's jobs and must see every change made to
// them before: on PostgreSQL both run under the entity's transaction-scoped
// advisory lock and read with a snapshot taken after it was granted; on
// SQLite the single writer orders them. The claim then needs no look at
// other jobs of the entity, so its cost does not grow with the backlog.
// What "has a head" means is written once, in [headRule].
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/driver/pgdriver"
)

// Job statuses, as stored.
const (
	StatusPending    = "pending"
	StatusProcessing = "processing"
	StatusRetry      = "retry"
	StatusCompleted  = "completed"
	StatusDeadLetter = "dead_letter"
)

// OutcomeDiscarded is the outcome of a discarded dead letter.
const OutcomeDiscarded = "discarded"

// Event statuses, as eventStatus reads them; a completed job's outcome
// (synced, superseded, discarded) is one too.
const (
	EventReceived   = "received"
	EventInvalid    = "invalid"
	EventWaiting    = "waiting"
	EventDeadLetter = "dead_letter"
	EventClosed     = "closed"
)

// MaxErrorLen caps a recorded error message, in bytes.
const MaxErrorLen = 4000

// Savepoint statements around each job of a worker's batch.
const (
	SavepointOpen     = "SAVEPOINT tds_job"
	SavepointRelease  = "RELEASE SAVEPOINT tds_job"
	SavepointRollback = "ROLLBACK TO SAVEPOINT tds_job"
)

var (
	// ErrLeaseLost reports that a job is no longer held by the lease the
	// caller named: it was rescued, and perhaps claimed again.
	ErrLeaseLost = errors.New("tds: the job's lease was lost")
	// ErrNeedsReadCommitted refuses a transaction whose later statements
	// would not see what committed under the entity locks.
	ErrNeedsReadCommitted = errors.New("tds: changing an entity's line of jobs needs READ COMMITTED isolation")
	// ErrNoRows reports that a row looked up by id does not exist (or is
	// not in the state the operation needs).
	ErrNoRows = sql.ErrNoRows
	// ErrUnsupportedDialect is returned for a *bun.DB that is neither
	// PostgreSQL nor SQLite.
	ErrUnsupportedDialect = errors.New("tds: unsupported database dialect (want PostgreSQL or SQLite)")
	// ErrNotValid refuses to enqueue an event stored as invalid.
	ErrNotValid = errors.New("it failed validation")
	// ErrEntityMismatch refuses to enqueue an event whose stored entity is
	// not the one the caller named.
	ErrEntityMismatch = errors.New("the stored event names another entity")
)

// Event is a row of tds_inbox_events.
type Event struct {
	bun.BaseModel `bun:"table:tds_inbox_events"`

	ID               int64           `bun:"id,pk,autoincrement"`
	Source           string          `bun:"source,notnull"`
	EventType        string          `bun:"event_type,notnull"`
	EntityType       string          `bun:"entity_type,notnull"`
	EntityID         string          `bun:"source_entity_id,notnull"`
	IdempotencyKey   string          `bun:"idempotency_key,notnull"`
	DeliveryID       *string         `bun:"delivery_id"`
	ContentHash      string          `bun:"content_hash,notnull"`
	Payload          json.RawMessage `bun:"payload,notnull"`
	Version          time.Time       `bun:"source_modified_at,notnull"`
	Metadata         json.RawMessage `bun:"request_metadata,notnull"`
	IsValid          bool            `bun:"is_valid,notnull"`
	ValidationErrors json.RawMessage `bun:"validation_errors"`
	ValidatedAt      *time.Time      `bun:"validated_at"`
	MovedToQueue     bool            `bun:"moved_to_queue,notnull"`
	QueuedAt         *time.Time      `bun:"queued_at"`
	ProcessedAt      *time.Time      `bun:"processed_at"`
	ReceivedAt       time.Time       `bun:"received_at,notnull"`
	// Status is where the event stands (one of the Event* statuses),
	// read from the event and its job; it is no column.
	Status string `bun:"status,scanonly"`
	// SyncRunID is the reconciliation run whose repair stored the event.
	SyncRunID *int64 `bun:"sync_run_id"`
	// TraceContext is the trace context of the request that delivered
	// the event (opaque here: a W3C traceparent), nil when not traced.
	TraceContext *string `bun:"trace_context"`
}

// Job is a row of tds_sync_queue.
type Job struct {
	bun.BaseModel `bun:"table:tds_sync_queue"`

	ID             int64      `bun:"id,pk,autoincrement"`
	InboxEventID   int64      `bun:"inbox_event_id,notnull"`
	Source         string     `bun:"source,notnull"`
	EventType      string     `bun:"event_type,notnull"`
	EntityType     string     `bun:"entity_type,notnull"`
	EntityID       string     `bun:"source_entity_id,notnull"`
	Status         string     `bun:"status,notnull"`
	Priority       int        `bun:"priority,notnull"`
	Blocked        bool       `bun:"blocked,notnull"`
	Attempt        int        `bun:"attempt_count,notnull"`
	MaxAttempts    int        `bun:"max_retry_attempts,notnull"`
	NextRetryAt    time.Time  `bun:"next_retry_at,notnull"`
	LeasedBy       *string    `bun:"locked_by"`
	LeaseExpiresAt *time.Time `bun:"locked_until"`
	LastError      *string    `bun:"last_error"`
	LastErrorCode  *string    `bun:"last_error_code"`
	Outcome        *string    `bun:"outcome"`
	OutcomeDetail  *string    `bun:"outcome_detail"`
	CreatedAt      time.Time  `bun:"created_at,notnull"`
	UpdatedAt      time.Time  `bun:"updated_at,notnull"`
	CompletedAt    *time.Time `bun:"completed_at"`

	// The job's event, when the claim read it too (EventRead; see
	// [Job.Event]).
	EventRead         bool            `bun:"event_read,scanonly"`
	EventID           *int64          `bun:"event_id,scanonly"`
	EventPayload      json.RawMessage `bun:"event_payload,scanonly"`
	EventContentHash  *string         `bun:"event_content_hash,scanonly"`
	EventVersion      *time.Time      `bun:"event_version,scanonly"`
	EventReceivedAt   *time.Time      `bun:"event_received_at,scanonly"`
	EventTraceContext *string         `bun:"event_trace_context,scanonly"`
}

// Event returns the job's event as the claim read it: ok is false when the
// claim did not read it, and p is nil when it found no event.
func (j *Job) Event() (p *Payload, ok bool) {
	if !j.EventRead {
		return nil, false
	}
	if j.EventID == nil {
		return nil, true
	}
	p = &Payload{ID: *j.EventID, Payload: j.EventPayload, TraceContext: j.EventTraceContext}
	if j.EventContentHash != nil {
		p.ContentHash = *j.EventContentHash
	}
	if j.EventVersion != nil {
		p.Version = *j.EventVersion
	}
	if j.EventReceivedAt != nil {
		p.ReceivedAt = *j.EventReceivedAt
	}
	return p, true
}

// Entity names the entity of a job.
func (j *Job) Entity() Entity { return Entity{j.Source, j.EntityType, j.EntityID} }

// Attempt is a row of tds_sync_attempts: one failed attempt of a job.
type Attempt struct {
	bun.BaseModel `bun:"table:tds_sync_attempts"`

	ID        int64      `bun:"id,pk,autoincrement"`
	JobID     int64      `bun:"job_id,notnull"`
	Attempt   int        `bun:"attempt,notnull"`
	Worker    *string    `bun:"worker"`
	Error     string     `bun:"error,notnull"`
	ErrorCode *string    `bun:"error_code"`
	StartedAt *time.Time `bun:"started_at"`
	FailedAt  time.Time  `bun:"failed_at,notnull"`
}

// Entity names an entity: its jobs run one at a time, in order.
type Entity struct {
	Source, EntityType, EntityID string
}

// NewJob is the job of a valid event being stored.
type NewJob struct {
	Priority    int
	MaxAttempts int
}

// Ingest is one event of an ingest batch: its row and, when it is valid,
// its job (nil otherwise).
type Ingest struct {
	Event *Event
	Job   *NewJob
}

// Stored is what [Store.InsertEvents] stored of one event: its id and, when
// it was queued, its job.
type Stored struct {
	ID             int64  `bun:"id"`
	IdempotencyKey string `bun:"idempotency_key"`
	JobID          *int64 `bun:"job_id"`
	Priority       *int   `bun:"priority"`
}

// Existing is a stored event found by its idempotency key, with its job.
type Existing struct {
	ID               int64           `bun:"id"`
	IdempotencyKey   string          `bun:"idempotency_key"`
	MovedToQueue     bool            `bun:"moved_to_queue"`
	ValidationErrors json.RawMessage `bun:"validation_errors"`
	JobID            *int64          `bun:"job_id"`
	Priority         *int            `bun:"priority"`
}

// Lease identifies a claimed job as its worker holds it: the owner and the
// attempt, so that a job rescued and claimed again cannot be touched by its
// old holder.
type Lease struct {
	JobID   int64
	Attempt int
}

// LeaseOf returns the lease of a claimed job.
func LeaseOf(j *Job) Lease { return Lease{JobID: j.ID, Attempt: j.Attempt} }

// Completion is a job a worker completes, with its outcome.
type Completion struct {
	Job     *Job
	Outcome string
	Detail  string // kept when empty
}

// Failure is a failed attempt a worker records.
type Failure struct {
	Job        *Job
	Owner      string
	DeadLetter bool
	RetryAt    time.Time
	Error      string
	Code       string
	StartedAt  *time.Time
}

// HandedBack is a job handed back to the queue.
type HandedBack struct {
	ID      int64  `bun:"id"`
	Attempt int    `bun:"attempt_count"`
	Status  string `bun:"status"`
}

// Payload is what a worker reads of a job's event.
type Payload struct {
	ID          int64           `bun:"id"`
	Payload     json.RawMessage `bun:"payload"`
	ContentHash string          `bun:"content_hash"`
	Version     time.Time       `bun:"source_modified_at"`
	ReceivedAt  time.Time       `bun:"received_at"`
	// TraceContext is the event's stored trace context, if any.
	TraceContext *string `bun:"trace_context"`
}

// EventFilter selects inbox events. Zero fields select everything, but
// Limit, which must be positive.
type EventFilter struct {
	Source, EntityType, EntityID, EventType string
	Valid, Queued, Processed                *bool
	// Status keeps events with this status (see Event.Status).
	Status       string
	Since, Until time.Time
	BeforeID     int64
	Limit        int
	// Oldest lists oldest first (else newest first).
	Oldest bool
}

// DeadLetterFilter selects dead letters. Zero fields select everything;
// Limit must be positive where it is read (listing).
type DeadLetterFilter struct {
	ID           int64
	EntityType   string
	ErrorCode    string
	Since, Until time.Time
	BeforeID     int64
	Limit        int
}

// CodeCount is one error code of [Store.DeadLetterCodes].
type CodeCount struct {
	Code string `bun:"code"`
	N    int64  `bun:"n"`
}

// QueueCounts is what [Store.QueueStats] counts.
type QueueCounts struct {
	ByStatus map[string]int64
	// Open counts unfinished jobs (all but completed) per entity type and
	// priority.
	Open []OpenCount
	// Blocked counts the blocked jobs.
	Blocked int64
	// OldestWaiting is the creation time of the oldest pending or retry
	// job, if any.
	OldestWaiting *time.Time
	// CompletedSince counts jobs completed since the given time.
	CompletedSince int64
}

// OpenCount is a count of unfinished jobs of one entity type and priority.
type OpenCount struct {
	EntityType string `bun:"entity_type"`
	Priority   int    `bun:"priority"`
	N          int64  `bun:"n"`
}

// InboxCounts is what [Store.InboxStats] counts.
type InboxCounts struct {
	Total, Valid, Queued, Unprocessed int64
	OldestAt, NewestAt                *time.Time
}

// Mirror is one row a MirrorSyncer writes.
type Mirror struct {
	Table        string
	EntityID     string
	Source       string
	Data         string
	Version      time.Time
	SyncedAt     time.Time
	DeletedAt    *time.Time // set by a delete, which keeps the last data
	InboxEventID int64
}

// MirrorCurrent is the row a stale mirror write did not overwrite.
type MirrorCurrent struct {
	Version      time.Time `bun:"source_modified_at"`
	InboxEventID int64     `bun:"inbox_event_id"`
}

// Store is every database operation of tds. db is the pool or a
// transaction: each method says which it needs. Methods that change an
// entity's line of jobs take the entities' locks themselves, so they must
// run in a transaction begun with [Store.TxOptions] (or, for a caller's
// transaction on PostgreSQL, at READ COMMITTED).
type Store interface {
	// Name is the dialect: "postgres" or "sqlite".
	Name() string
	// TxOptions are the options of every transaction tds begins.
	TxOptions() *sql.TxOptions
	// ConcurrentWriters reports whether several transactions can write at
	// once (PostgreSQL), or take turns on one connection (SQLite): then a
	// running batch needs no lease renewal, since no rescue can run before
	// it ends.
	ConcurrentWriters() bool
	// Warm opens up to n of db's connections at once (no more than its
	// pool may open) and has each read the queue and the inbox, so that
	// the first jobs and webhooks do not wait for new server processes
	// and their first plans. Errors are returned joined; nothing depends
	// on it. A connection the pool cannot lend (others hold them) waits
	// for one until ctx ends.
	Warm(ctx context.Context, db *bun.DB, n int) error

	// Migrate brings the tds schema up to date, recording the migrations
	// applied in table.
	Migrate(ctx context.Context, db *bun.DB, table string) error
	// MigrateMirror creates the mirror tables that do not exist yet.
	MigrateMirror(ctx context.Context, db *bun.DB, tables []string) error
	// SchemaStatus compares the migrations recorded in table with the
	// embedded ones, without writing anything (a readiness probe calls it).
	// A database never migrated (no table) has every migration missing.
	SchemaStatus(ctx context.Context, db bun.IDB, table string) (*Schema, error)

	// InsertEvents stores a batch of new events and the jobs of the valid
	// ones, one at most per idempotency key; existing keys are skipped. It
	// returns what it stored. db is the pool (the batch commits on its own,
	// atomically) or a caller's transaction.
	InsertEvents(ctx context.Context, db bun.IDB, batch []Ingest) ([]Stored, error)
	// FindEvents returns the stored events with these idempotency keys,
	// with their jobs.
	FindEvents(ctx context.Context, db bun.IDB, keys []string) ([]Existing, error)
	// InsertEvent stores one event unless its key exists; then it returns
	// the existing event and false.
	InsertEvent(ctx context.Context, db bun.IDB, ev *Event) (*Event, bool, error)
	// GetEvent returns an event, or ErrNoRows.
	GetEvent(ctx context.Context, db bun.IDB, id int64) (*Event, error)
	// MarkValidated records a validation outcome; errs is JSON or nil. It
	// reports whether the event exists.
	MarkValidated(ctx context.Context, db bun.IDB, id int64, errs json.RawMessage, at time.Time) (bool, error)
	// MarkQueued records that an event was queued.
	MarkQueued(ctx context.Context, db bun.IDB, id int64, at time.Time) (bool, error)
	// MarkProcessed records that an event is done with.
	MarkProcessed(ctx context.Context, db bun.IDB, id int64, at time.Time) (bool, error)
	// ListEvents lists the events f selects.
	ListEvents(ctx context.Context, db bun.IDB, f EventFilter) ([]Event, error)
	// HasContentHash reports whether an event has the content hash.
	HasContentHash(ctx context.Context, db bun.IDB, hash string) (bool, error)
	// InboxStats counts the inbox's events.
	InboxStats(ctx context.Context, db bun.IDB) (*InboxCounts, error)

	// Enqueue queues the stored event id as a job of entity e, behind the
	// entity's head if it has one, and marks the event queued. The event
	// is read under the entity's lock: one stored as invalid is refused
	// with ErrNotValid, one of another entity with ErrEntityMismatch. An
	// event queued already returns its job. db must be a transaction.
	Enqueue(ctx context.Context, db bun.IDB, id int64, e Entity, job NewJob, at time.Time) (*Job, error)
	// GetJob returns a job, or ErrNoRows.
	GetJob(ctx context.Context, db bun.IDB, id int64) (*Job, error)
	// GetJobByEvent returns the job of an inbox event, or ErrNoRows.
	GetJobByEvent(ctx context.Context, db bun.IDB, eventID int64) (*Job, error)
	// ListWaiting lists up to limit pending and retry jobs in claim order.
	ListWaiting(ctx context.Context, db bun.IDB, limit int) ([]Job, error)
	// Attempts lists a job's failed attempts, oldest first.
	Attempts(ctx context.Context, db bun.IDB, jobID int64) ([]Attempt, error)
	// QueueStats counts the queue's jobs in one snapshot; db must be a
	// transaction.
	QueueStats(ctx context.Context, db bun.IDB, completedSince time.Time) (*QueueCounts, error)
	// MetricCounts reads what the Prometheus metrics show of the queue,
	// and counts the events of source received since since, in one
	// snapshot.
	MetricCounts(ctx context.Context, db bun.IDB, source string, since time.Time) (*MetricCounts, error)
	// Throughput counts the jobs completed since since, minute by minute,
	// with their latency; minutes without a completion are left out.
	Throughput(ctx context.Context, db bun.IDB, since time.Time) ([]MinuteCount, error)
	// RevokeSession records that dashboard session id is signed out until
	// expiresAt, dropping the records expired at now.
	RevokeSession(ctx context.Context, db bun.IDB, id string, expiresAt, now time.Time) error
	// SessionRevoked reports whether dashboard session id is signed out.
	SessionRevoked(ctx context.Context, db bun.IDB, id string) (bool, error)
	// SessionKey returns the dashboard's session key, storing candidate
	// (made at now) as that key if the database has none yet. Concurrent
	// callers, in any process, all get the one key stored first.
	SessionKey(ctx context.Context, db bun.IDB, candidate []byte, now time.Time) ([]byte, error)
	// DeleteCompleted deletes up to limit jobs completed before cutoff,
	// first copying their completion time into their events' processed_at.
	// db must be a transaction.
	DeleteCompleted(ctx context.Context, db bun.IDB, cutoff time.Time, limit int) (int64, error)
	// DeleteProcessedEvents deletes events processed before cutoff whose
	// job, if any, is completed: up to limit events marked processed, then,
	// if fewer, up to limit events of completed jobs. It returns how many
	// it deleted; fewer than limit means none is left.
	DeleteProcessedEvents(ctx context.Context, db bun.IDB, cutoff time.Time, limit int) (int64, error)

	// ListDeadLetters lists the dead letters f selects, newest first.
	ListDeadLetters(ctx context.Context, db bun.IDB, f DeadLetterFilter) ([]Job, error)
	// CountDeadLetters counts the dead letters f selects (f.Limit aside).
	CountDeadLetters(ctx context.Context, db bun.IDB, f DeadLetterFilter) (int64, error)
	// DeadLetterCodes counts the dead letters by the code of their last
	// error, codes in order; dead letters without a code are left out.
	DeadLetterCodes(ctx context.Context, db bun.IDB) ([]CodeCount, error)
	// RetryDeadLetters puts the dead letters f selects (f.Limit aside)
	// back in the queue with a fresh set of attempts, each behind its
	// entity's head, and makes their events unprocessed. It returns how
	// many. db must be a transaction.
	RetryDeadLetters(ctx context.Context, db bun.IDB, f DeadLetterFilter, at time.Time) (int64, error)
	// DiscardDeadLetter completes dead letter id with outcome discarded
	// and reason, and marks its event processed; ErrNoRows when id is not
	// a dead letter. db must be a transaction.
	DiscardDeadLetter(ctx context.Context, db bun.IDB, id int64, reason string, at time.Time) error

	// Claim leases up to limit claimable jobs to owner until leaseUntil
	// (it may also read their events: see [Job.Event]):
	// the first in claim order (priority, then id) of those waiting, due
	// and their entity's head. It returns them in no particular order.
	Claim(ctx context.Context, db *bun.DB, owner string, limit int, at, leaseUntil time.Time) ([]*Job, error)
	// Payloads reads the events of a batch's jobs.
	Payloads(ctx context.Context, db bun.IDB, eventIDs []int64) ([]Payload, error)
	// Complete marks done completed, under owner's leases, records in
	// tds_applied what each synced job applied (its event's version, hash
	// and, when the event has no version, its record), then hands each
	// entity of a finished job (done, or dead-lettered earlier in db) on to
	// its next job, under the entities' locks. It returns the ids it
	// completed: fewer than done means leases were lost, and the caller
	// must roll back; and whether it handed an entity on to a next job
	// (which a claim may then take). db must be the batch's transaction.
	Complete(ctx context.Context, db bun.IDB, owner string, done []Completion, dead []*Job, at time.Time) (completed map[int64]bool, handedOn bool, err error)
	// RecordFailure records a failed attempt under the job's lease
	// (ErrLeaseLost when lost): retry or dead letter, the attempt row, and
	// a dead letter's event processed. It does not unblock the entity: a
	// batch does in Complete, a lone failure with FinishDeadLetter.
	RecordFailure(ctx context.Context, db bun.IDB, f Failure, at time.Time) error
	// FinishDeadLetter hands the entity of a job dead-lettered in db on to
	// its next job, under the entity's lock.
	FinishDeadLetter(ctx context.Context, db bun.IDB, job *Job, at time.Time) error
	// HandBack returns jobs owner still holds to the queue at once: not a
	// failed attempt, so their attempt count goes back down.
	HandBack(ctx context.Context, db bun.IDB, owner string, leases []Lease, at time.Time) ([]HandedBack, error)
	// RenewLeases extends owner's leases until until and reports how many
	// it extended.
	RenewLeases(ctx context.Context, db bun.IDB, owner string, leases []Lease, until time.Time) (int64, error)
	// RescueExpired puts jobs whose lease expired before at back in the
	// queue, or dead-letters those without attempts left, recording the
	// lost attempt with msg and code; a dead letter's entity gets its next
	// job. It returns the rescued jobs as they were rescued (LeasedBy
	// names the old holder).
	RescueExpired(ctx context.Context, db *bun.DB, at time.Time, msg, code string) ([]Job, error)
	// RepairHeads unblocks one job of every entity whose jobs are all
	// blocked (only rows changed by hand make one) and returns how many.
	RepairHeads(ctx context.Context, db *bun.DB, at time.Time) (int64, error)

	// MirrorUpsert writes m unless the table holds a newer version; then
	// it returns the current row and false.
	MirrorUpsert(ctx context.Context, db bun.IDB, m *Mirror) (*MirrorCurrent, bool, error)
	// MirrorUpsertBatch writes rows, all of table and of distinct
	// entities, in one statement, each unless the table holds a newer
	// version; it returns the rows it left alone, by entity id, with the
	// table's current version.
	MirrorUpsertBatch(ctx context.Context, db bun.IDB, table string, rows []Mirror) (map[string]MirrorKept, error)

	// Notify tells idle workers that jobs were enqueued. Inside a
	// transaction the wake-up is sent when it commits.
	Notify(ctx context.Context, db bun.IDB) error
	// Subscribe sends on wake when jobs are enqueued, until ctx is done or
	// the returned function is called, which waits for its goroutines. It
	// listens through db; pool is the pool of the subscribing worker,
	// whose own Processors' wake-ups it skips: they woke it in process
	// already (see NewWaker).
	Subscribe(ctx context.Context, db, pool *bun.DB, log *slog.Logger, wake chan<- struct{}) func()
	// NewWaker returns a [Waker] that notifies from outside the ingest
	// transactions.
	NewWaker(db *bun.DB, log *slog.Logger) Waker
	// NewLeader returns holder's part in the election of the one Worker
	// that runs housekeeping and the leader tasks: a lease row, valid for
	// ttl after each renewal.
	NewLeader(db *bun.DB, holder string, ttl time.Duration) Leader

	Runs
	Alerts
}

// Waker wakes idle workers after ingest commits.
type Waker interface {
	// Poke asks for a wake-up; pokes while one is in flight coalesce.
	Poke()
	// Close waits for the wake-ups in flight.
	Close()
}

// Leader is one Worker's part in the election of the one that runs
// housekeeping. The lead is a lease row (tds_leader): its holder renews it;
// once it has expired any other takes it. Nothing is held on a
// connection, so the election works through a transaction pooler.
type Leader interface {
	// Lead takes the lead if it is free or expired, or renews it if this
	// holder has it, and reports whether this holder leads until the
	// lease's ttl from now. An error (the database unreachable) reports
	// false: the lead is not known to be held.
	Lead(ctx context.Context) (bool, error)
	// Release gives the lead up at once, so that another takes it without
	// waiting for the lease to expire.
	Release(ctx context.Context) error
}

// LeaderName is the name of the housekeeping lease in tds_leader.
const LeaderName = "housekeeping"

// The Stores hold no state: one of each serves every caller, and For,
// which MirrorSyncer calls for every job, allocates nothing.
var (
	postgresStore Store = NewPostgres()
	pgdriverStore Store = Postgres{common: postgresCommon, oneMessage: true}
	sqliteStore   Store = NewSQLite()
)

// For returns the Store of db's dialect.
func For(db bun.IDB) (Store, error) {
	switch db.Dialect().Name() {
	case dialect.PG:
		if d, ok := db.(*bun.DB); ok {
			if _, ok := d.Driver().(pgdriver.Driver); ok {
				return pgdriverStore, nil
			}
		}
		return postgresStore, nil
	case dialect.SQLite:
		return sqliteStore, nil
	}
	return nil, ErrUnsupportedDialect
}

// RunInTx runs fn in a transaction of db begun with s's options, or in db
// itself when db is a transaction already (the caller's).
func RunInTx(ctx context.Context, s interface{ TxOptions() *sql.TxOptions }, db bun.IDB, fn func(ctx context.Context, tx bun.IDB) error) error {
	if tx, ok := db.(bun.Tx); ok {
		return fn(ctx, tx)
	}
	return db.RunInTx(ctx, s.TxOptions(), func(ctx context.Context, tx bun.Tx) error { return fn(ctx, tx) })
}

// syncRunKey is the context key of WithSyncRun.
type syncRunKey struct{}

// WithSyncRun returns ctx telling the Processor that the events it ingests
// under it are the repairs of reconciliation run id (column sync_run_id).
func WithSyncRun(ctx context.Context, id int64) context.Context {
	return context.WithValue(ctx, syncRunKey{}, id)
}

// SyncRunOf is the run of WithSyncRun, or 0.
func SyncRunOf(ctx context.Context) int64 {
	id, _ := ctx.Value(syncRunKey{}).(int64)
	return id
}
