package tdstest

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/tdscore/tds"
)

// Report is what [Drain] saw become of the jobs: the ids of the jobs that
// were waiting when it started or that it saw waiting while it ran, by how
// they ended, in ascending order, and the Worker's counters, which count
// every job.
type Report struct {
	// Synced and Superseded are the jobs completed with
	// [tds.OutcomeSynced] and [tds.OutcomeSuperseded].
	Synced, Superseded []int64
	// DeadLettered are the jobs dead-lettered, Discarded those discarded
	// ([tds.Queue.DiscardDeadLetter]) meanwhile.
	DeadLettered, Discarded []int64
	// Waiting are the jobs still waiting when Drain stopped: retries due
	// later, and jobs held behind them ([tds.Job.Blocked]). Empty with
	// [WaitForRetries].
	Waiting []int64
	// Stats are the Worker's counters for the run (zero when the queue was
	// empty and the Worker did not run); Stats.Retried counts the failed
	// attempts scheduled for a retry.
	Stats tds.WorkerStats
}

// String sums the report up for a test's log.
func (r Report) String() string {
	return fmt.Sprintf("synced %v, superseded %v, dead-lettered %v, discarded %v, waiting %v; %d failed attempts retried",
		r.Synced, r.Superseded, r.DeadLettered, r.Discarded, r.Waiting, r.Stats.Retried)
}

// DrainOption changes when [Drain] stops.
type DrainOption func(*drainSettings)

type drainSettings struct {
	waitRetries bool
	timeout     time.Duration
	now         func() time.Time
}

// DefaultDrainTimeout is how long [Drain] waits for the queue to empty
// before it fails the test.
const DefaultDrainTimeout = 30 * time.Second

// WaitForRetries makes [Drain] wait until no job waits at all, retries
// scheduled later included, so that every job ends synced, superseded or
// dead-lettered. Give the Worker a short retry policy
// ([tds.WithRetryPolicy]) with it.
func WaitForRetries() DrainOption {
	return func(s *drainSettings) { s.waitRetries = true }
}

// DrainTimeout sets how long [Drain] waits before it fails the test.
// Defaults to [DefaultDrainTimeout].
func DrainTimeout(d time.Duration) DrainOption {
	return func(s *drainSettings) { s.timeout = d }
}

// DrainClock sets the clock by which [Drain] tells a retry due now from
// one due later: give the one given to the Worker with [tds.WithClock].
// Defaults to time.Now.
func DrainClock(now func() time.Time) DrainOption {
	return func(s *drainSettings) { s.now = now }
}

// listLimit bounds the jobs Drain lists at a time.
const listLimit = 100_000

// Drain runs w, a Worker on db, until no job is left for it to run: none
// is being processed, and none waiting is due (a pending job, or a retry
// whose time has come) and free to run (not held behind an earlier job of
// its entity). Jobs that only wait for a retry due later are left waiting,
// unless [WaitForRetries] is given. It then stops w and reports what
// became of the jobs. Run must not be running already; Drain may be called
// again on the same Worker. It fails the test when w cannot start or the
// queue does not empty within the timeout ([DrainTimeout]).
//
// Drain tells when to stop from one consistent read of the queue (a
// repeatable-read transaction on PostgreSQL), so a job the Worker hands
// from one state to the next is never missed.
func Drain(t testing.TB, db *bun.DB, w *tds.Worker, opts ...DrainOption) Report {
	t.Helper()
	set := drainSettings{timeout: DefaultDrainTimeout, now: time.Now}
	for _, o := range opts {
		o(&set)
	}
	q, err := tds.NewQueue(db)
	if err != nil {
		t.Fatalf("tdstest: Drain: %v", err)
	}
	seen := map[int64]bool{}
	snapshot := func(ctx context.Context) (done bool, waiting []tds.Job, err error) {
		var txOpts *sql.TxOptions
		if db.Dialect().Name() == dialect.PG {
			txOpts = &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
		}
		err = db.RunInTx(ctx, txOpts, func(ctx context.Context, tx bun.Tx) error {
			qtx := q.WithTx(tx)
			var err error
			if waiting, err = qtx.ListPending(ctx, listLimit); err != nil {
				return err
			}
			stats, err := qtx.Stats(ctx)
			if err != nil {
				return err
			}
			done = stats.ByStatus[tds.StatusProcessing] == 0
			for _, j := range waiting {
				seen[j.ID] = true
				if set.waitRetries || (!j.Blocked && !j.NextRetryAt.After(set.now())) {
					done = false
				}
			}
			return nil
		})
		return done, waiting, err
	}

	// The jobs waiting before the Worker starts, so that none it claims at
	// once goes unseen.
	var r Report
	ctx := t.Context()
	done, waiting, err := snapshot(ctx)
	if err != nil {
		t.Fatalf("tdstest: Drain: reading the queue: %v", err)
	}
	if !done {
		runCtx, stop := context.WithCancel(ctx)
		ran := make(chan error, 1)
		go func() { ran <- w.Run(runCtx) }()
		tick := time.NewTicker(10 * time.Millisecond)
		deadline := time.NewTimer(set.timeout)
		fail := func(format string, args ...any) {
			stop()
			<-ran
			tick.Stop()
			deadline.Stop()
			t.Fatalf(format, args...)
		}
		for !done {
			select {
			case err := <-ran:
				ran <- err // for fail
				fail("tdstest: Drain: the Worker stopped before the queue emptied: %v", err)
			case <-deadline.C:
				fail("tdstest: Drain: the queue did not empty within %s; waiting: %d jobs", set.timeout, len(waiting))
			case <-tick.C:
				if done, waiting, err = snapshot(ctx); err != nil {
					fail("tdstest: Drain: reading the queue: %v", err)
				}
			}
		}
		tick.Stop()
		deadline.Stop()
		stop()
		if err := <-ran; err != nil {
			t.Fatalf("tdstest: Drain: the Worker: %v", err)
		}
		r.Stats = w.Stats()
	}

	left := map[int64]bool{}
	for _, j := range waiting {
		left[j.ID] = true
	}
	for id := range seen {
		if left[id] {
			r.Waiting = append(r.Waiting, id)
			continue
		}
		j, err := q.Get(context.WithoutCancel(ctx), id)
		if err != nil {
			t.Fatalf("tdstest: Drain: reading job %d: %v", id, err)
		}
		switch {
		case j.Status == tds.StatusDeadLetter:
			r.DeadLettered = append(r.DeadLettered, id)
		case j.Status != tds.StatusCompleted || j.Outcome == nil:
			r.Waiting = append(r.Waiting, id) // not reachable while only Drain's Worker runs
		case *j.Outcome == tds.OutcomeSuperseded:
			r.Superseded = append(r.Superseded, id)
		case *j.Outcome == tds.OutcomeDiscarded:
			r.Discarded = append(r.Discarded, id)
		default:
			r.Synced = append(r.Synced, id)
		}
	}
	for _, ids := range []*[]int64{&r.Synced, &r.Superseded, &r.DeadLettered, &r.Discarded, &r.Waiting} {
		slices.Sort(*ids)
	}
	return r
}
