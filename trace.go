package tds

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/tdscore/tds/internal/store"
)

// The tracing hooks: generic, so that a tracer (package tdsotel for
// OpenTelemetry) plugs in without the root knowing it. A trace context is
// an opaque string to tds: it is captured when an event is stored, kept
// with the event in the database and handed to the attempt hook of
// whichever Worker, in whatever process, later runs the event's job.

// traceHooks are the tracing options of a config.
type traceHooks struct {
	carrier func(ctx context.Context) string
	ingest  []IngestHook
	attempt []AttemptHook
}

// WithTraceContext sets a function that returns the trace context of the
// call storing an event (for OpenTelemetry, the W3C traceparent of the
// webhook's request or server span, optionally followed by its
// tracestate); it gets the context given to [Processor.Process] or
// [Processor.ProcessTx], for a webhook the request's. A non-empty result
// is stored with the event and given back as [AttemptJob.TraceContext] to
// the [WithAttemptHook] functions of every attempt of the event's job, in
// any process and after any delay. It runs in the caller's goroutine
// before the event's transaction: it must be fast and safe for concurrent
// use. Applies to [NewProcessor] and [NewHandler]. Defaults to none:
// nothing is stored (NULL).
func WithTraceContext(fn func(ctx context.Context) string) Option {
	return newOption("WithTraceContext", forProcessor|forHandler, func(c *config) error {
		if fn == nil {
			return optErr("WithTraceContext", "function is nil")
		}
		c.trace.carrier = fn
		return nil
	})
}

// IngestHook is called by the Processor around each group-commit
// transaction (see [WithIngestBatch]). ctx is the context of the call that
// leads the batch; requests are the contexts of the [Processor.Process]
// calls whose events the batch stores, in order, the leader's among them.
// It returns the context the batch's statements run with, which must be
// derived from ctx, and a function called once the batch has ended, with
// nil when it committed or the error that failed it (its events were then
// tried one per transaction, under the same context).
type IngestHook func(ctx context.Context, requests []context.Context) (context.Context, func(err error))

// WithIngestHook sets a function called around every group-commit
// transaction; see [IngestHook]. It must be fast and safe for concurrent
// use. Given several times, every function is called, in the order given,
// each getting the context the previous one returned.
// Applies to [NewProcessor] and [NewHandler]. Defaults to none.
func WithIngestHook(fn IngestHook) Option {
	return newOption("WithIngestHook", forProcessor|forHandler, func(c *config) error {
		if fn == nil {
			return optErr("WithIngestHook", "function is nil")
		}
		c.trace.ingest = append(c.trace.ingest, fn)
		return nil
	})
}

// AttemptInfo is one call of a Worker's Syncer, as given to an
// [AttemptHook]: [Syncer.Sync] for one job, or [BatchSyncer.SyncBatch]
// for the jobs of a batch (Batch).
type AttemptInfo struct {
	// Jobs are the jobs handed to the Syncer: one for Sync.
	Jobs []AttemptJob
	// Batch tells that the call is a SyncBatch.
	Batch bool
}

// AttemptJob is one job of an [AttemptInfo].
type AttemptJob struct {
	// JobID and InboxEventID are the ids of the job and of its event.
	JobID, InboxEventID int64
	// EntityType and EntityID name the entity the job syncs.
	EntityType, EntityID string
	// Attempt is the number of the attempt, from 1.
	Attempt int
	// TraceContext is the trace context stored with the job's event (see
	// [WithTraceContext]), "" when none was.
	TraceContext string
}

// AttemptHook is called by a Worker just before each call of its Syncer.
// It returns the context the Syncer receives, which must be derived from
// ctx, and a function the Worker calls exactly once when the attempt has
// ended: with the committed results of the attempt's jobs (their status:
// completed, retry, dead letter; their error), or, when the Worker's
// transaction was rolled back before any outcome was committed (a lost
// lease, a shutdown, a failure outside a savepoint, a SyncBatch that
// failed and whose jobs are then synced one at a time, each in a new
// attempt of its own), with no results and the reason.
type AttemptHook func(ctx context.Context, a AttemptInfo) (context.Context, func(results []JobResult, err error))

// WithAttemptHook sets a function called around every call of the
// Worker's Syncer; see [AttemptHook]. It is called from the worker's
// goroutines, concurrently: it must be fast and safe for concurrent use.
// Given several times, every function is called, in the order given, each
// getting the context the previous one returned.
// Applies to [NewWorker]. Defaults to none.
func WithAttemptHook(fn AttemptHook) Option {
	return newOption("WithAttemptHook", forWorker, func(c *config) error {
		if fn == nil {
			return optErr("WithAttemptHook", "function is nil")
		}
		c.trace.attempt = append(c.trace.attempt, fn)
		return nil
	})
}

// traceContextOf is the trace context to store for an event ingested
// under ctx, nil without WithTraceContext.
func (c *config) traceContextOf(ctx context.Context) *string {
	if c.trace.carrier == nil {
		return nil
	}
	if s := c.trace.carrier(ctx); s != "" {
		return &s
	}
	return nil
}

// startIngest runs the ingest hooks for batch; end is never nil.
func (p *Processor) startIngest(ctx context.Context, batch []*ingestReq) (context.Context, func(error)) {
	hooks := p.cfg.trace.ingest
	if len(hooks) == 0 {
		return ctx, func(error) {}
	}
	reqs := make([]context.Context, len(batch))
	for i, r := range batch {
		reqs[i] = r.ctx
	}
	ends := make([]func(error), 0, len(hooks))
	for _, h := range hooks {
		var end func(error)
		ctx, end = h(ctx, reqs)
		if end != nil {
			ends = append(ends, end)
		}
	}
	return ctx, func(err error) {
		for i := len(ends) - 1; i >= 0; i-- {
			ends[i](err)
		}
	}
}

// errAttemptUndone ends an attempt whose transaction was rolled back so
// that its jobs run again (a lost lease of another job of the batch).
var errAttemptUndone = errors.New("tds: the attempt's transaction was rolled back; its jobs run again")

// errSyncBatchUndone ends the attempt of a SyncBatch whose writes were
// undone: its jobs are synced one at a time, in attempts of their own.
var errSyncBatchUndone = errors.New("tds: SyncBatch undone; syncing its jobs one at a time")

// runningAttempt is an attempt whose hooks wait for its outcome.
type runningAttempt struct {
	ctx  context.Context // the Syncer's, without the savepoint
	jobs []int64
	ends []func([]JobResult, error)
}

// cleanupCtx is cleanupCtx with the values (the span) of a's context.
func (a *runningAttempt) cleanupCtx() (context.Context, context.CancelFunc) {
	if a == nil {
		return cleanupCtx()
	}
	return context.WithTimeout(context.WithoutCancel(a.ctx), 10*time.Second)
}

// end ends a's hooks with results, or with err when none was committed.
// It does nothing for a nil or ended attempt.
func (a *runningAttempt) end(results []JobResult, err error) {
	if a == nil || a.ends == nil {
		return
	}
	if len(results) == 0 && err == nil {
		err = errAttemptUndone
	}
	for i := len(a.ends) - 1; i >= 0; i-- {
		if len(results) > 0 {
			a.ends[i](results, nil)
		} else {
			a.ends[i](nil, err)
		}
	}
	a.ends = nil
}

// startAttempt runs the attempt hooks for the Syncer call on jobs. The
// attempt returned is nil without hooks.
func (b *batchRun) startAttempt(ctx context.Context, jobs []*store.Job, batch bool) (context.Context, *runningAttempt) {
	hooks := b.w.cfg.trace.attempt
	if len(hooks) == 0 {
		return ctx, nil
	}
	a := AttemptInfo{Jobs: make([]AttemptJob, len(jobs)), Batch: batch}
	ra := &runningAttempt{jobs: make([]int64, len(jobs))}
	for i, j := range jobs {
		a.Jobs[i] = AttemptJob{JobID: j.ID, InboxEventID: j.InboxEventID, EntityType: j.EntityType,
			EntityID: j.EntityID, Attempt: j.Attempt}
		if ev := b.events[j.InboxEventID]; ev != nil && ev.TraceContext != nil {
			a.Jobs[i].TraceContext = *ev.TraceContext
		}
		ra.jobs[i] = j.ID
	}
	for _, h := range hooks {
		var end func([]JobResult, error)
		ctx, end = h(ctx, a)
		if end != nil {
			ra.ends = append(ra.ends, end)
		}
	}
	ra.ctx = ctx
	b.attempts = append(b.attempts, ra)
	return ctx, ra
}

// endAttempts ends the batch's attempts still running: each with its
// jobs' results when the batch committed, else with err; but the attempt
// of an unprotected failure runs on until Worker.fail has recorded it.
func (b *batchRun) endAttempts(results []JobResult, err error) {
	var uf *unprotectedFailure
	errors.As(err, &uf)
	for _, a := range b.attempts {
		if uf != nil && uf.attempt == a {
			continue
		}
		var mine []JobResult
		if err == nil {
			for _, r := range results {
				if slices.Contains(a.jobs, r.JobID) {
					mine = append(mine, r)
				}
			}
		}
		a.end(mine, err)
	}
}
