package tdstest_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdstest"
)

// clock is a settable clock for the Worker and Drain.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestDrain(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *bun.DB) {
		ctx := t.Context()
		require.NoError(t, tds.MigrateMirror(ctx, db, tds.ZohoRegistry()))
		p, err := tds.NewProcessor(db)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, p.Close()) })
		var ids []int64
		for _, ev := range []tds.Event{
			product("p1", "New", 1),
			product("p1", "Old", 0), // older: superseded
			product("p2", "Two", 0),
			product("bad", "Bad", 0),
			product("flaky", "Flaky", 0),
		} {
			res, err := p.Process(ctx, &ev)
			require.NoError(t, err)
			require.True(t, res.Queued)
			ids = append(ids, res.EventID)
		}
		q, err := tds.NewQueue(db)
		require.NoError(t, err)
		jobID := func(i int) int64 {
			j, err := q.GetByInboxEvent(ctx, ids[i])
			require.NoError(t, err)
			return j.ID
		}

		mirror, err := tds.NewMirrorSyncer()
		require.NoError(t, err)
		syncer := tds.SyncFunc(func(ctx context.Context, tx bun.Tx, job *tds.SyncJob) error {
			switch {
			case job.EntityID == "bad":
				return tds.Permanent(errors.New("no retry fixes this"))
			case job.EntityID == "flaky" && job.Attempt == 1:
				return errors.New("try again")
			}
			return mirror.Sync(ctx, tx, job)
		})
		clk := &clock{now: time.Now().UTC()}
		w, err := tds.NewWorker(db, syncer, tds.WithClock(clk.Now), tds.WithPollInterval(10*time.Millisecond),
			tds.WithLogger(quiet))
		require.NoError(t, err)

		// The flaky job's retry is due later: Drain stops without it.
		r := tdstest.Drain(t, db, w, tdstest.DrainClock(clk.Now))
		t.Log(r)
		require.Equal(t, []int64{jobID(0), jobID(2)}, r.Synced)
		require.Equal(t, []int64{jobID(1)}, r.Superseded)
		require.Equal(t, []int64{jobID(3)}, r.DeadLettered)
		require.Empty(t, r.Discarded)
		require.Equal(t, []int64{jobID(4)}, r.Waiting)
		require.EqualValues(t, 1, r.Stats.Retried)
		require.EqualValues(t, 3, r.Stats.Completed)

		// Once it is due, the next Drain runs it.
		clk.Advance(time.Hour)
		r = tdstest.Drain(t, db, w, tdstest.DrainClock(clk.Now), tdstest.WaitForRetries())
		require.Equal(t, []int64{jobID(4)}, r.Synced)
		require.Empty(t, r.Waiting)

		// An empty queue: Drain returns at once, without running the Worker.
		r = tdstest.Drain(t, db, w)
		require.Empty(t, r.Synced)
		require.Zero(t, r.Stats.Claims)
	})
}
