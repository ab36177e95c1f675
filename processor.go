package tds

import (
	"context"
	"errors"
	"fmt"

	"github.com/uptrace/bun"
)

// Result tells what [Processor.Process] did with an event.
type Result struct {
	// EventID is the inbox event's id: the new one, or for a duplicate the
	// one stored first.
	EventID int64 `json:"event_id"`
	// IdempotencyKey is the key the event was stored under.
	IdempotencyKey string `json:"idempotency_key"`
	// Duplicate is true when the event had been received before; nothing
	// was stored and the other fields describe the first delivery.
	Duplicate bool `json:"duplicate"`
	// Queued is true when the event is in the sync queue.
	Queued bool `json:"queued"`
	// JobID is the queue entry's id when Queued.
	JobID int64 `json:"job_id,omitempty"`
	// Priority is the queue priority when Queued.
	Priority int `json:"priority,omitempty"`
	// ValidationErrors lists every problem of an invalid event, which is
	// stored but not queued.
	ValidationErrors ValidationErrors `json:"validation_errors,omitempty"`
}

// Processor ingests webhook events: it stores each in the inbox, validates
// it and queues it, in one transaction. Its methods are safe for concurrent
// use.
type Processor struct {
	db  *bun.DB
	cfg *config
}

// NewProcessor returns a Processor on db. It reads every option of this
// package that concerns ingestion: [WithRegistry], [WithValidator],
// [WithPrioritizer], [WithSource], [WithRedactHeaders], [WithMaxAttempts]
// and [WithClock].
func NewProcessor(db *bun.DB, opts ...Option) (*Processor, error) {
	if db == nil {
		return nil, errors.New("tds: NewProcessor: db is nil")
	}
	if !isPostgres(db) && !isSQLite(db) {
		return nil, errUnsupportedDialect
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Processor{db: db, cfg: cfg}, nil
}

// Registry returns the entity types the processor accepts.
func (p *Processor) Registry() *Registry { return p.cfg.registry }

// Process stores, validates and queues ev in one transaction, and returns
// once it has committed:
//
//   - a new valid event is stored and queued (Queued);
//   - a new invalid event is stored with its ValidationErrors, not queued;
//   - a redelivery of a stored event changes nothing (Duplicate).
//
// An event without event_type, entity_type or entity_id, or whose data is
// not JSON, is not stored: the error wraps [ErrInvalidEvent]. When the
// database cannot be reached the error wraps [ErrDatabaseUnavailable] and
// nothing was stored.
func (p *Processor) Process(ctx context.Context, ev *Event) (*Result, error) {
	var res *Result
	err := p.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		res, err = p.process(ctx, tx, ev)
		return err
	})
	if err != nil {
		return nil, wrapDBErr("processing event", err)
	}
	return res, nil
}

// ProcessTx is Process inside the caller's transaction tx, so that a host
// application can ingest an event together with writes of its own: if tx
// rolls back, the event was never received. The result holds only once tx
// commits. tx must belong to the processor's database.
func (p *Processor) ProcessTx(ctx context.Context, tx bun.Tx, ev *Event) (*Result, error) {
	res, err := p.process(ctx, tx, ev)
	if err != nil {
		return nil, wrapDBErr("processing event", err)
	}
	return res, nil
}

func (p *Processor) process(ctx context.Context, tx bun.Tx, ev *Event) (*Result, error) {
	if ev == nil {
		return nil, fmt.Errorf("%w: event is nil", ErrInvalidEvent)
	}
	row, err := p.cfg.newInboxEvent(ev)
	if err != nil {
		return nil, err
	}
	now := row.ReceivedAt
	if verr := p.cfg.validator.Validate(ctx, ev); verr != nil {
		var ve ValidationErrors
		if !errors.As(verr, &ve) || len(ve) == 0 {
			ve = ValidationErrors{{Message: verr.Error()}}
		}
		row.ValidationErrors = ve
	} else {
		row.IsValid = true
		row.MovedToQueue = true
		row.QueuedAt = &now
	}
	row.ValidatedAt = &now

	stored, dup, err := insertInboxEvent(ctx, tx, row)
	if err != nil {
		return nil, err
	}
	res := &Result{
		EventID:          stored.ID,
		IdempotencyKey:   stored.IdempotencyKey,
		Duplicate:        dup,
		Queued:           stored.MovedToQueue,
		ValidationErrors: stored.ValidationErrors,
	}
	if dup {
		if stored.MovedToQueue {
			job, err := (&Queue{db: tx, cfg: p.cfg}).GetByInboxEvent(ctx, stored.ID)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return nil, err
			}
			if job != nil {
				res.JobID, res.Priority = job.ID, job.Priority
			}
		}
		return res, nil
	}
	if !row.IsValid {
		return res, nil
	}
	job, err := insertJob(ctx, tx, p.cfg.newJob(row, p.cfg.prioritizer.Priority(ctx, ev), now))
	if err != nil {
		return nil, err
	}
	res.JobID, res.Priority = job.ID, job.Priority
	return res, nil
}
