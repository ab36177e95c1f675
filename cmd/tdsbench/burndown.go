package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/store"
)

// enqueue stores k valid product events, all queued, in chunks of multi-row
// INSERTs: the fastest way to build a backlog, not a measured path.
func enqueue(ctx context.Context, db *bun.DB, k int, entities int) error {
	const chunk = 1000
	now := time.Now().UTC().Truncate(time.Microsecond)
	run := fmt.Sprintf("bd%d", now.UnixNano())
	for done := 0; done < k; done += chunk {
		n := min(chunk, k-done)
		events := make([]*store.Event, n)
		for i := range events {
			seq := int64(done + i)
			id := fmt.Sprintf("%s-%d", run, seq)
			if entities > 0 {
				id = fmt.Sprintf("%s-%d", run, seq%int64(entities))
			}
			key := fmt.Sprintf("zoho:product:%s:update:d:%d", id, seq)
			modified := now.Add(time.Duration(seq) * time.Microsecond)
			events[i] = &store.Event{Source: "zoho", EventType: "update", EntityType: "product",
				EntityID: id, IdempotencyKey: key, ContentHash: key, Metadata: json.RawMessage(`{}`),
				Version: modified, ReceivedAt: now, IsValid: true, MovedToQueue: true}
			events[i].Payload = fmt.Appendf(nil, `{"item_id":%q,"name":"Bench item %d","rate":12.5}`, id, seq)
		}
		err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if _, err := tx.NewInsert().Model(&events).Returning("id").Exec(ctx); err != nil {
				return err
			}
			jobs := make([]*store.Job, n)
			for i, ev := range events {
				jobs[i] = &store.Job{InboxEventID: ev.ID, Source: "zoho", EventType: "update", EntityType: "product",
					EntityID: ev.EntityID, Status: store.StatusPending, Priority: 5,
					// An entity's first job of the run is its head; the rest wait.
					Blocked:     entities > 0 && done+i >= entities,
					MaxAttempts: 3, NextRetryAt: now, CreatedAt: now, UpdatedAt: now}
			}
			_, err := tx.NewInsert().Model(&jobs).Exec(ctx)
			return err
		})
		if err != nil {
			return fmt.Errorf("enqueueing: %w", err)
		}
	}
	return nil
}

// burnDown times workers draining a backlog of k events with syncer s.
func burnDown(ctx context.Context, db *bun.DB, k int, s tds.Syncer, tr *tracing, opts ...tds.Option) (throughput, error) {
	if err := enqueue(ctx, db, k, 0); err != nil {
		return throughput{}, err
	}
	if err := tr.traceEvents(ctx, db); err != nil {
		return throughput{}, err
	}
	// The observer counts finished jobs, so that watching costs the
	// database nothing.
	var finished atomic.Int64
	all := make(chan struct{})
	observe := func(r tds.JobResult) {
		if r.Status == tds.StatusCompleted || r.Status == tds.StatusDeadLetter {
			if finished.Add(1) == int64(k) {
				close(all)
			}
		}
	}
	w, err := tds.NewWorker(db, s, append(opts, tds.WithObserver(observe))...)
	if err != nil {
		return throughput{}, err
	}
	start := time.Now()
	stop := runWorker(ctx, w)
	select {
	case <-all:
	case <-ctx.Done():
		_ = stop()
		return throughput{}, ctx.Err()
	}
	elapsed := time.Since(start)
	if err := stop(); err != nil {
		return throughput{}, err
	}
	done, err := db.NewSelect().Model((*store.Job)(nil)).Where("status = ?", tds.StatusCompleted).Count(ctx)
	if err != nil {
		return throughput{}, err
	}
	if done != int64(k) {
		return throughput{}, fmt.Errorf("%d of %d jobs completed", done, k)
	}
	return throughput{events: int64(k), elapsed: elapsed}, nil
}
