package tds

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
)

// Outcome is how a job ended: what its completion (or an operator)
// recorded.
type Outcome string

// Job outcomes, recorded when a job ends.
const (
	// OutcomeSynced: the Syncer applied the event.
	OutcomeSynced Outcome = "synced"
	// OutcomeSuperseded: a newer version of the entity was already applied,
	// so the event changed nothing.
	OutcomeSuperseded Outcome = "superseded"
	// OutcomeDiscarded: an operator discarded the dead letter.
	OutcomeDiscarded Outcome = "discarded"
)

// rateWindow is the window over which [QueueStats.ProcessingRate] is
// measured.
const rateWindow = 5 * time.Minute

// Queue is the sync queue, table tds_sync_queue: valid inbox events waiting
// for, or done with, a worker. Its methods are safe for concurrent use.
type Queue struct {
	db  bun.IDB
	st  store.Store
	cfg *config
}

// NewQueue returns a Queue on db. opts are the options that apply to
// NewQueue; see [Option].
func NewQueue(db *bun.DB, opts ...Option) (*Queue, error) {
	if db == nil {
		return nil, errors.New("tds: NewQueue: db is nil")
	}
	st, err := store.For(db)
	if err != nil {
		return nil, err
	}
	cfg, err := newConfig(forQueue, opts)
	if err != nil {
		return nil, err
	}
	return newQueue(db, st, cfg), nil
}

// newQueue returns a Queue on db configured by cfg, which it may share
// with others (see NewHandler).
func newQueue(db *bun.DB, st store.Store, cfg *config) *Queue {
	return &Queue{db: db, st: st, cfg: cfg}
}

// WithTx returns a copy of the Queue whose methods run in tx.
func (q *Queue) WithTx(tx bun.Tx) *Queue {
	return &Queue{db: tx, st: q.st, cfg: q.cfg}
}

// maxAttemptsFor is the entity type's MaxAttempts or the configured
// default.
func (c *config) maxAttemptsFor(t *EntityType) int {
	if t != nil && t.MaxAttempts > 0 {
		return t.MaxAttempts
	}
	return c.maxAttempts
}

// Enqueue puts the stored inbox event ev in the queue as a pending job with
// the given priority (clamped to 1..10) and marks it queued. Enqueueing an
// event that is queued already returns its existing job. Whether the event
// may be queued is read from the database, under its entity's lock, not
// from ev: an event stored as invalid is refused with an error wrapping
// [ErrInvalidEvent], one that is not stored with [ErrNotFound].
//
// Run it with [Queue.WithTx] in the transaction that stored ev, or the
// event may be stored and never queued if the process dies in between.
func (q *Queue) Enqueue(ctx context.Context, ev *InboxEvent, priority int) (*Job, error) {
	if ev == nil || ev.ID == 0 {
		return nil, errors.New("tds: enqueueing: the inbox event is not stored")
	}
	now := dbTime(q.cfg.now())
	var job *store.Job
	err := store.RunInTx(ctx, q.st, q.db, func(ctx context.Context, tx bun.IDB) error {
		var err error
		job, err = q.st.Enqueue(ctx, tx, ev.ID, store.Entity{Source: ev.Source, EntityType: ev.EntityType, EntityID: ev.EntityID},
			store.NewJob{Priority: clampPriority(priority), MaxAttempts: q.cfg.maxAttemptsFor(q.cfg.typeNamed(ev.EntityType))}, now)
		return err
	})
	switch {
	case errors.Is(err, store.ErrNoRows):
		return nil, fmt.Errorf("tds: enqueueing: %w: inbox event %d", ErrNotFound, ev.ID)
	case errors.Is(err, store.ErrNotValid):
		return nil, fmt.Errorf("tds: enqueueing inbox event %d: %w: %v", ev.ID, ErrInvalidEvent, err)
	case errors.Is(err, store.ErrEntityMismatch):
		return nil, fmt.Errorf("tds: enqueueing inbox event %d: %w: %v", ev.ID, ErrInvalidEvent, err)
	case err != nil:
		return nil, wrapDBErr("enqueueing", err)
	}
	ev.MovedToQueue = true
	return jobOf(job), nil
}

// Get returns the job with the given id, or an error wrapping [ErrNotFound].
func (q *Queue) Get(ctx context.Context, id int64) (*Job, error) {
	job, err := q.st.GetJob(ctx, q.db, id)
	if errors.Is(err, store.ErrNoRows) {
		return nil, fmt.Errorf("%w: job %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, wrapDBErr("reading job", err)
	}
	return jobOf(job), nil
}

// GetByInboxEvent returns the job of inbox event id, or an error wrapping
// [ErrNotFound] when the event was never queued.
func (q *Queue) GetByInboxEvent(ctx context.Context, inboxEventID int64) (*Job, error) {
	job, err := q.st.GetJobByEvent(ctx, q.db, inboxEventID)
	if errors.Is(err, store.ErrNoRows) {
		return nil, fmt.Errorf("%w: job of inbox event %d", ErrNotFound, inboxEventID)
	}
	if err != nil {
		return nil, wrapDBErr("reading job", err)
	}
	return jobOf(job), nil
}

// ListPending returns up to limit jobs waiting for a worker (pending, or
// waiting to retry), highest priority first and, within a priority, first
// in first out.
func (q *Queue) ListPending(ctx context.Context, limit int) ([]Job, error) {
	rows, err := q.st.ListWaiting(ctx, q.db, limit)
	if err != nil {
		return nil, wrapDBErr("listing pending jobs", err)
	}
	return jobsOf(rows), nil
}

// QueueStats is a snapshot of the queue.
type QueueStats struct {
	// TotalJobs is the number of jobs in the queue, in every status.
	TotalJobs int64 `json:"total_jobs"`
	// ByStatus counts jobs per status; every status is present.
	ByStatus map[Status]int64 `json:"by_status"`
	// ByEntity counts unfinished jobs (all but completed) per entity type.
	ByEntity map[string]int64 `json:"by_entity"`
	// ByPriority counts unfinished jobs (all but completed) per priority.
	ByPriority map[int]int64 `json:"by_priority"`
	// Blocked counts the waiting jobs held behind an earlier unfinished job
	// of their entity (they are among the pending and retry jobs).
	Blocked int64 `json:"blocked"`
	// OldestPending is when the oldest job still waiting was enqueued.
	OldestPending *time.Time `json:"oldest_pending"`
	// ProcessingRate is jobs completed per second over the last RateWindow.
	ProcessingRate float64 `json:"processing_rate"`
	// RateWindow is the window of ProcessingRate.
	RateWindow time.Duration `json:"-"`
}

// Stats returns a snapshot of the queue, taken in one read transaction so
// the counts agree with each other.
func (q *Queue) Stats(ctx context.Context) (*QueueStats, error) {
	s := &QueueStats{
		ByStatus:   make(map[Status]int64, len(Statuses)),
		ByEntity:   map[string]int64{},
		ByPriority: map[int]int64{},
		RateWindow: rateWindow,
	}
	for _, st := range Statuses {
		s.ByStatus[st] = 0
	}
	now := dbTime(q.cfg.now())
	var c *store.QueueCounts
	err := store.RunInTx(ctx, q.st, q.db, func(ctx context.Context, tx bun.IDB) error {
		var err error
		c, err = q.st.QueueStats(ctx, tx, now.Add(-s.RateWindow))
		return err
	})
	if err != nil {
		return nil, wrapDBErr("reading queue stats", err)
	}
	for st, n := range c.ByStatus {
		s.ByStatus[Status(st)] = n
		s.TotalJobs += n
	}
	for _, o := range c.Open {
		s.ByEntity[o.EntityType] += o.N
		s.ByPriority[o.Priority] += o.N
	}
	s.Blocked = c.Blocked
	s.OldestPending = c.OldestWaiting
	s.ProcessingRate = float64(c.CompletedSince) / s.RateWindow.Seconds()
	return s, nil
}

// cleanupBatch is how many rows a cleanup deletes per statement.
const cleanupBatch = 1000

// DeleteCompleted deletes completed jobs that completed before olderThan,
// in batches of cleanupBatch so no statement holds locks for long,
// and returns how many it deleted. Their attempt history goes with them.
// Their inbox events stay processed: each batch first writes the jobs'
// completed_at into the events' processed_at, in the same transaction.
func (q *Queue) DeleteCompleted(ctx context.Context, olderThan time.Time) (int64, error) {
	var total int64
	for {
		var n int64
		err := store.RunInTx(ctx, q.st, q.db, func(ctx context.Context, tx bun.IDB) error {
			var err error
			n, err = q.st.DeleteCompleted(ctx, tx, dbTime(olderThan), cleanupBatch)
			return err
		})
		if err != nil {
			return total, wrapDBErr("deleting completed jobs", err)
		}
		total += n
		if n < cleanupBatch {
			return total, nil
		}
	}
}

// throughputWindow is the window of [Queue.Throughput]: the last hour,
// minute by minute.
const throughputWindow = time.Hour

// ThroughputMinute is one minute of [Queue.Throughput].
type ThroughputMinute struct {
	// Start is the minute's start.
	Start time.Time `json:"start"`
	// Completed counts the jobs completed in the minute.
	Completed int64 `json:"completed"`
	// LatencyAvgSeconds and LatencyMaxSeconds are the end-to-end latency of
	// those jobs: from their event being stored (before the sender's 2xx)
	// to their completion. Zero in a minute without a completion.
	LatencyAvgSeconds float64 `json:"latency_avg_seconds"`
	LatencyMaxSeconds float64 `json:"latency_max_seconds"`
}

// Throughput returns the jobs completed in each minute of the last
// the last hour, oldest first, every minute present: the last one is
// the current, unfinished minute.
func (q *Queue) Throughput(ctx context.Context) ([]ThroughputMinute, error) {
	n := int(throughputWindow / time.Minute)
	start := q.cfg.now().UTC().Truncate(time.Minute).Add(-time.Duration(n-1) * time.Minute)
	rows, err := q.st.Throughput(ctx, q.db, dbTime(start))
	if err != nil {
		return nil, wrapDBErr("reading the throughput", err)
	}
	out := make([]ThroughputMinute, n)
	for i := range out {
		out[i].Start = start.Add(time.Duration(i) * time.Minute)
	}
	for _, r := range rows {
		if r.Minute < 0 || r.Minute >= int64(n) {
			continue // completed after now: a clock ahead of ours
		}
		m := &out[r.Minute]
		m.Completed, m.LatencyAvgSeconds, m.LatencyMaxSeconds = r.N, r.AvgSeconds, r.MaxSeconds
	}
	return out, nil
}
