package tds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/dberr"
	"github.com/tdscore/tds/internal/notify"
	"github.com/tdscore/tds/internal/store"
)

// Group commit: concurrent Process calls share one transaction and one
// commit. Every caller is answered only after the commit that holds its
// event, so the guarantee of a single Process call is unchanged; what is
// shared is the cost of the commit (the WAL flush or SQLite fsync) and the
// round trips, since a batch is stored with one statement per table (one
// in all on PostgreSQL).

// DefaultIngestBatch is the most events one ingest transaction holds.
const DefaultIngestBatch = 64

// ingestTimeout bounds a batch's transaction, whose callers may have gone.
const ingestTimeout = 30 * time.Second

// ingestReq is one Process call: its event's row, and its outcome.
type ingestReq struct {
	ctx  context.Context // the Process call's, for the ingest hooks
	row  *store.Event
	job  *store.NewJob // nil for an invalid event
	verr ValidationErrors
	res  *Result
	err  error
}

// runBatch stores a batch (the group commit's callback). When the batch
// fails for a reason other than the database's availability, each event is
// stored alone, so that only the culprit fails.
func (p *Processor) runBatch(ctx context.Context, batch []*ingestReq) {
	for _, fn := range p.cfg.onBatch {
		fn(len(batch))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ingestTimeout)
	defer cancel()
	ctx, end := p.startIngest(ctx, batch)
	err := p.storeBatch(ctx, p.db, batch)
	defer func() { end(err) }()
	if err == nil {
		p.afterCommit(batch)
		return
	}
	if len(batch) == 1 || dberr.IsUnavailable(err) {
		for _, r := range batch {
			r.res, r.err = nil, wrapDBErr("processing event", err)
		}
		return
	}
	for _, r := range batch {
		one := []*ingestReq{r}
		if err := p.storeBatch(ctx, p.db, one); err != nil {
			r.res, r.err = nil, wrapDBErr("processing event", err)
			continue
		}
		p.afterCommit(one)
	}
}

// prepare builds the inbox row of ev, validates it and, when it is valid,
// gives it its priority. It fails only for events that cannot be stored at
// all. Validation and priority are decided here, before any transaction
// and before de-duplication: see [Validator].
func (p *Processor) prepare(ctx context.Context, ev *Event) (*ingestReq, error) {
	if ev == nil {
		return nil, errNilEvent
	}
	// A copy: the entity type is cached on the event (Registry.typeOf),
	// and the caller's may be in use elsewhere.
	e := *ev
	ev = &e
	et := p.cfg.typeOf(ev) // once: the Validator and Prioritizer find it on ev
	row, err := p.cfg.newInboxEvent(ev, et)
	if err != nil {
		return nil, err
	}
	if run := store.SyncRunOf(ctx); run != 0 {
		row.SyncRunID = &run // a reconciliation run's repair
	}
	row.TraceContext = p.cfg.traceContextOf(ctx)
	now := row.ReceivedAt
	r := &ingestReq{ctx: ctx, row: row}
	var ve ValidationErrors
	if verr := p.cfg.validator.Validate(ctx, ev); verr != nil {
		if !errors.As(verr, &ve) || len(ve) == 0 {
			ve = ValidationErrors{{Message: verr.Error()}}
		}
	}
	if ve = append(ve[:len(ve):len(ve)], ev.checks...); len(ve) > 0 {
		r.verr = ve
		if row.ValidationErrors, err = json.Marshal(ve); err != nil {
			return nil, fmt.Errorf("tds: encoding validation errors: %w", err)
		}
	} else {
		row.IsValid = true
		row.MovedToQueue = true
		row.QueuedAt = &now
		r.job = &store.NewJob{
			Priority:    clampPriority(p.cfg.prioritizer.Priority(ctx, ev)),
			MaxAttempts: p.cfg.maxAttemptsFor(et),
		}
	}
	row.ValidatedAt = &now
	return r, nil
}

// storeBatch stores the batch's events in db (the pool, where the batch
// commits on its own, or the caller's transaction) and sets each request's
// result. Redeliveries, within the batch or of events stored before,
// become duplicates.
func (p *Processor) storeBatch(ctx context.Context, db bun.IDB, batch []*ingestReq) error {
	// The first request of each key stores it; later ones are duplicates.
	first := make(map[string]*ingestReq, len(batch))
	ins := make([]store.Ingest, 0, len(batch))
	for _, r := range batch {
		r.res, r.err = nil, nil
		if _, seen := first[r.row.IdempotencyKey]; !seen {
			first[r.row.IdempotencyKey] = r
			ins = append(ins, store.Ingest{Event: r.row, Job: r.job})
		}
	}
	stored, err := p.st.InsertEvents(ctx, db, ins)
	if err != nil {
		return err
	}
	for _, st := range stored {
		r := first[st.IdempotencyKey]
		r.res = &Result{EventID: st.ID, IdempotencyKey: st.IdempotencyKey, Queued: r.row.IsValid,
			ValidationErrors: r.verr}
		if st.JobID != nil {
			r.res.JobID, r.res.Priority = *st.JobID, *st.Priority
		}
	}
	// Everything else is a duplicate: of a stored event, or of a request
	// earlier in this batch.
	var dupKeys []string
	for _, r := range batch {
		if r.res == nil {
			dupKeys = append(dupKeys, r.row.IdempotencyKey)
		}
	}
	if len(dupKeys) == 0 {
		return nil
	}
	existing, err := p.st.FindEvents(ctx, db, dupKeys)
	if err != nil {
		return err
	}
	byKey := make(map[string]*Result, len(existing))
	for _, e := range existing {
		ve, err := decodeValidationErrors(e.ValidationErrors)
		if err != nil {
			return err
		}
		res := &Result{EventID: e.ID, IdempotencyKey: e.IdempotencyKey, Duplicate: true,
			Queued: e.MovedToQueue, ValidationErrors: ve}
		if e.JobID != nil {
			res.JobID, res.Priority = *e.JobID, *e.Priority
		}
		byKey[e.IdempotencyKey] = res
	}
	for _, r := range batch {
		if r.res != nil {
			continue
		}
		res, ok := byKey[r.row.IdempotencyKey]
		if !ok {
			return errors.New("tds: a conflicting inbox event vanished")
		}
		cp := *res
		r.res = &cp
	}
	return nil
}

// queuedNew reports whether the batch queued a new job.
func queuedNew(batch []*ingestReq) bool {
	for _, r := range batch {
		if r.err == nil && r.res != nil && r.res.JobID != 0 && !r.res.Duplicate {
			return true
		}
	}
	return false
}

// afterCommit runs once a batch has committed: it wakes the workers if the
// batch queued a job.
func (p *Processor) afterCommit(batch []*ingestReq) {
	if queuedNew(batch) {
		// The workers of this process on the same pool wake at once,
		// without the round trip of a NOTIFY and its way through the
		// listener's connection; those of other processes by the Waker
		// (NOTIFY on PostgreSQL) or by polling.
		notify.Default.Signal(p.db.Dialect())
		p.wake.Poke()
	}
}
