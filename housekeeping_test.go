package tds

import (
	"context"
	neturl "net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHousekeepingDeletesOnlyOldFinishedRows(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		old := e.ingest(t, "1", "old")
		dead := e.ingest(t, "2", "dead")
		w, err := NewWorker(e.db, &flaky{}, WithClock(e.clock.Now), WithRetention(24*time.Hour))
		require.NoError(t, err)
		jobs, err := w.claim(ctx, 10)
		require.NoError(t, err)
		require.Len(t, jobs, 2)
		res, redo, _, err := w.runBatch(ctx, nil, jobs[:1])
		require.NoError(t, err)
		require.Empty(t, redo)
		require.Len(t, res, 1)
		w.fail(nil, jobs[1], Permanent(context.Canceled), e.clock.Now())
		require.Equal(t, StatusDeadLetter, e.job(t, dead).Status)
		e.clock.Advance(25 * time.Hour)
		fresh := e.ingest(t, "3", "fresh")

		require.NoError(t, w.runHousekeeping(ctx))
		_, err = e.q.Get(ctx, old)
		require.ErrorIs(t, err, ErrNotFound)
		require.Equal(t, StatusDeadLetter, e.job(t, dead).Status, "dead letters stay")
		require.Equal(t, StatusPending, e.job(t, fresh).Status)
		require.Equal(t, 2, count(t, e.db, "SELECT COUNT(*) FROM tds_inbox_events"))
	})
}

func TestLeaderTasksRunOnOneWorker(t *testing.T) {
	eachDBAndPooler(t, func(t *testing.T, tdb *testDB) {
		e := newWorkerEnv(t, tdb)
		var mu sync.Mutex
		runs := map[string]int{}
		task := func(name string) Option {
			return WithLeaderTask(LeaderTask{Name: "count", Interval: 5 * time.Millisecond, Run: func(context.Context) error {
				mu.Lock()
				defer mu.Unlock()
				runs[name]++
				return nil
			}})
		}
		count := func(name string) int {
			mu.Lock()
			defer mu.Unlock()
			return runs[name]
		}
		stopA := e.start(t, &flaky{}, task("a"), WithLeaderLease(1500*time.Millisecond))
		require.Eventually(t, func() bool { return count("a") > 0 }, 10*time.Second, 5*time.Millisecond)
		e.start(t, &flaky{}, task("b"), WithLeaderLease(1500*time.Millisecond))
		// While a leads, b's turns come and go without running the task.
		before := count("a")
		require.Eventually(t, func() bool { return count("a") >= before+20 }, 10*time.Second, 5*time.Millisecond)
		require.Zero(t, count("b"), "only the leader runs leader tasks")
		// a stops and gives the lead up: b takes it at its next renewal,
		// a third of the lease, not when the lease expires.
		stopA()
		require.Eventually(t, func() bool { return count("b") > 0 }, 10*time.Second, 5*time.Millisecond)
	})
}

func TestWorkerWakesOnEnqueue(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		id := e.ingest(t, "1", "Pump")
		s := &flaky{n: 1, err: Permanent(context.Canceled)}
		// Polling once an hour: only a wake-up can make it sync in time.
		e.start(t, s, WithPollInterval(time.Hour))
		e.waitStatus(t, id, StatusDeadLetter)
		require.Eventually(t, func() bool {
			return count(t, e.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'processing'") == 0
		}, 5*time.Second, 5*time.Millisecond)
		_, err := e.q.RetryDeadLetter(ctx, id)
		require.NoError(t, err)
		e.waitStatus(t, id, StatusCompleted)
	})
}

// Through a transaction pooler a Worker either polls (WithPollOnly) or
// listens on a direct connection (WithListenDB); either way a job enqueued
// while it idles is synced. The first job is synced by the Worker's first
// claim; the second only by a wake-up (a poll an hour away) or a poll.
func TestWorkerBehindPooler(t *testing.T) {
	for _, mode := range []string{"poll-only", "listen-db"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			tdb := openTestDB(t, "pgbouncer")
			e := newWorkerEnv(t, tdb)
			opts := []Option{WithPollOnly()}
			if mode == "listen-db" {
				listen, err := Open(t.Context(), directURL(t, tdb.url))
				require.NoError(t, err)
				t.Cleanup(func() { _ = listen.Close() })
				opts = []Option{WithPollInterval(time.Hour), WithListenDB(listen)}
			}
			// newWorkerEnv's Processor sends NOTIFY through the pooler,
			// which a direct LISTEN receives.
			e.start(t, &flaky{}, opts...)
			first := e.ingest(t, "1", "Pump")
			e.waitStatus(t, first, StatusCompleted)
			second := e.ingest(t, "2", "Valve")
			e.waitStatus(t, second, StatusCompleted)
		})
	}
}

// directURL is url (through PgBouncer) with the host and port of the test
// PostgreSQL server itself.
func directURL(t *testing.T, url string) string {
	t.Helper()
	direct, err := neturl.Parse(TestKit.PostgresURL(t, true))
	require.NoError(t, err)
	u, err := neturl.Parse(url)
	require.NoError(t, err)
	u.Host = direct.Host
	return u.String()
}

// A completed job marks its inbox event processed without writing to it;
// every reader of the inbox sees the event processed at the job's
// completed_at, before and after DeleteCompleted removes the job.
func TestInboxEventProcessedByItsCompletedJob(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		in, err := NewInbox(e.db, WithClock(e.clock.Now))
		require.NoError(t, err)
		done, open := e.ingest(t, "1", "done"), e.ingest(t, "2", "open")
		w, err := NewWorker(e.db, &flaky{}, WithClock(e.clock.Now), WithRetention(24*time.Hour))
		require.NoError(t, err)
		jobs, err := w.claim(ctx, 1)
		require.NoError(t, err)
		require.Len(t, jobs, 1)
		require.Equal(t, done, jobs[0].ID)
		_, redo, _, err := w.runBatch(ctx, nil, jobs)
		require.NoError(t, err)
		require.Empty(t, redo)
		job := e.job(t, done)
		require.Equal(t, StatusCompleted, job.Status)
		ev, openEv := job.InboxEventID, e.job(t, open).InboxEventID
		require.Equal(t, 2, count(t, e.db, "SELECT COUNT(*) FROM tds_inbox_events WHERE processed_at IS NULL"),
			"completing a job does not write its inbox event")

		requireProcessed := func(t *testing.T) {
			t.Helper()
			got, err := in.Get(ctx, ev)
			require.NoError(t, err)
			require.NotNil(t, got.ProcessedAt)
			requireSameTime(t, *job.CompletedAt, *got.ProcessedAt)
			got, err = in.Get(ctx, openEv)
			require.NoError(t, err)
			require.Nil(t, got.ProcessedAt)

			yes, no := true, false
			list, err := in.List(ctx, InboxFilter{Processed: &yes})
			require.NoError(t, err)
			require.Len(t, list, 1)
			require.Equal(t, ev, list[0].ID)
			requireSameTime(t, *job.CompletedAt, *list[0].ProcessedAt)
			list, err = in.List(ctx, InboxFilter{Processed: &no})
			require.NoError(t, err)
			require.Len(t, list, 1)
			require.Equal(t, openEv, list[0].ID)
			list, err = in.ListUnprocessed(ctx, 10)
			require.NoError(t, err)
			require.Len(t, list, 1)
			require.Equal(t, openEv, list[0].ID)
			st, err := in.Stats(ctx)
			require.NoError(t, err)
			require.Equal(t, int64(1), st.Unprocessed)
		}
		requireProcessed(t)

		// Not yet past retention: nothing goes.
		n, err := deleteProcessedEvents(ctx, mustStore(t, tdb.db), e.db, e.clock.Now())
		require.NoError(t, err)
		require.Zero(t, n)

		// Deleting the completed job writes its completed_at into the event.
		e.clock.Advance(time.Hour)
		n, err = e.q.DeleteCompleted(ctx, e.clock.Now())
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
		_, err = e.q.Get(ctx, done)
		require.ErrorIs(t, err, ErrNotFound)
		require.Equal(t, 1, count(t, e.db, "SELECT COUNT(*) FROM tds_inbox_events WHERE processed_at IS NULL"))
		requireProcessed(t)
	})
}

// Housekeeping deletes an event whose completed job is past retention even
// when processed_at was never written.
func TestHousekeepingDeletesEventsOfOldCompletedJobs(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		old := e.ingest(t, "1", "old")
		w, err := NewWorker(e.db, &flaky{}, WithClock(e.clock.Now), WithRetention(24*time.Hour))
		require.NoError(t, err)
		jobs, err := w.claim(ctx, 10)
		require.NoError(t, err)
		_, _, _, err = w.runBatch(ctx, nil, jobs)
		require.NoError(t, err)
		e.clock.Advance(2 * time.Hour)
		recent := e.ingest(t, "2", "recent")
		jobs, err = w.claim(ctx, 10)
		require.NoError(t, err)
		_, _, _, err = w.runBatch(ctx, nil, jobs)
		require.NoError(t, err)
		require.Equal(t, StatusCompleted, e.job(t, recent).Status)

		n, err := deleteProcessedEvents(ctx, mustStore(t, tdb.db), e.db, e.clock.Now().Add(-time.Hour))
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
		_, err = e.q.Get(ctx, old)
		require.ErrorIs(t, err, ErrNotFound, "the job goes with its event")
		require.Equal(t, StatusCompleted, e.job(t, recent).Status)
		require.Equal(t, 1, count(t, e.db, "SELECT COUNT(*) FROM tds_inbox_events"))
	})
}
