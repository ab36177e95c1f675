package tds

import (
	"context"
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
		res, redo, err := w.runBatch(ctx, nil, jobs[:1])
		require.NoError(t, err)
		require.Empty(t, redo)
		require.Len(t, res, 1)
		w.fail(jobs[1], Permanent(context.Canceled), e.clock.Now())
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

func TestHousekeepingHasOneLeader(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := openTestDB(t, "postgres")
	a, err := NewWorker(tdb.db, &flaky{})
	require.NoError(t, err)
	b, err := NewWorker(tdb.db, &flaky{})
	require.NoError(t, err)
	ca := a.lead(ctx, nil)
	require.NotNil(t, ca)
	require.Nil(t, b.lead(ctx, nil), "the lock is taken")
	require.Equal(t, ca, a.lead(ctx, ca), "the leader stays leader")
	require.NoError(t, ca.Close()) // the leader's session ends
	cb := b.lead(ctx, nil)
	require.NotNil(t, cb, "the role passes on")
	require.NoError(t, cb.Close())
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
