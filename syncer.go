package tds

import (
	"context"
	"encoding/json"
	"time"

	"github.com/uptrace/bun"
)

// Syncer applies one queued event to the local database.
//
// The contract:
//
//   - Sync runs inside tx, the transaction that also marks the job completed
//     and its inbox event processed. Write through tx only: the write and
//     the completion then commit together or not at all, so a crash can
//     neither lose the write nor apply it twice. On SQLite, where the pool
//     has one connection, using the *bun.DB instead of tx deadlocks.
//   - A Worker runs a batch of jobs ([WithBatchSize]) in one transaction,
//     one after the other, each inside a savepoint of its own: a job's
//     failure rolls back to its savepoint, undoing only its own writes,
//     and the batch's successes commit together. Sync sees the writes of
//     the jobs before it in the batch. A Sync that takes long delays its
//     neighbours' commit. Do not use SAVEPOINT tds_job yourself.
//   - The savepoint is opened just before the first statement Sync runs
//     through tx's methods with ctx (or a context derived from it), so a
//     Sync that writes nothing costs no round trip. Should Sync fail
//     without such a statement (having written through tx.Tx, say), the
//     whole batch is rolled back and run again without it: the jobs that
//     ran before it in the batch are then synced a second time, their
//     first writes undone.
//   - Returning nil commits. Returning an error rolls back everything Sync
//     wrote and counts as a failed attempt: [Permanent] dead-letters the
//     job at once, [RetryAfter] asks for a delay, anything else is retried
//     with the [RetryPolicy] until the job's attempts run out. [WithCode]
//     attaches a code to the error. Do not commit or roll back tx.
//   - ctx is cancelled when the worker shuts down past its shutdown
//     timeout or loses the job's lease; return promptly. An error returned
//     because ctx was cancelled that way is not a failed attempt: the job
//     goes back to the queue untouched.
//   - Sync is called concurrently for different entities, never for two
//     jobs of the same entity (source, entity type, entity id) at once,
//     and jobs of one entity arrive in the order they were received (the
//     order in which their ingest transactions committed; concurrent
//     deliveries of one entity are ingested one after the other). The
//     source may still send versions out of order: compare
//     [SyncJob.Version] to ignore stale ones, as [MirrorSyncer] does.
//   - Calling external services from Sync is allowed but keeps the
//     transaction open meanwhile; keep it short. A Sync that runs longer
//     than the lease is fine: the worker renews the lease while it runs.
//   - A panic in Sync is recovered and recorded as a failed attempt with
//     code [CodePanic].
type Syncer interface {
	Sync(ctx context.Context, tx bun.Tx, job *SyncJob) error
}

// BatchSyncer is a [Syncer] that can also apply a whole batch of jobs at
// once, for instance with one multi-row statement per table. A Worker
// whose Syncer implements it hands each batch it claims to SyncBatch
// first:
//
//   - jobs are the batch's jobs, each of a different entity (a batch holds
//     at most one job per entity), in the order they were claimed. SyncBatch
//     runs in the batch's transaction tx, inside a savepoint of its own
//     (SAVEPOINT tds_batch): the same rules as Sync apply to writes.
//   - Returning nil applies every job: each completes, with the outcome
//     SyncBatch gave it ([SyncJob.Supersede]) or [OutcomeSynced].
//   - Returning an error (or panicking) rolls back everything SyncBatch
//     wrote, and the worker syncs the same jobs again one at a time with
//     Sync, in the same transaction, so that a failing job fails alone and
//     the others still commit. The error itself is not recorded: Sync's
//     are. So SyncBatch must agree with Sync, job for job.
//   - SyncBatch is called concurrently for batches of different
//     entities, like Sync.
type BatchSyncer interface {
	Syncer
	SyncBatch(ctx context.Context, tx bun.Tx, jobs []*SyncJob) error
}

// SyncFunc adapts a function to the [Syncer] interface.
type SyncFunc func(ctx context.Context, tx bun.Tx, job *SyncJob) error

// Sync calls f(ctx, tx, job).
func (f SyncFunc) Sync(ctx context.Context, tx bun.Tx, job *SyncJob) error { return f(ctx, tx, job) }

var _ Syncer = SyncFunc(nil)

// SyncJob is what a [Syncer] gets: the queued job and its event.
type SyncJob struct {
	// JobID is the id of the job in tds_sync_queue.
	JobID int64
	// InboxEventID is the id of the event in tds_inbox_events.
	InboxEventID int64
	// Source is the system that sent the event.
	Source string
	// EventType is create, update or delete.
	EventType string
	// EntityType names the entity type, such as "product".
	EntityType string
	// EntityID is the entity's id in the source system.
	EntityID string
	// Data is the entity record as received (canonical JSON).
	Data json.RawMessage
	// Version is the event's source_modified_at: the record's
	// last_modified_time when it had one, else when it was received. A
	// Syncer compares versions to ignore stale events.
	Version time.Time
	// ReceivedAt is when tds received the event.
	ReceivedAt time.Time
	// Priority is the job's queue priority, 1 (highest) to 10.
	Priority int
	// Attempt is this attempt's number, from 1.
	Attempt int
	// MaxAttempts is how many attempts the job has before it is
	// dead-lettered.
	MaxAttempts int
	// WorkerID names the worker running the job.
	WorkerID string

	outcome Outcome
	detail  string
}

// Supersede records that the event changed nothing because a newer version
// of the entity was applied already; detail says which. The job then
// completes with outcome [OutcomeSuperseded] instead of [OutcomeSynced],
// provided Sync returns nil.
func (j *SyncJob) Supersede(detail string) {
	j.outcome, j.detail = OutcomeSuperseded, detail
}
