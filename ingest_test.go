package tds

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func prepared(t *testing.T, p *Processor, evs ...*Event) []*ingestReq {
	t.Helper()
	var out []*ingestReq
	for _, ev := range evs {
		r, err := p.prepare(context.Background(), ev)
		require.NoError(t, err)
		out = append(out, r)
	}
	return out
}

func TestGroupCommitFailingEventFailsAlone(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		p := newTestProcessor(t, tdb.db)
		batch := prepared(t, p, productEvent("1", "a"), productEvent("2", "b"), productEvent("3", "c"))
		// Processing refuses NUL characters; slipped past it into the row,
		// one makes the row impossible to send (bun refuses it).
		batch[1].row.EntityID = "bad\x00id"
		p.runBatch(context.Background(), batch)
		require.NoError(t, batch[0].err)
		require.Error(t, batch[1].err)
		require.NoError(t, batch[2].err)
		require.True(t, batch[0].res.Queued)
		require.True(t, batch[2].res.Queued)
		require.NotEqual(t, batch[0].res.EventID, batch[2].res.EventID)
		require.Equal(t, 2, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
		require.Equal(t, 2, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))
	})
}

func TestGroupCommitDuplicatesWithinABatch(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		p := newTestProcessor(t, tdb.db)
		stored, err := p.Process(context.Background(), productEvent("0", "before"))
		require.NoError(t, err)

		batch := prepared(t, p, productEvent("1", "a"), productEvent("1", "a"), productEvent("2", "b"),
			productEvent("0", "before"), invalidEvent("9"), invalidEvent("9"))
		p.runBatch(context.Background(), batch)
		for _, r := range batch {
			require.NoError(t, r.err)
		}
		require.False(t, batch[0].res.Duplicate)
		require.True(t, batch[1].res.Duplicate)
		require.Equal(t, batch[0].res.EventID, batch[1].res.EventID)
		require.Equal(t, batch[0].res.JobID, batch[1].res.JobID)
		require.NotZero(t, batch[1].res.JobID)
		require.False(t, batch[2].res.Duplicate)
		require.True(t, batch[3].res.Duplicate)
		require.Equal(t, stored.EventID, batch[3].res.EventID)
		require.Equal(t, stored.JobID, batch[3].res.JobID)
		require.False(t, batch[4].res.Duplicate)
		require.False(t, batch[4].res.Queued)
		require.True(t, batch[5].res.Duplicate)
		require.Equal(t, batch[4].res.ValidationErrors, batch[5].res.ValidationErrors)
		require.Equal(t, 4, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
		require.Equal(t, 3, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))
	})
}

func invalidEvent(id string) *Event {
	return &Event{EventType: EventUpdate, EntityType: "product", EntityID: id, Data: []byte(`{"item_id":"` + id + `"}`)}
}

func TestProcessConcurrentDistinctEvents(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		p := newTestProcessor(t, tdb.db)
		const senders, each = 40, 5
		var wg sync.WaitGroup
		results := make([][]*Result, senders)
		errs := make(chan error, senders*each)
		for s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					res, err := p.Process(context.Background(), productEvent(fmt.Sprintf("%d-%d", s, i), "x"))
					if err != nil {
						errs <- err
						return
					}
					results[s] = append(results[s], res)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		seen := map[int64]bool{}
		for s := range senders {
			require.Len(t, results[s], each)
			for i, res := range results[s] {
				require.False(t, res.Duplicate)
				require.True(t, res.Queued)
				require.False(t, seen[res.EventID])
				seen[res.EventID] = true
				// The result belongs to this sender's event.
				var id string
				require.NoError(t, tdb.db.QueryRowContext(context.Background(),
					"SELECT source_entity_id FROM tds_sync_queue WHERE id = ? AND inbox_event_id = ?",
					res.JobID, res.EventID).Scan(&id))
				require.Equal(t, fmt.Sprintf("%d-%d", s, i), id)
			}
		}
		require.Equal(t, senders*each, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
		require.Equal(t, senders*each, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))
	})
}

// BenchmarkProcess ingests distinct events from 64 concurrent callers, with
// group commit (batch64) and with a transaction per event (batch1).
func BenchmarkProcess(b *testing.B) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		for _, batch := range []int{1, DefaultIngestBatch} {
			b.Run(fmt.Sprintf("%s/batch%d", dialect, batch), func(b *testing.B) {
				tdb := openTestDB(b, dialect)
				p, err := NewProcessor(tdb.db, WithIngestBatch(batch))
				require.NoError(b, err)
				var n atomic.Int64
				b.SetParallelism(64 / runtime.GOMAXPROCS(0))
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						id := fmt.Sprint(n.Add(1))
						if _, err := p.Process(context.Background(), productEvent(id, "bench")); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// On PostgreSQL, ingesting an event of an entity waits for any open
// transaction that ingests the same entity, so that the entity's job ids
// follow commit order.
func TestIngestSerialisesOneEntityOnPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := openTestDB(t, "postgres")
	p := newTestProcessor(t, tdb.db)

	tx1, err := tdb.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	first, err := p.ProcessTx(ctx, tx1, productEvent("42", "v1"))
	require.NoError(t, err)

	// Another entity is not held up.
	_, err = p.Process(ctx, productEvent("43", "other"))
	require.NoError(t, err)

	type outcome struct {
		res *Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := p.Process(ctx, productEvent("42", "v2"))
		done <- outcome{res, err}
	}()
	// The second delivery of entity 42 waits on the first's advisory lock.
	require.Eventually(t, func() bool {
		return count(t, tdb.db, `SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`) == 1
	}, 10*time.Second, 5*time.Millisecond)
	select {
	case o := <-done:
		t.Fatalf("second delivery finished while the first was uncommitted: %+v", o)
	default:
	}
	require.NoError(t, tx1.Commit())
	o := <-done
	require.NoError(t, o.err)
	require.Greater(t, o.res.JobID, first.JobID)
}
