package tds

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/notify"
	"github.com/tdscore/tds/internal/record"
	"github.com/tdscore/tds/internal/store"
)

// Defaults of the worker options.
const (
	// DefaultConcurrency is how many batches a Worker runs at once.
	DefaultConcurrency = 4
	// DefaultBatchSize is the most jobs a Worker runs in one transaction.
	DefaultBatchSize = 100
	// DefaultPollInterval is how often an idle Worker looks for work when
	// no wake-up arrives.
	DefaultPollInterval = time.Second
	// DefaultPollOnlyInterval is how often an idle Worker looks for work
	// under [WithPollOnly], where no wake-up arrives: a job waits half of
	// it on average. An idle Worker then costs its database ten claim
	// queries a second, each an index probe that finds nothing.
	DefaultPollOnlyInterval = 100 * time.Millisecond
	// DefaultLeaseDuration is how long a claimed job stays with its worker
	// without a heartbeat; the worker renews it every third of it.
	DefaultLeaseDuration = time.Minute
	// DefaultShutdownTimeout is how long a stopping Worker lets in-flight
	// syncs finish before cancelling them and handing their jobs back.
	DefaultShutdownTimeout = 30 * time.Second
)

// workerSettings holds the options read by NewWorker, including those of
// the housekeeping a Worker runs.
type workerSettings struct {
	concurrency          int
	batchSize            int
	pollInterval         time.Duration
	leaseDuration        time.Duration
	shutdownTimeout      time.Duration
	housekeepingInterval time.Duration
	retention            time.Duration
	retryPolicy          RetryPolicy
	workerID             string
	leaderLease          time.Duration
	pollOnly             bool
	listenDB             *bun.DB
	observers            []func(JobResult)
	tasks                []LeaderTask
}

func (s *workerSettings) withDefaults() workerSettings {
	out := *s
	if out.concurrency == 0 {
		out.concurrency = DefaultConcurrency
	}
	if out.batchSize == 0 {
		out.batchSize = DefaultBatchSize
	}
	if out.pollInterval == 0 {
		out.pollInterval = DefaultPollInterval
		if out.pollOnly {
			out.pollInterval = DefaultPollOnlyInterval
		}
	}
	if out.leaderLease == 0 {
		out.leaderLease = DefaultLeaderLease
	}
	if out.leaseDuration == 0 {
		out.leaseDuration = DefaultLeaseDuration
	}
	if out.shutdownTimeout == 0 {
		out.shutdownTimeout = DefaultShutdownTimeout
	}
	if out.housekeepingInterval == 0 {
		out.housekeepingInterval = DefaultHousekeepingInterval
	}
	if out.retention == 0 {
		out.retention = DefaultRetention
	}
	if out.retryPolicy == nil {
		out.retryPolicy = DefaultRetryPolicy()
	}
	if out.workerID == "" {
		out.workerID = record.ProcessID()
	}
	return out
}

// WithConcurrency sets how many batches a Worker runs at once, each in a
// transaction and on a connection of its own (on SQLite, whose pool has one
// connection, they take turns).
// Applies to [NewWorker]. Defaults to [DefaultConcurrency].
func WithConcurrency(n int) Option {
	return newOption("WithConcurrency", forWorker, func(c *config) error {
		if n < 1 {
			return optErr("WithConcurrency", "must be >= 1, got %d", n)
		}
		c.worker.concurrency = n
		return nil
	})
}

// WithBatchSize sets the most jobs a Worker runs in one transaction: the
// jobs of a batch are synced one after the other, each in a savepoint of
// its own, and complete with one commit. Larger batches mean fewer commits
// (each a disk flush on PostgreSQL) and more throughput; but a Syncer that
// runs long keeps the rest of its batch waiting, and none of the batch's
// effects is visible before the batch commits. Size 1 is one transaction
// per job. When few jobs wait, a claim spreads them over the free batches,
// so a light load runs in small batches anyway.
// Applies to [NewWorker]. Defaults to [DefaultBatchSize].
func WithBatchSize(n int) Option {
	return newOption("WithBatchSize", forWorker, func(c *config) error {
		if n < 1 {
			return optErr("WithBatchSize", "must be >= 1, got %d", n)
		}
		c.worker.batchSize = n
		return nil
	})
}

// WithPollInterval sets how often an idle Worker looks for work when no
// wake-up arrives.
// Applies to [NewWorker]. Defaults to [DefaultPollInterval], or to
// [DefaultPollOnlyInterval] under [WithPollOnly].
func WithPollInterval(d time.Duration) Option {
	return newOption("WithPollInterval", forWorker, func(c *config) error {
		if d <= 0 {
			return optErr("WithPollInterval", "must be > 0, got %s", d)
		}
		c.worker.pollInterval = d
		return nil
	})
}

// WithPollOnly turns wake-ups through PostgreSQL's LISTEN/NOTIFY off: a
// Worker finds work by polling (see [WithPollInterval]) and a Processor or
// Handler sends no NOTIFY. Use it behind a transaction pooler (PgBouncer in
// transaction mode, RDS Proxy, Supavisor), which loses notifications when
// it hands the listening server connection to another client; or give the
// Worker a direct connection for LISTEN alone with [WithListenDB]. On
// SQLite, where wake-ups never leave the process, it changes nothing.
// Applies to [NewProcessor], [NewWorker] and [NewHandler]. Defaults to off.
func WithPollOnly() Option {
	return newOption("WithPollOnly", forWorker|forProcessor|forHandler, func(c *config) error {
		c.pollOnly = true
		c.worker.pollOnly = true
		return nil
	})
}

// WithListenDB gives a Worker a second pool, connected to PostgreSQL
// directly rather than through a transaction pooler, that it uses only to
// LISTEN for wake-ups; everything else goes through the Worker's db. Its
// one connection stays open while the Worker runs. It does nothing under
// [WithPollOnly] or on SQLite.
// Applies to [NewWorker]. Defaults to listening on the Worker's db.
func WithListenDB(db *bun.DB) Option {
	return newOption("WithListenDB", forWorker, func(c *config) error {
		if db == nil {
			return optErr("WithListenDB", "db is nil")
		}
		c.worker.listenDB = db
		return nil
	})
}

// WithLeaseDuration sets how long a claimed job stays with its worker
// without a heartbeat. A job whose worker died is claimed again once its
// lease has expired.
// Applies to [NewWorker]. Defaults to [DefaultLeaseDuration].
func WithLeaseDuration(d time.Duration) Option {
	return newOption("WithLeaseDuration", forWorker, func(c *config) error {
		if d < 100*time.Millisecond {
			return optErr("WithLeaseDuration", "must be >= 100ms, got %s", d)
		}
		c.worker.leaseDuration = d
		return nil
	})
}

// WithShutdownTimeout sets how long a stopping Worker lets in-flight syncs
// finish before it cancels them and hands their jobs back to the queue.
// Applies to [NewWorker]. Defaults to [DefaultShutdownTimeout].
func WithShutdownTimeout(d time.Duration) Option {
	return newOption("WithShutdownTimeout", forWorker, func(c *config) error {
		if d < 0 {
			return optErr("WithShutdownTimeout", "must be >= 0, got %s", d)
		}
		if d == 0 {
			d = time.Nanosecond // cancel at once
		}
		c.worker.shutdownTimeout = d
		return nil
	})
}

// WithWorkerID sets the name a Worker records as the owner of the jobs it
// claims. It must be unique among running workers.
// Applies to [NewWorker]. Defaults to host:pid:random.
func WithWorkerID(id string) Option {
	return newOption("WithWorkerID", forWorker, func(c *config) error {
		if err := record.CheckKeyPart(id); err != nil {
			return optErr("WithWorkerID", "%v", err)
		}
		c.worker.workerID = id
		return nil
	})
}

// Worker claims jobs from the sync queue and hands each to a [Syncer]. Any
// number of Workers may run against one database, in one process or many;
// they share the queue safely and keep per-entity order between them.
//
// Per-entity order: the jobs of one entity (source, entity type, entity
// id) are synced one at a time, in the order their events were stored. A
// job whose entity has an unfinished job waits ([Job.Blocked]) until that
// job completes or is dead-lettered; a retried dead letter waits behind
// the job its entity is running, if any. Other entities' jobs are not held
// up.
type Worker struct {
	db      *bun.DB
	st      store.Store
	syncer  Syncer
	cfg     *config
	ws      workerSettings
	log     *slog.Logger
	running atomic.Bool
	stats   workerCounters
}

// NewWorker returns a Worker that syncs the jobs of db with s. opts are the
// options that apply to NewWorker; see [Option].
func NewWorker(db *bun.DB, s Syncer, opts ...Option) (*Worker, error) {
	if db == nil {
		return nil, errors.New("tds: NewWorker: db is nil")
	}
	if s == nil {
		return nil, errors.New("tds: NewWorker: syncer is nil")
	}
	st, err := store.For(db)
	if err != nil {
		return nil, err
	}
	cfg, err := newConfig(forWorker, opts)
	if err != nil {
		return nil, err
	}
	ws := cfg.worker.withDefaults()
	// The hook opens each job's savepoint lazily (see batchRun).
	hooked := db.WithQueryHook(savepointHook{})
	return &Worker{db: hooked, st: st, syncer: s, cfg: cfg, ws: ws, log: cfg.logger.With("worker", ws.workerID)}, nil
}

// ID returns the name the Worker records as the owner of its jobs.
func (w *Worker) ID() string { return w.ws.workerID }

func (w *Worker) now() time.Time { return dbTime(w.cfg.now()) }

// Run claims and syncs jobs until ctx is cancelled, then shuts down
// gracefully: it stops claiming, lets in-flight syncs finish within the
// shutdown timeout, cancels the rest and hands their jobs straight back to
// the queue, and returns nil. It returns an error only when it cannot
// start (the database is unreachable, or Run is already running). Database
// errors while running are logged and retried.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("tds: Worker.Run: already running")
	}
	defer w.running.Store(false)
	w.stats.reset()
	if err := w.db.PingContext(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return wrapDBErr("starting worker", err)
	}
	// The connections the batches and the claims will take, opened and
	// warmed now rather than by the first jobs (measured: the first
	// webhooks after a start waited up to 0.5 s for them).
	warmCtx, cancelWarm := context.WithTimeout(ctx, warmTimeout)
	if err := w.st.Warm(warmCtx, w.db, w.ws.concurrency+1); err != nil {
		w.log.Debug("tds: warming the pool's connections", "err", err)
	}
	cancelWarm()

	wake := make(chan struct{}, 1)
	// In-process wake-ups from the Processors and stores on the same pool
	// (keyed by its dialect, which its transactions share), besides the
	// database's.
	local, stopLocal := notify.Default.Subscribe(w.db.Dialect())
	defer stopLocal()
	if !w.ws.pollOnly {
		listenDB := w.db
		if w.ws.listenDB != nil {
			listenDB = w.ws.listenDB
		}
		stopWake := w.st.Subscribe(ctx, listenDB, w.db, w.log, wake)
		defer stopWake()
	}

	var bg sync.WaitGroup
	bg.Go(func() { w.housekeep(ctx) })
	defer bg.Wait()

	// Syncs run under a context that survives ctx until the shutdown
	// timeout, so in-flight work can finish.
	syncCtx, cancelSyncs := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelSyncs(nil)

	var inflight sync.WaitGroup
	done := make(chan bool, w.ws.concurrency) // whether the batch freed jobs
	busy := 0
	claimNow := true
	timer := time.NewTimer(w.ws.pollInterval)
	defer timer.Stop()
	for ctx.Err() == nil {
		if claimNow && busy < w.ws.concurrency {
			free := w.ws.concurrency - busy
			want := free * w.ws.batchSize
			jobs, err := w.claim(ctx, want)
			switch {
			case err != nil && ctx.Err() == nil:
				w.log.Error("tds: claiming jobs", "err", err)
				claimNow = false
			case err == nil:
				for _, batch := range splitBatches(jobs, free) {
					busy++
					inflight.Go(func() {
						done <- w.processBatch(syncCtx, ctx.Done(), batch)
					})
				}
				// A full claim means more may be waiting.
				claimNow = len(jobs) == want
			}
			if claimNow && busy < w.ws.concurrency {
				continue
			}
		}
		timer.Reset(w.ws.pollInterval)
		select {
		case <-ctx.Done():
		case <-wake:
			claimNow = true
		case <-local:
			claimNow = true
		case freed := <-done:
			// A batch that handed an entity on to its next job, or did
			// not complete every job, may leave jobs to claim. One that
			// only completed its jobs does not: claimNow then stays as it
			// was (set while all slots were busy, it claims now).
			busy--
			claimNow = claimNow || freed
		case <-timer.C:
			claimNow = true
		}
	}

	w.drain(&inflight, cancelSyncs)
	return nil
}

// drain waits for the in-flight batches to finish, for at most the
// shutdown timeout; then it cancels their syncs, whose jobs go back to the
// queue, and waits for them to return.
func (w *Worker) drain(inflight *sync.WaitGroup, cancelSyncs context.CancelCauseFunc) {
	finished := make(chan struct{})
	go func() {
		inflight.Wait()
		close(finished)
	}()
	t := time.NewTimer(w.ws.shutdownTimeout)
	defer t.Stop()
	select {
	case <-finished:
	case <-t.C:
		w.log.Warn("tds: shutdown timeout: cancelling in-flight syncs", "timeout", w.ws.shutdownTimeout)
		cancelSyncs(errShutdown)
		<-finished
	}
}

// warmTimeout bounds the warm-up of Run's connections: while other users
// of the pool hold its connections, Run starts without them.
const warmTimeout = 2 * time.Second

var (
	errShutdown  = errors.New("tds: worker shutting down")
	errLeaseLost = store.ErrLeaseLost
)

// claim leases up to n jobs to w, in claim order: by priority, then id.
func (w *Worker) claim(ctx context.Context, n int) ([]*store.Job, error) {
	start := time.Now()
	now := w.now()
	jobs, err := w.st.Claim(ctx, w.db, w.ws.workerID, n, now, now.Add(w.ws.leaseDuration))
	w.stats.claims.Add(1)
	w.stats.claimNanos.Add(int64(time.Since(start)))
	if err != nil {
		return nil, wrapDBErr("claiming jobs", err)
	}
	w.stats.claimedJobs.Add(int64(len(jobs)))
	sort.Slice(jobs, func(i, j int) bool {
		if jobs[i].Priority != jobs[j].Priority {
			return jobs[i].Priority < jobs[j].Priority
		}
		return jobs[i].ID < jobs[j].ID
	})
	return jobs, nil
}

// splitBatches deals the claimed jobs (in claim order) into at most n
// batches of nearly equal size, keeping each batch in claim order.
func splitBatches(jobs []*store.Job, n int) [][]*store.Job {
	n = min(n, len(jobs))
	out := make([][]*store.Job, 0, n)
	for i := range n {
		lo, hi := i*len(jobs)/n, (i+1)*len(jobs)/n
		out = append(out, jobs[lo:hi])
	}
	return out
}
