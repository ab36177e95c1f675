package tds

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
)

// Defaults of housekeeping.
const (
	// DefaultHousekeepingInterval is how often the leading Worker rescues
	// jobs with expired leases and deletes old rows.
	DefaultHousekeepingInterval = 30 * time.Second
	// DefaultRetention is how long completed jobs and processed inbox
	// events are kept.
	DefaultRetention = 7 * 24 * time.Hour
	// DefaultLeaderLease is how long the lead of housekeeping and the
	// leader tasks stays with a Worker that stopped renewing it (it died
	// or lost the database) before another Worker takes it over.
	DefaultLeaderLease = 15 * time.Second
)

// WithLeaderLease sets how long the lead of housekeeping and the leader
// tasks stays with a Worker that stopped renewing it before another takes
// it over. The leader renews it every third of it, and gives the lead up
// when a renewal fails, so that two Workers never act as leader at once.
// Applies to [NewWorker]. Defaults to [DefaultLeaderLease].
func WithLeaderLease(d time.Duration) Option {
	return newOption("WithLeaderLease", forWorker, func(c *config) error {
		if d < 300*time.Millisecond {
			return optErr("WithLeaderLease", "must be >= 300ms, got %s", d)
		}
		c.worker.leaderLease = d
		return nil
	})
}

// WithHousekeepingInterval sets how often housekeeping (lease rescue,
// retention cleanup) runs.
// Applies to [NewWorker]. Defaults to [DefaultHousekeepingInterval].
func WithHousekeepingInterval(d time.Duration) Option {
	return newOption("WithHousekeepingInterval", forWorker, func(c *config) error {
		if d <= 0 {
			return optErr("WithHousekeepingInterval", "must be > 0, got %s", d)
		}
		c.worker.housekeepingInterval = d
		return nil
	})
}

// WithRetention sets how long completed jobs and processed inbox events
// are kept before housekeeping deletes them. Dead letters and unprocessed
// events are never deleted.
// Applies to [NewWorker]. Defaults to [DefaultRetention].
func WithRetention(d time.Duration) Option {
	return newOption("WithRetention", forWorker, func(c *config) error {
		if d <= 0 {
			return optErr("WithRetention", "must be > 0, got %s", d)
		}
		c.worker.retention = d
		return nil
	})
}

// LeaderTask is periodic work that one process at a time must do: the
// Worker that leads housekeeping runs it every Interval, beside its own
// housekeeping, and hands it on with the lead when it stops or dies.
// Alert evaluation (package tdsalert) and the reconciliation schedule
// (package tdsreconcile) are such tasks.
type LeaderTask struct {
	// Name names the task in logs.
	Name string
	// Interval is how often the task runs while this process leads.
	Interval time.Duration
	// Run does one round of the task. It must return when ctx is done; an
	// error is logged and the task runs again at its next tick. Tasks run
	// one after the other in one goroutine, so a round should be short, or
	// start its long work in the background.
	Run func(ctx context.Context) error
}

// WithLeaderTask adds a task the [Worker] runs while it leads housekeeping
// (see [LeaderTask]); every Worker of a deployment should be given the
// same tasks, so that whichever leads runs them. Given several times,
// every task runs, in the order given, after the Worker's own
// housekeeping.
// Applies to [NewWorker]. Defaults to none.
func WithLeaderTask(t LeaderTask) Option {
	return newOption("WithLeaderTask", forWorker, func(c *config) error {
		switch {
		case t.Name == "":
			return optErr("WithLeaderTask", "task has no name")
		case t.Interval <= 0:
			return optErr("WithLeaderTask", "task %q: interval must be > 0, got %s", t.Name, t.Interval)
		case t.Run == nil:
			return optErr("WithLeaderTask", "task %q has no Run function", t.Name)
		}
		c.worker.tasks = append(c.worker.tasks, t)
		return nil
	})
}

// housekeep runs the leader tasks until ctx is done, each at its interval,
// while this Worker leads: one Worker among all that share the database,
// elected through a lease row (see election). A Worker that takes the lead
// runs every task at once; one that loses it has its running task's
// context cancelled.
func (w *Worker) housekeep(ctx context.Context) {
	e := newElection(w.st.NewLeader(w.db, leaderHolder(w.ws.workerID), w.ws.leaderLease), w.ws.leaderLease, w.log)
	var wg sync.WaitGroup
	wg.Go(func() { e.run(ctx) })
	defer wg.Wait()

	tasks := append([]LeaderTask{{Name: "housekeeping", Interval: w.ws.housekeepingInterval, Run: w.runHousekeeping}},
		w.ws.tasks...)
	next := make([]time.Time, len(tasks))
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		term := e.current()
		if term == nil {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-e.gained:
			clear(next) // a new leader runs every task at once
			term = e.current()
		case <-timer.C:
		}
		if term == nil || term.Err() != nil {
			continue
		}
		now := time.Now()
		for i, t := range tasks {
			if next[i].After(now) || term.Err() != nil {
				continue
			}
			next[i] = now.Add(t.Interval)
			if err := t.Run(term); err != nil && term.Err() == nil {
				w.log.Error("tds: leader task failed", "task", t.Name, "err", err)
			}
		}
		timer.Reset(time.Until(slices.MinFunc(next, time.Time.Compare)))
	}
}

// leaderHolder names a Worker in tds_leader: its ID, unique among running
// Workers unless WithWorkerID gave two the same, and a suffix of its own.
func leaderHolder(workerID string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return workerID + "/" + hex.EncodeToString(b)
}

// election keeps a Worker's part in the lead: it renews the lease every
// third of its length and reports each term it leads as a context,
// cancelled when a renewal fails or the lease is given up. A renewal has a
// third of the lease to answer, so a Worker gives the lead up before its
// lease can expire and another take it.
type election struct {
	leader store.Leader
	ttl    time.Duration
	log    *slog.Logger
	gained chan struct{} // a term began

	mu     sync.Mutex
	term   context.Context // nil while not leading
	cancel context.CancelFunc
}

func newElection(l store.Leader, ttl time.Duration, log *slog.Logger) *election {
	return &election{leader: l, ttl: ttl, log: log, gained: make(chan struct{}, 1)}
}

// current returns the context of the term this Worker leads, or nil.
func (e *election) current() context.Context {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.term
}

// run takes or renews the lead until ctx is done, then gives it up.
func (e *election) run(ctx context.Context) {
	defer func() {
		e.set(ctx, false)
		// A fresh context: the lead must go even though ctx is done, or
		// the others wait for the lease to expire.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.ttl/3)
		defer cancel()
		if err := e.leader.Release(rctx); err != nil {
			e.log.Warn("tds: giving the lead up failed; another Worker takes it when the lease expires", "err", err)
		}
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, e.ttl/3)
		ok, err := e.leader.Lead(lctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && !failing:
			e.log.Warn("tds: renewing the lead failed; not leading until it succeeds", "err", err)
		case err == nil && failing:
			e.log.Info("tds: the lead can be renewed again")
		}
		failing = err != nil
		e.set(ctx, ok)
		t.Reset(e.ttl / 3)
	}
}

// set starts or ends a term.
func (e *election) set(ctx context.Context, leading bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case leading && e.term == nil:
		e.term, e.cancel = context.WithCancel(ctx)
		e.log.Info("tds: leading housekeeping and the leader tasks")
		select {
		case e.gained <- struct{}{}:
		default:
		}
	case !leading && e.term != nil:
		e.cancel()
		e.term, e.cancel = nil, nil
		e.log.Info("tds: no longer leading housekeeping and the leader tasks")
	}
}

// runHousekeeping rescues expired leases, repairs entities without a head
// and deletes rows past retention.
func (w *Worker) runHousekeeping(ctx context.Context) error {
	if _, err := w.rescue(ctx); err != nil {
		return err
	}
	if _, err := w.repairHeads(ctx); err != nil {
		return err
	}
	cutoff := w.now().Add(-w.ws.retention)
	q := newQueue(w.db, w.st, w.cfg)
	if _, err := q.DeleteCompleted(ctx, cutoff); err != nil {
		return err
	}
	_, err := deleteProcessedEvents(ctx, w.st, w.db, cutoff)
	return err
}

// leaseExpiredMsg is the error recorded for an attempt whose lease expired.
const leaseExpiredMsg = "lease expired: the worker stopped renewing it (it crashed or lost the database)"

// rescue puts jobs whose lease expired back in the queue, or dead-letters
// them when they have no attempts left. The lost attempt is recorded with
// code [CodeLeaseExpired]. A worker still holding such a job cannot
// complete it afterwards: completion requires status processing and the
// worker's own lease.
func (w *Worker) rescue(ctx context.Context) (int, error) {
	rescued, err := w.st.RescueExpired(ctx, w.db, w.now(), leaseExpiredMsg, CodeLeaseExpired)
	if err != nil {
		return 0, wrapDBErr("rescuing expired leases", err)
	}
	w.stats.rescued.Add(int64(len(rescued)))
	for _, j := range rescued {
		w.log.Warn("tds: rescued a job whose lease expired", "job", j.ID, "holder", deref(j.LeasedBy), "status", j.Status)
	}
	return len(rescued), nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// deleteProcessedEvents deletes inbox events processed before cutoff, in
// batches, keeping any whose job is not completed (a dead letter's event
// is processed too, and deleting it would delete the dead letter). An
// event without processed_at was processed when its job completed;
// deleting the event deletes the job.
func deleteProcessedEvents(ctx context.Context, st store.Store, db bun.IDB, cutoff time.Time) (int64, error) {
	var total int64
	for {
		n, err := st.DeleteProcessedEvents(ctx, db, dbTime(cutoff), cleanupBatch)
		total += n
		if err != nil {
			return total, wrapDBErr("deleting processed inbox events", err)
		}
		if n < cleanupBatch {
			return total, nil
		}
	}
}

// repairHeads gives a head to every entity whose jobs are all blocked.
// While the rules of per-entity order hold there is none: rows changed or
// deleted by hand can make one, and its jobs would wait forever. It
// returns how many jobs it unblocked.
func (w *Worker) repairHeads(ctx context.Context) (int64, error) {
	n, err := w.st.RepairHeads(ctx, w.db, w.now())
	if err != nil {
		return 0, wrapDBErr("unblocking entities without a head", err)
	}
	if n > 0 {
		w.log.Warn("tds: unblocked jobs whose entity had no head (rows changed by hand?)", "jobs", n)
	}
	return n, nil
}
