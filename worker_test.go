package tds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
)

// workerEnv is what a worker test needs: a database, a frozen clock, a
// processor and a queue on both.
type workerEnv struct {
	tdb   *testDB
	db    *bun.DB
	clock *testClock
	p     *Processor
	q     *Queue
}

func newWorkerEnv(t *testing.T, tdb *testDB) *workerEnv {
	t.Helper()
	clock := newTestClock()
	p, err := NewProcessor(tdb.db, WithClock(clock.Now))
	require.NoError(t, err)
	q, err := NewQueue(tdb.db, WithClock(clock.Now))
	require.NoError(t, err)
	return &workerEnv{tdb: tdb, db: tdb.db, clock: clock, p: p, q: q}
}

// ingest stores and queues a product event and returns its job id.
func (e *workerEnv) ingest(t *testing.T, id, name string) int64 {
	t.Helper()
	res, err := e.p.Process(context.Background(), productEvent(id, name))
	require.NoError(t, err)
	require.True(t, res.Queued)
	return res.JobID
}

// start runs a Worker with fast test timings until the test ends or the
// returned stop is called; stop waits for Run to return and checks it
// returned nil.
func (e *workerEnv) start(t *testing.T, s Syncer, opts ...Option) (stop func()) {
	t.Helper()
	base := []Option{WithClock(e.clock.Now), WithLogger(slog.New(slog.DiscardHandler)), WithPollInterval(10 * time.Millisecond),
		WithHousekeepingInterval(20 * time.Millisecond), WithShutdownTimeout(5 * time.Second)}
	w, err := NewWorker(e.db, s, append(base, opts...)...)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Error("Worker.Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (e *workerEnv) job(t *testing.T, id int64) *Job {
	t.Helper()
	j, err := e.q.Get(context.Background(), id)
	require.NoError(t, err)
	return j
}

// waitJob polls until job id satisfies ok.
func (e *workerEnv) waitJob(t *testing.T, id int64, what string, ok func(*Job) bool) *Job {
	t.Helper()
	var last *Job
	require.Eventually(t, func() bool {
		last = e.job(t, id)
		return ok(last)
	}, 20*time.Second, 5*time.Millisecond, "job %d never became %s; last %+v", id, what, last)
	return last
}

func (e *workerEnv) waitStatus(t *testing.T, id int64, st Status) *Job {
	t.Helper()
	return e.waitJob(t, id, string(st), func(j *Job) bool { return j.Status == st })
}

// flaky fails its first n calls per job with err, then succeeds.
type flaky struct {
	n     int
	err   error
	mu    sync.Mutex
	calls map[int64]int
}

func (f *flaky) Sync(ctx context.Context, tx bun.Tx, job *SyncJob) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[int64]int{}
	}
	f.calls[job.JobID]++
	if f.calls[job.JobID] <= f.n {
		return f.err
	}
	return nil
}

func (f *flaky) count(id int64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id]
}

func TestWorkerFailsTwiceThenSucceeds(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newWorkerEnv(t, tdb)
		id := e.ingest(t, "1", "Pump")
		s := &flaky{n: 2, err: WithCode("http_502", errors.New("bad gateway"))}
		policy := DefaultRetryPolicy()
		e.start(t, s, WithRetryPolicy(policy))

		for attempt := 1; attempt <= 2; attempt++ {
			j := e.waitJob(t, id, "retry", func(j *Job) bool { return j.Status == StatusRetry && j.Attempt == attempt })
			lo, hi := policy.Bounds(attempt)
			delay := j.NextRetryAt.Sub(j.UpdatedAt)
			require.GreaterOrEqual(t, delay, lo, "attempt %d", attempt)
			require.LessOrEqual(t, delay, hi, "attempt %d", attempt)
			require.Equal(t, "http_502", *j.LastErrorCode)
			require.Nil(t, j.LeasedBy)
			// Not due yet: the worker must leave it alone.
			e.clock.Advance(lo - time.Millisecond)
			require.Equal(t, attempt, s.count(id))
			e.clock.Advance(hi - lo + time.Millisecond)
		}
		j := e.waitStatus(t, id, StatusCompleted)
		require.Equal(t, 3, j.Attempt)
		require.Equal(t, OutcomeSynced, *j.Outcome)
		require.Equal(t, 3, s.count(id))
		attempts, err := e.q.Attempts(context.Background(), id)
		require.NoError(t, err)
		require.Len(t, attempts, 2)
		for i, a := range attempts {
			require.Equal(t, i+1, a.Attempt)
			require.Equal(t, "bad gateway", a.Error)
			require.Equal(t, "http_502", *a.ErrorCode)
		}
		require.Equal(t, 0, count(t, e.db, unprocessedSQL))
	})
}

func TestWorkerPermanentDeadLettersAtOnce(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newWorkerEnv(t, tdb)
		id := e.ingest(t, "1", "Pump")
		s := &flaky{n: 100, err: Permanent(WithCode("bad_record", errors.New("no such warehouse")))}
		e.start(t, s)
		j := e.waitStatus(t, id, StatusDeadLetter)
		require.Equal(t, 1, j.Attempt)
		require.Equal(t, "bad_record", *j.LastErrorCode)
		require.Contains(t, *j.LastError, "no such warehouse")
		require.Equal(t, e.clock.Now(), j.UpdatedAt.UTC())
		require.Equal(t, 1, s.count(id))
		require.Equal(t, 0, count(t, e.db, unprocessedSQL))
		dead, err := e.q.ListDeadLetters(context.Background(), DeadLetterFilter{ErrorCode: "bad_record"})
		require.NoError(t, err)
		require.Len(t, dead, 1)
	})
}

func TestWorkerExhaustedAttemptsThenRetriedDeadLetterSyncs(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		id := e.ingest(t, "1", "Pump")
		// Three failures with distinct messages; the fourth call succeeds.
		var calls atomic.Int32
		s := SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
			n := calls.Add(1)
			if n <= 3 {
				return fmt.Errorf("failure %d", n)
			}
			return nil
		})
		e.start(t, s, WithRetryPolicy(ExponentialBackoff{Base: time.Second, Max: time.Second}))
		for attempt := 1; attempt < DefaultMaxAttempts; attempt++ {
			e.waitJob(t, id, "retry", func(j *Job) bool { return j.Status == StatusRetry && j.Attempt == attempt })
			e.clock.Advance(time.Second)
		}
		j := e.waitStatus(t, id, StatusDeadLetter)
		require.Equal(t, DefaultMaxAttempts, j.Attempt)
		require.Equal(t, "failure 3", *j.LastError)
		attempts, err := e.q.Attempts(ctx, id)
		require.NoError(t, err)
		require.Len(t, attempts, 3)
		for i, a := range attempts {
			require.Equal(t, fmt.Sprintf("failure %d", i+1), a.Error)
			require.Equal(t, i+1, a.Attempt)
		}

		_, err = e.q.RetryDeadLetter(ctx, id)
		require.NoError(t, err)
		j = e.waitStatus(t, id, StatusCompleted)
		require.Equal(t, 1, j.Attempt, "a retried dead letter starts a fresh set of attempts")
		attempts, err = e.q.Attempts(ctx, id)
		require.NoError(t, err)
		require.Len(t, attempts, 3, "history kept")
	})
}

func TestWorkerRetryAfterDelay(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newWorkerEnv(t, tdb)
		id := e.ingest(t, "1", "Pump")
		s := &flaky{n: 1, err: RetryAfter(10*time.Minute, WithCode("rate_limited", errors.New("429")))}
		e.start(t, s)
		j := e.waitStatus(t, id, StatusRetry)
		require.Equal(t, 10*time.Minute, j.NextRetryAt.Sub(j.UpdatedAt))
		require.Equal(t, "rate_limited", *j.LastErrorCode)
		e.clock.Advance(10 * time.Minute)
		e.waitStatus(t, id, StatusCompleted)
	})
}

func TestWorkerSyncerErrorRollsBackItsWrites(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		_, err := e.db.ExecContext(ctx, "CREATE TABLE side_effects (job_id BIGINT)")
		require.NoError(t, err)
		id := e.ingest(t, "1", "Pump")
		s := SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO side_effects VALUES (?)", job.JobID); err != nil {
				return err
			}
			return Permanent(errors.New("changed my mind"))
		})
		e.start(t, s)
		e.waitStatus(t, id, StatusDeadLetter)
		require.Equal(t, 0, count(t, e.db, "SELECT COUNT(*) FROM side_effects"))
	})
}

func TestWorkerPanicIsAFailedAttempt(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newWorkerEnv(t, tdb)
		id := e.ingest(t, "1", "Pump")
		e.start(t, SyncFunc(func(context.Context, bun.Tx, *SyncJob) error { panic("boom") }))
		j := e.waitStatus(t, id, StatusRetry)
		require.Equal(t, CodePanic, *j.LastErrorCode)
	})
}

func TestWorkerGracefulShutdownFinishesInflight(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newWorkerEnv(t, tdb)
		id := e.ingest(t, "1", "Pump")
		started, release := make(chan struct{}), make(chan struct{})
		s := SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
			close(started)
			<-release
			return nil
		})
		stop := e.start(t, s)
		<-started
		stopped := make(chan struct{})
		go func() { stop(); close(stopped) }()
		close(release)
		<-stopped
		require.Equal(t, StatusCompleted, e.job(t, id).Status)
	})
}

func TestWorkerGracefulShutdownHandsBackUnfinished(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newWorkerEnv(t, tdb)
		ids := []int64{e.ingest(t, "1", "a"), e.ingest(t, "2", "b"), e.ingest(t, "3", "c")}
		var running atomic.Int32
		s := SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
			running.Add(1)
			<-ctx.Done() // a sync that only stops when cancelled
			return ctx.Err()
		})
		stop := e.start(t, s, WithConcurrency(2), WithShutdownTimeout(50*time.Millisecond))
		// On SQLite the second sync waits for the one connection.
		want := int32(2)
		if tdb.name == "sqlite" {
			want = 1
		}
		require.Eventually(t, func() bool { return running.Load() == want }, 10*time.Second, time.Millisecond)
		stop()
		require.Equal(t, 0, count(t, e.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'processing'"))
		for _, id := range ids {
			j := e.job(t, id)
			require.Equal(t, StatusPending, j.Status)
			require.Equal(t, 0, j.Attempt, "a shutdown is not a failed attempt")
			require.Nil(t, j.LeasedBy)
		}
		require.Equal(t, 0, count(t, e.db, "SELECT COUNT(*) FROM tds_sync_attempts"))
	})
}

func TestWorkerRescuesExpiredLease(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		id := e.ingest(t, "1", "Pump")
		later := e.ingest(t, "1", "Pump v2")
		// A worker that claimed the job and died: the lease runs out.
		_, err := e.db.NewUpdate().Model((*store.Job)(nil)).
			Set("status = ?", StatusProcessing).Set("attempt_count = 1").
			Set("locked_by = 'dead-worker'").Set("locked_until = ?", e.clock.Now().Add(time.Minute)).
			Where("id = ?", id).Exec(ctx)
		require.NoError(t, err)
		s := &flaky{}
		e.start(t, s, WithLeaseDuration(time.Minute))
		// Not expired: nothing of the entity moves.
		require.Never(t, func() bool { return s.count(id)+s.count(later) > 0 }, 100*time.Millisecond, 10*time.Millisecond)
		e.clock.Advance(time.Minute + time.Second)
		j := e.waitStatus(t, id, StatusCompleted)
		require.Equal(t, 2, j.Attempt, "the lost attempt counts")
		e.waitStatus(t, later, StatusCompleted)
		attempts, err := e.q.Attempts(ctx, id)
		require.NoError(t, err)
		require.Len(t, attempts, 1)
		require.Equal(t, CodeLeaseExpired, *attempts[0].ErrorCode)
		require.Equal(t, "dead-worker", *attempts[0].Worker)
		require.Equal(t, 1, s.count(id))
	})
}

func TestWorkerOldHolderCannotComplete(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		id := e.ingest(t, "1", "Pump")
		w, err := NewWorker(e.db, &flaky{}, WithClock(e.clock.Now), WithWorkerID("w1"))
		require.NoError(t, err)
		jobs, err := w.claim(ctx, 10)
		require.NoError(t, err)
		require.Len(t, jobs, 1)
		e.clock.Advance(2 * DefaultLeaseDuration)
		n, err := w.rescue(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		res, redo, _, err := w.runBatch(ctx, nil, jobs)
		require.NoError(t, err)
		require.Empty(t, res, "nothing committed")
		require.Empty(t, redo, "the only job was lost")
		require.Equal(t, StatusRetry, e.job(t, id).Status)
	})
}

func TestWorkerPerEntityOrder(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newWorkerEnv(t, tdb)
		const entities, perEntity = 8, 6
		var want [entities][]int64
		for k := range perEntity {
			for n := range entities {
				want[n] = append(want[n], e.ingest(t, fmt.Sprint(n), fmt.Sprintf("v%d", k)))
			}
		}
		rec := newIntervalRecorder()
		// The first job of entity 0 fails once: later jobs of entity 0 must wait.
		first0 := want[0][0]
		var failed atomic.Bool
		s := SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
			defer rec.record(job)()
			if job.JobID == first0 && failed.CompareAndSwap(false, true) {
				return errors.New("once")
			}
			return nil
		})
		e.start(t, s, WithConcurrency(4), WithRetryPolicy(ExponentialBackoff{Base: time.Minute, Max: time.Minute}))
		e.waitStatus(t, first0, StatusRetry)
		for _, id := range want[1] {
			e.waitStatus(t, id, StatusCompleted)
		}
		for _, id := range want[0][1:] {
			require.Equal(t, StatusPending, e.job(t, id).Status, "waits behind the retry")
		}
		e.clock.Advance(time.Minute)
		for n := range entities {
			for _, id := range want[n] {
				e.waitStatus(t, id, StatusCompleted)
			}
		}
		rec.check(t)
	})
}

// intervalRecorder records when each sync of each entity ran.
type intervalRecorder struct {
	mu  sync.Mutex
	seq int64
	by  map[string][]interval
}

type interval struct {
	Entity     string
	Job        int64
	Start, End int64
}

func newIntervalRecorder() *intervalRecorder { return &intervalRecorder{by: map[string][]interval{}} }

// record notes the start of job's sync; call the result at its end.
func (r *intervalRecorder) record(job *SyncJob) func() {
	r.mu.Lock()
	r.seq++
	start := r.seq
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.seq++
		key := job.EntityType + "/" + job.EntityID
		r.by[key] = append(r.by[key], interval{Entity: key, Job: job.JobID, Start: start, End: r.seq})
	}
}

func (r *intervalRecorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, ivs := range r.by {
		checkIntervals(t, key, ivs)
	}
}

// checkIntervals fails unless the syncs of one entity never overlapped and
// ran in job id order (a job may run again after a failure).
func checkIntervals(t *testing.T, key string, ivs []interval) {
	t.Helper()
	sortIntervals(ivs)
	for i := 1; i < len(ivs); i++ {
		a, b := ivs[i-1], ivs[i]
		require.LessOrEqual(t, a.End, b.Start, "entity %s: jobs %d and %d overlapped", key, a.Job, b.Job)
		require.LessOrEqual(t, a.Job, b.Job, "entity %s: job %d ran after job %d", key, b.Job, a.Job)
	}
}

func sortIntervals(ivs []interval) {
	slices.SortFunc(ivs, func(a, b interval) int { return cmp.Compare(a.Start, b.Start) })
}

func TestNewWorkerOptionErrors(t *testing.T) {
	tdb := openTestDB(t, "sqlite")
	_, err := NewWorker(tdb.db, &flaky{}, WithConcurrency(0), WithBatchSize(-1), WithPollInterval(0),
		WithLeaseDuration(time.Millisecond), WithShutdownTimeout(-1), WithRetryPolicy(nil), WithWorkerID(""))
	require.Error(t, err)
	for _, name := range []string{"WithConcurrency", "WithBatchSize", "WithPollInterval", "WithLeaseDuration",
		"WithShutdownTimeout", "WithRetryPolicy", "WithWorkerID"} {
		require.ErrorContains(t, err, "tds: "+name+": ")
	}
	_, err = NewWorker(tdb.db, nil)
	require.Error(t, err)
}

// A Worker polling once an hour syncs a job as soon as it is enqueued: by
// a Processor on its own pool (woken in process, the pool's own NOTIFY
// skipped), and on PostgreSQL by one on another pool, in this process or
// another (woken by that pool's NOTIFY, which must not be taken for its
// own).
func TestWorkerWakeUps(t *testing.T) {
	for _, tc := range []struct {
		dialect   string
		otherPool bool
	}{{"postgres", false}, {"postgres", true}, {"sqlite", false}} {
		name := tc.dialect + "/own-pool"
		if tc.otherPool {
			name = tc.dialect + "/other-pool"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tdb := openTestDB(t, tc.dialect)
			p := newWorkerEnv(t, tdb).p
			if tc.otherPool {
				other, err := Open(t.Context(), tdb.url)
				require.NoError(t, err)
				t.Cleanup(func() { _ = other.Close() })
				p, err = NewProcessor(other)
				require.NoError(t, err)
			}
			_, synced := runSyncing(t, tdb.db, &flaky{})
			for _, id := range []string{"1", "2"} {
				_, err := p.Process(t.Context(), productEvent(id, "Pump"))
				require.NoError(t, err)
				synced(id)
			}
		})
	}
}

// runSyncing runs a Worker on db, polling once an hour, until the test
// ends (Run must then return nil), and returns it once its first claim
// has run: from then on only a wake-up starts a job within the hour. The
// function returned waits for the next completed job and checks that it
// is entity id's.
func runSyncing(t *testing.T, db *bun.DB, s Syncer, opts ...Option) (*Worker, func(id string)) {
	t.Helper()
	completed := make(chan string, 4)
	base := []Option{WithPollInterval(time.Hour), WithLogger(slog.New(slog.DiscardHandler)),
		WithObserver(func(r JobResult) {
			if r.Status == StatusCompleted {
				completed <- r.EntityID
			}
		})}
	w, err := NewWorker(db, s, append(base, opts...)...)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-errc)
	})
	require.Eventually(t, func() bool { return w.Stats().Claims > 0 }, 10*time.Second, time.Millisecond)
	return w, func(id string) {
		t.Helper()
		select {
		case got := <-completed:
			require.Equal(t, id, got)
		case <-time.After(10 * time.Second):
			t.Fatalf("job of entity %s not synced: no wake-up", id)
		}
	}
}
