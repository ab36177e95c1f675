package tds

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Job outcomes, recorded when a job ends.
const (
	// OutcomeSynced: the Syncer applied the event.
	OutcomeSynced = "synced"
	// OutcomeSuperseded: a newer version of the entity was already applied,
	// so the event changed nothing.
	OutcomeSuperseded = "superseded"
	// OutcomeDiscarded: an operator discarded the dead letter.
	OutcomeDiscarded = "discarded"
)

// DefaultRateWindow is the window over which [QueueStats.ProcessingRate] is
// measured.
const DefaultRateWindow = 5 * time.Minute

// Queue is the sync queue, table tds_sync_queue: valid inbox events waiting
// for, or done with, a worker. Its methods are safe for concurrent use.
type Queue struct {
	db  bun.IDB
	cfg *config
}

// NewQueue returns a Queue on db. opts are the options that apply to
// NewQueue; see [Option].
func NewQueue(db *bun.DB, opts ...Option) (*Queue, error) {
	if db == nil {
		return nil, errors.New("tds: NewQueue: db is nil")
	}
	cfg, err := newConfig(forQueue, opts)
	if err != nil {
		return nil, err
	}
	return newQueue(db, cfg), nil
}

// newQueue returns a Queue on db configured by cfg, which it may share
// with others (see NewHandler).
func newQueue(db *bun.DB, cfg *config) *Queue {
	return &Queue{db: db, cfg: cfg}
}

// WithTx returns a copy of the Queue whose methods run in tx.
func (q *Queue) WithTx(tx bun.Tx) *Queue {
	return &Queue{db: tx, cfg: q.cfg}
}

// maxAttempts is the entity type's MaxAttempts or the configured default.
func (c *config) maxAttemptsFor(entityType string) int {
	if t, ok := c.registry.Lookup(entityType); ok && t.MaxAttempts > 0 {
		return t.MaxAttempts
	}
	return c.maxAttempts
}

func (c *config) newJob(ev *InboxEvent, priority int, now time.Time) *Job {
	return &Job{
		InboxEventID:     ev.ID,
		Source:           ev.Source,
		EventType:        ev.EventType,
		EntityType:       ev.EntityType,
		SourceEntityID:   ev.SourceEntityID,
		Status:           StatusPending,
		Priority:         clampPriority(priority),
		MaxRetryAttempts: c.maxAttemptsFor(ev.EntityType),
		NextRetryAt:      now,
		CreatedAt:        now,
		UpdatedAt:        now,
	}
}

// insertJob inserts job unless its inbox event is queued already, in which
// case it returns the existing job.
func insertJob(ctx context.Context, db bun.IDB, job *Job) (*Job, error) {
	res, err := db.NewInsert().Model(job).
		On("CONFLICT (inbox_event_id) DO NOTHING").
		Returning("id").
		Exec(ctx)
	if err != nil {
		return nil, wrapDBErr("enqueueing", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		return job, nil
	}
	existing := new(Job)
	if err := db.NewSelect().Model(existing).Where("inbox_event_id = ?", job.InboxEventID).Scan(ctx); err != nil {
		return nil, wrapDBErr("reading queued job", err)
	}
	return existing, nil
}

// Enqueue puts the valid inbox event ev in the queue as a pending job with
// the given priority (clamped to 1..10) and marks ev queued. Enqueueing an
// event that is queued already returns its existing job. An invalid event
// is refused with an error wrapping [ErrInvalidEvent].
//
// Run it with [Queue.WithTx] in the transaction that stored ev, or the
// event may be stored and never queued if the process dies in between.
func (q *Queue) Enqueue(ctx context.Context, ev *InboxEvent, priority int) (*Job, error) {
	if ev == nil || ev.ID == 0 {
		return nil, errors.New("tds: enqueueing: the inbox event is not stored")
	}
	if !ev.IsValid {
		return nil, fmt.Errorf("tds: enqueueing inbox event %d: %w: it failed validation", ev.ID, ErrInvalidEvent)
	}
	now := dbTime(q.cfg.now())
	var job *Job
	err := runInTx(ctx, q.db, func(ctx context.Context, tx bun.IDB) error {
		job = q.cfg.newJob(ev, priority, now)
		// The job waits behind its entity's head, if any: see entity.go.
		if err := lockEntities(ctx, tx, []entityKey{jobEntity(job)}); err != nil {
			return wrapDBErr("enqueueing", err)
		}
		if err := blockBehindHeads(ctx, tx, []*Job{job}); err != nil {
			return wrapDBErr("enqueueing", err)
		}
		var err error
		if job, err = insertJob(ctx, tx, job); err != nil {
			return err
		}
		if _, err = tx.NewUpdate().Model((*InboxEvent)(nil)).
			Set("moved_to_queue = ?", true).
			Set("queued_at = COALESCE(queued_at, ?)", now).
			Where("id = ?", ev.ID).
			Exec(ctx); err != nil {
			return wrapDBErr("marking inbox event queued", err)
		}
		if err := notifyQueued(ctx, tx); err != nil {
			return wrapDBErr("waking workers", err)
		}
		return nil
	})
	if err != nil {
		return nil, wrapDBErr("enqueueing", err)
	}
	ev.MovedToQueue = true
	return job, nil
}

// Get returns the job with the given id, or an error wrapping [ErrNotFound].
func (q *Queue) Get(ctx context.Context, id int64) (*Job, error) {
	job := new(Job)
	err := q.db.NewSelect().Model(job).Where("id = ?", id).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: job %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, wrapDBErr("reading job", err)
	}
	return job, nil
}

// GetByInboxEvent returns the job of inbox event id, or an error wrapping
// [ErrNotFound] when the event was never queued.
func (q *Queue) GetByInboxEvent(ctx context.Context, inboxEventID int64) (*Job, error) {
	job := new(Job)
	err := q.db.NewSelect().Model(job).Where("inbox_event_id = ?", inboxEventID).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: job of inbox event %d", ErrNotFound, inboxEventID)
	}
	if err != nil {
		return nil, wrapDBErr("reading job", err)
	}
	return job, nil
}

// ListPending returns up to limit jobs waiting for a worker (pending, or
// waiting to retry), highest priority first and, within a priority, first
// in first out.
func (q *Queue) ListPending(ctx context.Context, limit int) ([]Job, error) {
	var out []Job
	err := q.db.NewSelect().Model(&out).
		Where("status IN (?)", bun.List([]Status{StatusPending, StatusRetry})).
		Order("priority ASC", "id ASC").
		Limit(int64(limit)).
		Scan(ctx)
	if err != nil {
		return nil, wrapDBErr("listing pending jobs", err)
	}
	return out, nil
}

// QueueStats is a snapshot of the queue.
type QueueStats struct {
	// TotalEvents is the number of jobs in the queue, in every status.
	TotalEvents int64 `json:"total_events"`
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
		RateWindow: DefaultRateWindow,
	}
	for _, st := range Statuses {
		s.ByStatus[st] = 0
	}
	now := dbTime(q.cfg.now())
	err := runInTx(ctx, q.db, func(ctx context.Context, tx bun.IDB) error {
		var byStatus []struct {
			Status Status
			N      int64
		}
		if err := tx.NewSelect().Model((*Job)(nil)).
			ColumnExpr("status").ColumnExpr("COUNT(*) AS n").
			Group("status").Scan(ctx, &byStatus); err != nil {
			return err
		}
		for _, r := range byStatus {
			s.ByStatus[r.Status] = r.N
			s.TotalEvents += r.N
		}
		var open []struct {
			EntityType string
			Priority   int
			N          int64
		}
		if err := tx.NewSelect().Model((*Job)(nil)).
			ColumnExpr("entity_type").ColumnExpr("priority").ColumnExpr("COUNT(*) AS n").
			Where("status <> ?", StatusCompleted).
			Group("entity_type", "priority").Scan(ctx, &open); err != nil {
			return err
		}
		for _, r := range open {
			s.ByEntity[r.EntityType] += r.N
			s.ByPriority[r.Priority] += r.N
		}
		blocked, err := tx.NewSelect().Model((*Job)(nil)).Where("blocked").Count(ctx)
		if err != nil {
			return err
		}
		s.Blocked = int64(blocked)
		var oldest bun.NullTime
		if err := tx.NewSelect().Model((*Job)(nil)).
			ColumnExpr("MIN(created_at)").
			Where("status IN (?)", bun.List([]Status{StatusPending, StatusRetry})).
			Scan(ctx, &oldest); err != nil {
			return err
		}
		if !oldest.IsZero() {
			t := oldest.Time.UTC()
			s.OldestPending = &t
		}
		done, err := tx.NewSelect().Model((*Job)(nil)).
			Where("status = ?", StatusCompleted).
			Where("completed_at >= ?", now.Add(-s.RateWindow)).
			Count(ctx)
		if err != nil {
			return err
		}
		s.ProcessingRate = float64(done) / s.RateWindow.Seconds()
		return nil
	})
	if err != nil {
		return nil, wrapDBErr("reading queue stats", err)
	}
	return s, nil
}

// DefaultCleanupBatch is how many rows a cleanup deletes per statement.
const DefaultCleanupBatch = 1000

// DeleteCompleted deletes completed jobs that completed before olderThan,
// in batches of [DefaultCleanupBatch] so no statement holds locks for long,
// and returns how many it deleted. Their attempt history goes with them.
// Their inbox events stay processed: each batch first writes the jobs'
// completed_at into the events' processed_at, in the same transaction.
func (q *Queue) DeleteCompleted(ctx context.Context, olderThan time.Time) (int64, error) {
	var total int64
	for {
		var n int64
		err := runInTx(ctx, q.db, func(ctx context.Context, tx bun.IDB) error {
			var ids []int64
			if err := tx.NewSelect().Model((*Job)(nil)).Column("id").
				Where("status = ?", StatusCompleted).
				Where("completed_at < ?", dbTime(olderThan)).
				Limit(DefaultCleanupBatch).
				Scan(ctx, &ids); err != nil {
				return err
			}
			if len(ids) == 0 {
				return nil
			}
			if _, err := tx.NewRaw(`UPDATE tds_inbox_events SET processed_at = q.completed_at
FROM tds_sync_queue AS q
WHERE q.id IN (?) AND tds_inbox_events.id = q.inbox_event_id AND tds_inbox_events.processed_at IS NULL`,
				bun.List(ids)).Exec(ctx); err != nil {
				return err
			}
			res, err := tx.NewDelete().Model((*Job)(nil)).
				Where("id IN (?)", bun.List(ids)).
				Where("status = ?", StatusCompleted).
				Exec(ctx)
			if err != nil {
				return err
			}
			n, _ = res.RowsAffected()
			return nil
		})
		if err != nil {
			return total, wrapDBErr("deleting completed jobs", err)
		}
		total += n
		if n < DefaultCleanupBatch {
			return total, nil
		}
	}
}

// runInTx runs fn in a transaction of db, or directly in db when db is a
// transaction already (the caller's).
func runInTx(ctx context.Context, db bun.IDB, fn func(ctx context.Context, tx bun.IDB) error) error {
	if tx, ok := db.(bun.Tx); ok {
		return fn(ctx, tx)
	}
	return db.RunInTx(ctx, readCommitted(db), func(ctx context.Context, tx bun.Tx) error { return fn(ctx, tx) })
}
