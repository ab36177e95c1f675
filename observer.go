package tds

import (
	"sync/atomic"
	"time"
)

// JobResult is what became of one job a [Worker] claimed, as reported to
// the function given to [WithObserver].
type JobResult struct {
	// JobID is the id of the job in tds_sync_queue.
	JobID int64
	// InboxEventID is the id of the job's event in tds_inbox_events.
	InboxEventID int64
	// EntityType and EntityID name the entity the job synced.
	EntityType, EntityID string
	// Status is the job's status as committed: [StatusCompleted],
	// [StatusRetry], [StatusDeadLetter], or [StatusPending] (or
	// [StatusRetry] for a job already tried before) when the worker handed
	// it back unfinished, as on shutdown.
	Status Status
	// Outcome is [OutcomeSynced] or [OutcomeSuperseded] for a completed
	// job, else "".
	Outcome Outcome
	// Attempt is the number of the attempt, from 1.
	Attempt int
	// Err is the error of a failed attempt, else nil.
	Err error
	// ReceivedAt is when tds received the event (zero when the job was
	// handed back before its event was read).
	ReceivedAt time.Time
	// CommittedAt is when the transaction that decided the job's fate
	// committed, by the worker's clock ([WithClock]).
	CommittedAt time.Time
	// StartedAt is when the attempt started: its Sync, or the SyncBatch of
	// its batch, was called, by the worker's clock. It is zero for a job
	// handed back before it started. StartedAt minus ReceivedAt is the
	// time the job waited; CommittedAt minus StartedAt, the time it took.
	StartedAt time.Time
}

// WithObserver sets a function a [Worker] calls once per job, after the
// transaction that decided the job's fate has committed (never before): a
// completion, a failed attempt, a dead letter, or a hand-back. It is
// called from the worker's goroutines, concurrently, while the next batch
// waits: it must be fast and safe for concurrent use. Jobs whose lease the
// worker lost are not reported (their new holder reports them).
// Applies to [NewWorker]. Defaults to none.
// Given several times, every function is called, in the order given.
func WithObserver(fn func(JobResult)) Option {
	return newOption("WithObserver", forWorker, func(c *config) error {
		if fn == nil {
			return optErr("WithObserver", "function is nil")
		}
		c.worker.observers = append(c.worker.observers, fn)
		return nil
	})
}

// WebhookResult is how a [Handler] answered one webhook, as reported to the
// functions given to [WithWebhookObserver].
type WebhookResult struct {
	// Route is the route the webhook was sent to, as requested;
	// EntityType is its entity type, "" when no type has that route.
	Route, EntityType string
	// Status is the HTTP status answered, or 0 when the sender hung up
	// before its event was stored (no answer was sent).
	Status int
	// Duplicate tells that a 200 answered a redelivery.
	Duplicate bool
	// EventID is the inbox event stored (for a duplicate, the one stored
	// first); 0 when none was.
	EventID int64
	// Duration is the time from the request reaching the Handler to its
	// answer.
	Duration time.Duration
}

// WithWebhookObserver sets a function the [Handler] calls once per webhook
// request, after answering it. It runs in the request's goroutine, so it
// must be fast and safe for concurrent use. Given several times, every
// function is called, in the order given.
// Applies to [NewHandler]. Defaults to none.
func WithWebhookObserver(fn func(WebhookResult)) Option {
	return newOption("WithWebhookObserver", forHandler, func(c *config) error {
		if fn == nil {
			return optErr("WithWebhookObserver", "function is nil")
		}
		c.handler.onWebhook = append(c.handler.onWebhook, fn)
		return nil
	})
}

// WithBatchObserver sets a function called with the number of events of
// every group-commit transaction the Processor runs (see
// [WithIngestBatch]), before it commits. It must be fast and safe for
// concurrent use. Given several times, every function is called.
// Applies to [NewProcessor] and [NewHandler]. Defaults to none.
func WithBatchObserver(fn func(events int)) Option {
	return newOption("WithBatchObserver", forProcessor|forHandler, func(c *config) error {
		if fn == nil {
			return optErr("WithBatchObserver", "function is nil")
		}
		c.onBatch = append(c.onBatch, fn)
		return nil
	})
}

// WorkerStats are the cumulative counters of a [Worker] since its Run
// started, read with [Worker.Stats].
type WorkerStats struct {
	// Claims is how many claim statements ran, ClaimedJobs how many jobs
	// they claimed, and ClaimTime the total time spent in them.
	Claims, ClaimedJobs int64
	ClaimTime           time.Duration
	// Completed counts jobs completed (synced or superseded); Superseded
	// is the part of them completed as [OutcomeSuperseded].
	Completed, Superseded int64
	// Retried counts failed attempts scheduled for a retry, DeadLettered
	// the jobs dead-lettered by a failed attempt.
	Retried, DeadLettered int64
	// HandedBack counts jobs given back to the queue unfinished, as on
	// shutdown (not a failed attempt).
	HandedBack int64
	// Rescued counts jobs with an expired lease this worker's
	// housekeeping put back in the queue or dead-lettered.
	Rescued int64
}

// workerCounters are the atomics behind [WorkerStats].
type workerCounters struct {
	claims, claimedJobs, claimNanos   atomic.Int64
	completed, superseded             atomic.Int64
	retried, deadLettered, handedBack atomic.Int64
	rescued                           atomic.Int64
}

func (c *workerCounters) reset() {
	for _, v := range []*atomic.Int64{&c.claims, &c.claimedJobs, &c.claimNanos, &c.completed, &c.superseded,
		&c.retried, &c.deadLettered, &c.handedBack, &c.rescued} {
		v.Store(0)
	}
}

// Stats returns the Worker's counters since Run last started. Each counter
// is read atomically; together they are not a snapshot of one instant. It
// may be called at any time, from any goroutine.
func (w *Worker) Stats() WorkerStats {
	c := &w.stats
	return WorkerStats{
		Claims:       c.claims.Load(),
		ClaimedJobs:  c.claimedJobs.Load(),
		ClaimTime:    time.Duration(c.claimNanos.Load()),
		Completed:    c.completed.Load(),
		Superseded:   c.superseded.Load(),
		Retried:      c.retried.Load(),
		DeadLettered: c.deadLettered.Load(),
		HandedBack:   c.handedBack.Load(),
		Rescued:      c.rescued.Load(),
	}
}

// report counts the committed results and hands them to the observer.
func (w *Worker) report(results []JobResult) {
	c := &w.stats
	for _, r := range results {
		switch r.Status {
		case StatusCompleted:
			c.completed.Add(1)
			if r.Outcome == OutcomeSuperseded {
				c.superseded.Add(1)
			}
		case StatusRetry:
			if r.Err != nil {
				c.retried.Add(1)
			} else {
				c.handedBack.Add(1)
			}
		case StatusDeadLetter:
			c.deadLettered.Add(1)
		case StatusPending:
			c.handedBack.Add(1)
		}
	}
	for _, fn := range w.ws.observers {
		for _, r := range results {
			fn(r)
		}
	}
}
