package tds

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tdscore/tds/internal/store"
	"github.com/uptrace/bun"
)

// enqueueBacklog stores n queued product events of distinct entities with
// multi-row INSERTs: the fastest way to build a backlog, not a measured path.
func enqueueBacklog(tb testing.TB, db *bun.DB, n int) {
	tb.Helper()
	ctx := context.Background()
	const chunk = 500
	now := dbTime(time.Now())
	run := now.UnixNano()
	for done := 0; done < n; done += chunk {
		k := min(chunk, n-done)
		events := make([]*store.Event, k)
		for i := range events {
			id := fmt.Sprintf("b%d-%d", run, done+i)
			key := "zoho:product:" + id + ":update:bench"
			events[i] = &store.Event{Source: "zoho", EventType: EventUpdate, EntityType: "product",
				EntityID: id, IdempotencyKey: key, ContentHash: key,
				Payload: fmt.Appendf(nil, `{"item_id":%q,"name":"Bench"}`, id), Version: now,
				ReceivedAt: now, IsValid: true, MovedToQueue: true, Metadata: json.RawMessage(`{}`)}
		}
		require.NoError(tb, db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if _, err := tx.NewInsert().Model(&events).Returning("id").Exec(ctx); err != nil {
				return err
			}
			jobs := make([]*store.Job, k)
			for i, ev := range events {
				jobs[i] = &store.Job{InboxEventID: ev.ID, Source: "zoho", EventType: EventUpdate, EntityType: "product",
					EntityID: ev.EntityID, Status: store.StatusPending, Priority: DefaultPriority,
					MaxAttempts: DefaultMaxAttempts, NextRetryAt: now, CreatedAt: now, UpdatedAt: now}
			}
			_, err := tx.NewInsert().Model(&jobs).Exec(ctx)
			return err
		}))
	}
}

// BenchmarkWorkerBurnDown drains b.N queued jobs with a no-op Syncer: the
// worker's hot path (claim, load, savepoint, complete, commit). It reports
// jobs/s; compare batch sizes within one run. The test PostgreSQL runs with
// fsync off, which flatters small batches (commits cost no disk flush).
func BenchmarkWorkerBurnDown(b *testing.B) {
	noop := SyncFunc(func(context.Context, bun.Tx, *SyncJob) error { return nil })
	for _, dialect := range []string{"postgres", "sqlite"} {
		for _, size := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/batch=%d", dialect, size), func(b *testing.B) {
				tdb := openTestDB(b, dialect)
				enqueueBacklog(b, tdb.db, b.N)
				var completed atomic.Int64
				all := make(chan struct{})
				target := int64(b.N)
				w, err := NewWorker(tdb.db, noop, WithBatchSize(size), WithLogger(slog.New(slog.DiscardHandler)),
					WithObserver(func(r JobResult) {
						if r.Status == StatusCompleted && completed.Add(1) == target {
							close(all)
						}
					}))
				require.NoError(b, err)
				ctx, cancel := context.WithCancel(context.Background())
				errc := make(chan error, 1)
				b.ResetTimer()
				start := time.Now()
				go func() { errc <- w.Run(ctx) }()
				<-all
				elapsed := time.Since(start)
				b.StopTimer()
				cancel()
				require.NoError(b, <-errc)
				st := w.Stats()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
				b.ReportMetric(float64(st.ClaimTime.Microseconds())/float64(max(st.Claims, 1)), "µs/claim")
			})
		}
	}
}

// BenchmarkWorkerWakeLatency ingests b.N events at 300/s through the
// Processor, with a poll interval of an hour so that only the wake-up path
// can deliver them, and reports the delay from receipt to the commit of
// the job's completion (JobResult.CommittedAt - ReceivedAt): p50 and p99.
func BenchmarkWorkerWakeLatency(b *testing.B) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		b.Run(dialect, func(b *testing.B) {
			tdb := openTestDB(b, dialect)
			p, err := NewProcessor(tdb.db)
			require.NoError(b, err)
			lat := make(chan time.Duration, b.N)
			w, err := NewWorker(tdb.db, SyncFunc(func(context.Context, bun.Tx, *SyncJob) error { return nil }),
				WithPollInterval(time.Hour), WithLogger(slog.New(slog.DiscardHandler)),
				WithObserver(func(r JobResult) {
					if r.Status == StatusCompleted {
						lat <- r.CommittedAt.Sub(r.ReceivedAt)
					}
				}))
			require.NoError(b, err)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- w.Run(ctx) }()
			b.ResetTimer()
			tick := time.NewTicker(time.Second / 300)
			for i := range b.N {
				<-tick.C
				_, err := p.Process(ctx, productEvent(fmt.Sprint(i), "x"))
				require.NoError(b, err)
			}
			tick.Stop()
			all := make([]time.Duration, 0, b.N)
			for range b.N {
				all = append(all, <-lat)
			}
			b.StopTimer()
			cancel()
			require.NoError(b, <-errc)
			slices.Sort(all)
			b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
