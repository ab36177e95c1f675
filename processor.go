package tds

import (
	"context"
	"errors"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/groupcommit"
	"github.com/tdscore/tds/internal/store"
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
// it and queues it, atomically. Its methods are safe for concurrent use.
// Call [Processor.Close] when done with it.
type Processor struct {
	db    *bun.DB
	st    store.Store
	cfg   *config
	batch *groupcommit.Batcher[*ingestReq]
	wake  store.Waker
}

// NewProcessor returns a Processor on db. opts are the options that apply
// to NewProcessor; see [Option].
func NewProcessor(db *bun.DB, opts ...Option) (*Processor, error) {
	if db == nil {
		return nil, errors.New("tds: NewProcessor: db is nil")
	}
	st, err := store.For(db)
	if err != nil {
		return nil, err
	}
	cfg, err := newConfig(forProcessor, opts)
	if err != nil {
		return nil, err
	}
	return newProcessor(db, st, cfg), nil
}

// newProcessor returns a Processor on db configured by cfg, which it may
// share with others (see NewHandler).
func newProcessor(db *bun.DB, st store.Store, cfg *config) *Processor {
	p := &Processor{db: db, st: st, cfg: cfg, wake: st.NewWaker(db, cfg.logger)}
	if cfg.pollOnly && st.ConcurrentWriters() {
		p.wake = noWaker{}
	}
	inflight := 1 // one writer
	if st.ConcurrentWriters() {
		inflight = 4 // transactions in flight: one commits while the next fills
	}
	p.batch = groupcommit.New(cfg.ingestBatch, inflight, p.runBatch)
	return p
}

// Registry returns the entity types the processor accepts.
func (p *Processor) Registry() *Registry { return p.cfg.registry }

// Close waits for the wake-ups the Processor sends to idle workers after
// its commits. Events already acknowledged are stored whether or not Close
// is called; call it before closing the database.
func (p *Processor) Close() error {
	p.wake.Close()
	return nil
}

// Process stores, validates and queues ev atomically, and returns once it
// has committed:
//
//   - a new valid event is stored and queued (Queued);
//   - a new invalid event is stored with its ValidationErrors, not queued;
//   - a redelivery of a stored event changes nothing (Duplicate).
//
// Concurrent calls share transactions (group commit, see
// [WithIngestBatch]); each still returns only after the commit that holds
// its event, and an event that fails to store fails alone.
//
// An event without event_type, entity_type or entity_id, or whose data is
// not JSON, is not stored: the error wraps [ErrInvalidEvent]. When the
// database cannot be reached the error wraps [ErrDatabaseUnavailable] and
// nothing was stored.
func (p *Processor) Process(ctx context.Context, ev *Event) (*Result, error) {
	r, err := p.prepare(ctx, ev)
	if err != nil {
		return nil, err
	}
	if err := p.batch.Do(ctx, r); err != nil {
		return nil, err
	}
	return r.res, r.err
}

// ProcessTx is Process inside the caller's transaction tx, so that a host
// application can ingest an event together with writes of its own: if tx
// rolls back, the event was never received. The result holds only once tx
// commits. tx must belong to the processor's database and, on PostgreSQL,
// run at READ COMMITTED (the default): the job's place in its entity's
// line is decided from what committed before tx took the entity's lock,
// which a stricter isolation level would hide. At another level ProcessTx
// fails and stores nothing. The entity's lock is held until tx ends, so
// other events of that entity wait for it. Idle workers are woken when tx
// commits.
func (p *Processor) ProcessTx(ctx context.Context, tx bun.Tx, ev *Event) (*Result, error) {
	r, err := p.prepare(ctx, ev)
	if err != nil {
		return nil, err
	}
	batch := []*ingestReq{r}
	if err := p.storeBatch(ctx, tx, batch); err != nil {
		return nil, wrapDBErr("processing event", err)
	}
	if queuedNew(batch) {
		if err := p.st.Notify(ctx, tx); err != nil {
			return nil, wrapDBErr("processing event", err)
		}
	}
	return r.res, nil
}

var errNilEvent = fmt.Errorf("%w: event is nil", ErrInvalidEvent)

// noWaker is the Waker under WithPollOnly: the Workers poll.
type noWaker struct{}

func (noWaker) Poke()  {}
func (noWaker) Close() {}
