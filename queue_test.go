package tds

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds/internal/store"
)

// seedQueries are the seed design's inspection queries; they must run
// unchanged on both dialects.
var seedQueries = []string{
	`SELECT id, entity_type, source_entity_id, is_valid, moved_to_queue, received_at
FROM tds_inbox_events ORDER BY received_at DESC LIMIT 10`,
	`SELECT idempotency_key, COUNT(*) FROM tds_inbox_events GROUP BY idempotency_key HAVING COUNT(*) > 1`,
	`SELECT id, entity_type, source_entity_id, status, priority, attempt_count, created_at
FROM tds_sync_queue WHERE status = 'pending' ORDER BY priority ASC, created_at ASC LIMIT 10`,
	`SELECT status, COUNT(*) as count FROM tds_sync_queue GROUP BY status`,
}

func TestSeedQueriesRun(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		p := newTestProcessor(t, tdb.db)
		for _, f := range []string{"product.json", "invoice.json", "invalid_product_missing_name.json"} {
			_, err := p.Process(ctx, fixture(t, f))
			require.NoError(t, err)
		}
		for i, q := range seedQueries {
			rows, err := tdb.db.QueryContext(ctx, q)
			require.NoError(t, err, q)
			n := 0
			for rows.Next() {
				n++
			}
			require.NoError(t, rows.Err())
			require.NoError(t, rows.Close())
			require.Equal(t, []int{3, 0, 2, 1}[i], n, q)
		}
	})
}

func TestQueuePriorityThenFIFO(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		clock := newTestClock()
		p := newTestProcessor(t, tdb.db, WithClock(clock.Now))
		// Arrival order: price list (8), product (5), invoice (2), product, invoice, price list.
		var want []string
		arrivals := []struct{ file, id string }{
			{"price_list.json", "p1"}, {"product.json", "a"}, {"invoice.json", "i1"},
			{"product.json", "b"}, {"invoice.json", "i2"}, {"price_list.json", "p2"},
		}
		for _, a := range arrivals {
			ev := fixture(t, a.file)
			ev.DeliveryID = a.id // distinct deliveries of the same fixture
			_, err := p.Process(ctx, ev)
			require.NoError(t, err)
			clock.Advance(time.Second)
		}
		want = []string{"i1", "i2", "a", "b", "p1", "p2"}

		q, err := NewQueue(tdb.db)
		require.NoError(t, err)
		jobs, err := q.ListPending(ctx, 10)
		require.NoError(t, err)
		var got []string
		for _, j := range jobs {
			ev, err := NewInboxOrFail(t, tdb).Get(ctx, j.InboxEventID)
			require.NoError(t, err)
			got = append(got, *ev.DeliveryID)
			require.Equal(t, StatusPending, j.Status)
			require.Equal(t, DefaultMaxAttempts, j.MaxAttempts)
		}
		require.Equal(t, want, got)
		require.Equal(t, []int{2, 2, 5, 5, 8, 8}, []int{jobs[0].Priority, jobs[1].Priority,
			jobs[2].Priority, jobs[3].Priority, jobs[4].Priority, jobs[5].Priority})

		jobs, err = q.ListPending(ctx, 2)
		require.NoError(t, err)
		require.Len(t, jobs, 2)
	})
}

// NewInboxOrFail is NewInbox for tests.
func NewInboxOrFail(t *testing.T, tdb *testDB) *Inbox {
	t.Helper()
	in, err := NewInbox(tdb.db)
	require.NoError(t, err)
	return in
}

func TestQueueEnqueue(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		reg := ZohoRegistry()
		require.NoError(t, reg.Register(EntityType{Name: "order", IDField: "salesorder_id", MaxAttempts: 7}))
		in, err := NewInbox(tdb.db)
		require.NoError(t, err)
		q, err := NewQueue(tdb.db, WithRegistry(reg))
		require.NoError(t, err)

		ev, _, err := in.Store(ctx, &Event{EventType: "create", EntityType: "order", EntityID: "o1",
			Data: []byte(`{"salesorder_id":"o1"}`)})
		require.NoError(t, err)
		ev.IsValid = true // what the caller believes does not count: what is stored does
		_, err = q.Enqueue(ctx, ev, 2)
		require.ErrorIs(t, err, ErrInvalidEvent, "not validated yet")
		require.NoError(t, in.MarkValidated(ctx, ev.ID, ValidationErrors{{Message: "no"}}))
		_, err = q.Enqueue(ctx, ev, 2)
		require.ErrorIs(t, err, ErrInvalidEvent, "stored as invalid")
		_, err = q.Enqueue(ctx, &InboxEvent{ID: ev.ID + 100, Source: ev.Source, EntityType: "order", EntityID: "o1"}, 2)
		require.ErrorIs(t, err, ErrNotFound, "not stored")
		other := *ev
		other.EntityID = "o2"
		require.NoError(t, in.MarkValidated(ctx, ev.ID, nil))
		_, err = q.Enqueue(ctx, &other, 2)
		require.ErrorIs(t, err, ErrInvalidEvent, "the stored event is of another entity")
		require.Zero(t, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))

		ev.IsValid = false // stale: the stored event is valid now
		job, err := q.Enqueue(ctx, ev, 0)
		require.NoError(t, err)
		require.Equal(t, 1, job.Priority, "clamped")
		require.Equal(t, 7, job.MaxAttempts, "per-type max attempts")
		again, err := q.Enqueue(ctx, ev, 3)
		require.NoError(t, err)
		require.Equal(t, job.ID, again.ID, "enqueueing twice returns the same job")
		got, err := in.Get(ctx, ev.ID)
		require.NoError(t, err)
		require.True(t, got.MovedToQueue)
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))
	})
}

func TestQueueStatsKnownMix(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		clock := newTestClock()
		p := newTestProcessor(t, tdb.db, WithClock(clock.Now))
		ids := map[string][]int64{}
		for i := range 10 {
			for _, f := range []string{"product.json", "invoice.json", "stock.json"} {
				ev := fixture(t, f)
				ev.DeliveryID = fmt.Sprint(i)
				res, err := p.Process(ctx, ev)
				require.NoError(t, err)
				ids[ev.EntityType] = append(ids[ev.EntityType], res.JobID)
			}
			clock.Advance(time.Minute)
		}
		set := func(status Status, completedAt *time.Time, jobIDs ...int64) {
			for _, id := range jobIDs {
				_, err := tdb.db.NewUpdate().Model((*store.Job)(nil)).Set("status = ?", status).
					Set("completed_at = ?", completedAt).Where("id = ?", id).Exec(ctx)
				require.NoError(t, err)
			}
		}
		recent, old := clock.Now().Add(-time.Minute), clock.Now().Add(-time.Hour)
		// products: 4 completed recently, 2 completed long ago, 1 dead, 3 pending
		set(StatusCompleted, &recent, ids["product"][:4]...)
		set(StatusCompleted, &old, ids["product"][4:6]...)
		set(StatusDeadLetter, nil, ids["product"][6])
		// invoices: 2 processing, 1 retry, 7 pending; stock: 10 pending
		set(StatusProcessing, nil, ids["invoice"][:2]...)
		set(StatusRetry, nil, ids["invoice"][2])

		q, err := NewQueue(tdb.db, WithClock(clock.Now))
		require.NoError(t, err)
		st, err := q.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, int64(30), st.TotalJobs)
		require.Equal(t, map[Status]int64{StatusPending: 20, StatusProcessing: 2, StatusRetry: 1,
			StatusCompleted: 6, StatusDeadLetter: 1}, st.ByStatus)
		require.Equal(t, map[string]int64{"product": 4, "invoice": 10, "stock": 10}, st.ByEntity)
		require.Equal(t, map[int]int64{5: 4, 2: 10, 8: 10}, st.ByPriority)
		require.InDelta(t, 4.0/rateWindow.Seconds(), st.ProcessingRate, 1e-9)
		require.NotNil(t, st.OldestPending)
		// The oldest waiting job is the first stock event (the first product and
		// invoice are finished or running).
		requireSameTime(t, newTestClock().Now(), *st.OldestPending)

		// Cleanup deletes only completed jobs older than the cut, with their history.
		_, err = tdb.db.NewInsert().Model(&store.Attempt{JobID: ids["product"][4], Attempt: 1, Error: "boom",
			FailedAt: old}).Exec(ctx)
		require.NoError(t, err)
		n, err := q.DeleteCompleted(ctx, clock.Now().Add(-30*time.Minute))
		require.NoError(t, err)
		require.Equal(t, int64(2), n)
		require.Equal(t, 28, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))
		require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_attempts"))
	})
}

func TestQueueDeadLetters(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		clock := newTestClock()
		p := newTestProcessor(t, tdb.db, WithClock(clock.Now))
		q, err := NewQueue(tdb.db, WithClock(clock.Now))
		require.NoError(t, err)
		var jobs []int64
		for i, f := range []string{"product.json", "invoice.json", "customer.json", "bill.json"} {
			res, err := p.Process(ctx, fixture(t, f))
			require.NoError(t, err)
			jobs = append(jobs, res.JobID)
			code := "timeout"
			if i%2 == 1 {
				code = "http_500"
			}
			// What a worker does when it gives up: the failure, then dead_letter.
			_, err = tdb.db.NewInsert().Model(&store.Attempt{JobID: res.JobID, Attempt: 1, Error: "failed: " + code,
				ErrorCode: &code, FailedAt: clock.Now()}).Exec(ctx)
			require.NoError(t, err)
			_, err = tdb.db.NewUpdate().Model((*store.Job)(nil)).Set("status = ?", StatusDeadLetter).
				Set("attempt_count = 3").Set("last_error_code = ?", code).Set("updated_at = ?", clock.Now()).
				Where("id = ?", res.JobID).Exec(ctx)
			require.NoError(t, err)
			require.NoError(t, NewInboxOrFail(t, tdb).MarkProcessed(ctx, res.EventID))
			clock.Advance(time.Hour)
		}

		all, err := q.ListDeadLetters(ctx, DeadLetterFilter{})
		require.NoError(t, err)
		require.Len(t, all, 4)
		require.Equal(t, jobs[3], all[0].ID, "newest first")
		page, err := q.ListDeadLetters(ctx, DeadLetterFilter{Page: Page{Limit: 2, BeforeID: all[1].ID}})
		require.NoError(t, err)
		require.Equal(t, []int64{jobs[1], jobs[0]}, []int64{page[0].ID, page[1].ID})
		byCode, err := q.ListDeadLetters(ctx, DeadLetterFilter{ErrorCode: "http_500"})
		require.NoError(t, err)
		require.Len(t, byCode, 2)
		byTime, err := q.ListDeadLetters(ctx, DeadLetterFilter{Since: newTestClock().Now().Add(time.Hour),
			Until: newTestClock().Now().Add(3 * time.Hour)})
		require.NoError(t, err)
		require.Len(t, byTime, 2)

		// Retry one: fresh attempts, history kept, inbox event unprocessed again.
		job, err := q.RetryDeadLetter(ctx, jobs[0])
		require.NoError(t, err)
		require.Equal(t, StatusPending, job.Status)
		require.Zero(t, job.Attempt)
		requireSameTime(t, clock.Now(), job.NextRetryAt)
		attempts, err := q.Attempts(ctx, jobs[0])
		require.NoError(t, err)
		require.Len(t, attempts, 1)
		unprocessed, err := NewInboxOrFail(t, tdb).ListUnprocessed(ctx, 10)
		require.NoError(t, err)
		require.Len(t, unprocessed, 1)
		_, err = q.RetryDeadLetter(ctx, jobs[0])
		require.ErrorIs(t, err, ErrNotFound, "no longer a dead letter")

		// Retry by filter: dry run counts, changes nothing.
		n, err := q.RetryDeadLetters(ctx, DeadLetterFilter{ErrorCode: "http_500"}, true)
		require.NoError(t, err)
		require.Equal(t, int64(2), n)
		require.Equal(t, 3, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'dead_letter'"))
		n, err = q.RetryDeadLetters(ctx, DeadLetterFilter{ErrorCode: "http_500"}, false)
		require.NoError(t, err)
		require.Equal(t, int64(2), n)
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'dead_letter'"))

		// Discard the last one, with a reason.
		require.Error(t, q.DiscardDeadLetter(ctx, jobs[2], " "))
		require.NoError(t, q.DiscardDeadLetter(ctx, jobs[2], "customer deleted upstream"))
		job, err = q.Get(ctx, jobs[2])
		require.NoError(t, err)
		require.Equal(t, StatusCompleted, job.Status)
		require.Equal(t, OutcomeDiscarded, *job.Outcome)
		require.Equal(t, "customer deleted upstream", *job.OutcomeDetail)
		require.ErrorIs(t, q.DiscardDeadLetter(ctx, jobs[2], "again"), ErrNotFound)
	})
}
