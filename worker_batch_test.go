package tds

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
)

// observed collects what a Worker reports to its observer.
type observed struct {
	mu  sync.Mutex
	res map[int64][]JobResult
}

func (o *observed) add(r JobResult) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.res == nil {
		o.res = map[int64][]JobResult{}
	}
	o.res[r.JobID] = append(o.res[r.JobID], r)
}

func (o *observed) of(id int64) []JobResult {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]JobResult(nil), o.res[id]...)
}

// sideEffects creates a table a test Syncer writes to.
func sideEffects(t *testing.T, db *bun.DB) {
	t.Helper()
	_, err := db.ExecContext(context.Background(), "CREATE TABLE side_effects (job_id BIGINT)")
	require.NoError(t, err)
}

func writeSideEffect(ctx context.Context, tx bun.Tx, job *SyncJob) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO side_effects VALUES (?)", job.JobID)
	return err
}

func sideEffectJobs(t *testing.T, db *bun.DB) []int64 {
	t.Helper()
	var ids []int64
	require.NoError(t, db.NewSelect().Table("side_effects").Column("job_id").Order("job_id").Scan(context.Background(), &ids))
	return ids
}

// sameTx records the transaction each job ran in.
type sameTx struct {
	mu  sync.Mutex
	txs map[*sql.Tx]int
}

func (s *sameTx) note(tx bun.Tx) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.txs == nil {
		s.txs = map[*sql.Tx]int{}
	}
	s.txs[tx.Tx]++
}

func (s *sameTx) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.txs)
}

// TestWorkerBatchFailureUndoesOnlyItsOwnWrites: a batch of three where the
// middle job writes then errors: its neighbours' writes commit, its own do
// not, and it is retried.
func TestWorkerBatchFailureUndoesOnlyItsOwnWrites(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newWorkerEnv(t, tdb)
		sideEffects(t, e.db)
		ids := []int64{e.ingest(t, "1", "a"), e.ingest(t, "2", "b"), e.ingest(t, "3", "c")}
		var txs sameTx
		s := SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
			txs.note(tx)
			if err := writeSideEffect(ctx, tx, job); err != nil {
				return err
			}
			if job.JobID == ids[1] {
				return WithCode("nope", errors.New("changed my mind"))
			}
			return nil
		})
		var obs observed
		e.start(t, s, WithConcurrency(1), WithBatchSize(3), WithObserver(obs.add),
			WithRetryPolicy(ExponentialBackoff{Base: time.Hour, Max: time.Hour}))
		e.waitStatus(t, ids[0], StatusCompleted)
		e.waitStatus(t, ids[2], StatusCompleted)
		j := e.waitStatus(t, ids[1], StatusRetry)
		require.Equal(t, "nope", *j.LastErrorCode)
		require.Equal(t, 1, txs.count(), "one transaction for the batch")
		require.Equal(t, []int64{ids[0], ids[2]}, sideEffectJobs(t, e.db))
		attempts, err := e.q.Attempts(context.Background(), ids[1])
		require.NoError(t, err)
		require.Len(t, attempts, 1)
		require.Equal(t, 0, count(t, e.db, unprocessedSQL+" AND e.id <> ?", j.InboxEventID))

		require.Eventually(t, func() bool { return len(obs.of(ids[1])) == 1 }, 10*time.Second, time.Millisecond)
		r := obs.of(ids[1])[0]
		require.Equal(t, StatusRetry, r.Status)
		require.ErrorContains(t, r.Err, "changed my mind")
		for _, id := range []int64{ids[0], ids[2]} {
			require.Eventually(t, func() bool { return len(obs.of(id)) == 1 }, 10*time.Second, time.Millisecond)
			r := obs.of(id)[0]
			require.Equal(t, StatusCompleted, r.Status)
			require.Equal(t, OutcomeSynced, r.Outcome)
			require.NoError(t, r.Err)
			require.Equal(t, 1, r.Attempt)
			require.False(t, r.ReceivedAt.IsZero())
		}
	})
}

func TestWorkerBatchPanicFailsOnlyItsJob(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newWorkerEnv(t, tdb)
		sideEffects(t, e.db)
		ids := []int64{e.ingest(t, "1", "a"), e.ingest(t, "2", "b"), e.ingest(t, "3", "c")}
		s := SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
			if err := writeSideEffect(ctx, tx, job); err != nil {
				return err
			}
			if job.JobID == ids[1] {
				panic("boom")
			}
			return nil
		})
		e.start(t, s, WithConcurrency(1), WithBatchSize(3),
			WithRetryPolicy(ExponentialBackoff{Base: time.Hour, Max: time.Hour}))
		e.waitStatus(t, ids[0], StatusCompleted)
		e.waitStatus(t, ids[2], StatusCompleted)
		j := e.waitStatus(t, ids[1], StatusRetry)
		require.Equal(t, CodePanic, *j.LastErrorCode)
		require.Equal(t, []int64{ids[0], ids[2]}, sideEffectJobs(t, e.db))
	})
}

// TestWorkerBatchUnusableTxFailsOnlyItsJob: on PostgreSQL a failed
// statement aborts the transaction; a Sync that swallows the error and
// returns nil must fail alone, not take its batch down.
func TestWorkerBatchUnusableTxFailsOnlyItsJob(t *testing.T) {
	t.Parallel()
	e := newWorkerEnv(t, openTestDB(t, "postgres"))
	sideEffects(t, e.db)
	ids := []int64{e.ingest(t, "1", "a"), e.ingest(t, "2", "b"), e.ingest(t, "3", "c")}
	s := SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
		if err := writeSideEffect(ctx, tx, job); err != nil {
			return err
		}
		if job.JobID == ids[1] {
			_, _ = tx.ExecContext(ctx, "SELECT no_such_column FROM side_effects")
		}
		return nil
	})
	e.start(t, s, WithConcurrency(1), WithBatchSize(3),
		WithRetryPolicy(ExponentialBackoff{Base: time.Hour, Max: time.Hour}))
	e.waitStatus(t, ids[0], StatusCompleted)
	e.waitStatus(t, ids[2], StatusCompleted)
	j := e.waitStatus(t, ids[1], StatusRetry)
	require.Contains(t, *j.LastError, "unusable")
	require.Equal(t, []int64{ids[0], ids[2]}, sideEffectJobs(t, e.db))
}

// TestWorkerBatchLeaseLostAtCompletion: a job of a batch whose lease was
// taken from the worker while the batch ran: nothing of it commits, the
// batch is run again without it, and its neighbours complete once.
func TestWorkerBatchLeaseLostAtCompletion(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		sideEffects(t, e.db)
		ids := []int64{e.ingest(t, "1", "a"), e.ingest(t, "2", "b"), e.ingest(t, "3", "c")}
		steal := func(db bun.IDB) {
			_, err := db.NewUpdate().Model((*store.Job)(nil)).Set("locked_by = 'thief'").Where("id = ?", ids[1]).Exec(ctx)
			require.NoError(t, err)
		}
		var calls sync.Map
		s := SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
			n, _ := calls.LoadOrStore(job.JobID, new(int))
			*n.(*int)++
			// On PostgreSQL another connection takes the lease mid-batch;
			// SQLite's one connection is the batch's, so it was taken before.
			if job.JobID == ids[0] && tdb.name == "postgres" && *n.(*int) == 1 {
				steal(e.db)
			}
			return writeSideEffect(ctx, tx, job)
		})
		var obs observed
		w, err := NewWorker(e.db, s, WithClock(e.clock.Now), WithObserver(obs.add), WithLogger(slog.New(slog.DiscardHandler)))
		require.NoError(t, err)
		jobs, err := w.claim(ctx, 10)
		require.NoError(t, err)
		require.Len(t, jobs, 3)
		if tdb.name == "sqlite" {
			steal(e.db)
		}
		w.processBatch(ctx, nil, jobs)

		require.Equal(t, []int64{ids[0], ids[2]}, sideEffectJobs(t, e.db))
		for _, id := range []int64{ids[0], ids[2]} {
			require.Equal(t, StatusCompleted, e.job(t, id).Status)
			require.Len(t, obs.of(id), 1)
			n, _ := calls.Load(id)
			require.Equal(t, 2, *n.(*int), "run again after the rollback")
		}
		e.requireStolen(t, ids[1], &obs, w)
	})
}

// TestWorkerBatchShutdownCommitsFinishedHandsBackRest: a worker stopped
// mid-batch commits the jobs it finished and hands back the ones it had
// not started, in the same transaction.
func TestWorkerBatchShutdownCommitsFinishedHandsBackRest(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newWorkerEnv(t, tdb)
		ids := []int64{e.ingest(t, "1", "a"), e.ingest(t, "2", "b"), e.ingest(t, "3", "c")}
		started, release := make(chan struct{}), make(chan struct{})
		s := SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
			if job.JobID == ids[0] {
				close(started)
				<-release
			}
			return nil
		})
		var obs observed
		w, err := NewWorker(e.db, s, WithClock(e.clock.Now), WithConcurrency(1), WithBatchSize(3),
			WithObserver(obs.add), WithLogger(slog.New(slog.DiscardHandler)))
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- w.Run(ctx) }()
		<-started
		cancel() // the worker stops while the batch's first job runs
		close(release)
		require.NoError(t, <-errc)
		require.Equal(t, StatusCompleted, e.job(t, ids[0]).Status)
		for _, id := range ids[1:] {
			j := e.job(t, id)
			require.Equal(t, StatusPending, j.Status)
			require.Equal(t, 0, j.Attempt)
			require.Len(t, obs.of(id), 1)
			require.Equal(t, StatusPending, obs.of(id)[0].Status)
		}
		require.Equal(t, 0, count(t, e.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'processing'"))
		require.Equal(t, int64(2), w.Stats().HandedBack)
	})
}

func TestWorkerObserverAndStats(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		require.NoError(t, MigrateMirror(ctx, e.db, ZohoRegistry()))
		newer := mustProcess(t, e.p, versioned("1", 10, EventUpdate))
		stale := mustProcess(t, e.p, versioned("1", 5, EventUpdate))
		dead := mustProcess(t, e.p, versioned("2", 1, EventUpdate))
		retried := mustProcess(t, e.p, versioned("3", 1, EventUpdate))
		m, err := NewMirrorSyncer()
		require.NoError(t, err)
		var failedOnce sync.Once
		s := SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
			switch job.JobID {
			case dead:
				return Permanent(errors.New("no"))
			case retried:
				var err error
				failedOnce.Do(func() { err = errors.New("once") })
				if err != nil {
					return err
				}
			}
			return m.Sync(ctx, tx, job)
		})
		// The observer reads the job back: the decision must be committed.
		var obs observed
		var mismatch sync.Map
		observer := func(r JobResult) {
			j, err := e.q.Get(context.Background(), r.JobID)
			// Committed: the database shows this decision, or a later
			// attempt already (the job was claimed again meanwhile).
			if err != nil || (j.Status != r.Status && j.Attempt <= r.Attempt) {
				mismatch.Store(r.JobID, fmt.Sprintf("observed %s, database %+v, %v", r.Status, j, err))
			}
			obs.add(r)
		}
		w, err := NewWorker(e.db, s, WithClock(e.clock.Now), WithObserver(observer), WithPollInterval(10*time.Millisecond),
			WithLogger(slog.New(slog.DiscardHandler)), WithRetryPolicy(ExponentialBackoff{Base: time.Minute, Max: time.Minute}))
		require.NoError(t, err)
		runCtx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { errc <- w.Run(runCtx) }()
		e.waitStatus(t, retried, StatusRetry)
		e.clock.Advance(time.Minute)
		e.waitStatus(t, retried, StatusCompleted)
		e.waitStatus(t, stale, StatusCompleted)
		e.waitStatus(t, dead, StatusDeadLetter)
		require.Eventually(t, func() bool { return w.Stats().Completed == 3 }, 10*time.Second, time.Millisecond)
		cancel()
		require.NoError(t, <-errc)

		mismatch.Range(func(k, v any) bool {
			t.Errorf("job %v: %v", k, v)
			return true
		})
		require.Equal(t, OutcomeSynced, obs.of(newer)[0].Outcome)
		require.Equal(t, OutcomeSuperseded, obs.of(stale)[0].Outcome)
		require.Equal(t, StatusDeadLetter, obs.of(dead)[0].Status)
		rs := obs.of(retried)
		require.Len(t, rs, 2)
		// Two goroutines may report the two attempts, so the reports may
		// arrive in either order; the attempt numbers tell them apart.
		sort.Slice(rs, func(i, j int) bool { return rs[i].Attempt < rs[j].Attempt })
		require.Equal(t, StatusRetry, rs[0].Status)
		require.Equal(t, 1, rs[0].Attempt)
		require.Equal(t, StatusCompleted, rs[1].Status)
		require.Equal(t, 2, rs[1].Attempt)

		st := w.Stats()
		require.Equal(t, int64(3), st.Completed)
		require.Equal(t, int64(1), st.Superseded)
		require.Equal(t, int64(1), st.Retried)
		require.Equal(t, int64(1), st.DeadLettered)
		require.Equal(t, int64(0), st.HandedBack)
		require.Equal(t, int64(5), st.ClaimedJobs)
		require.GreaterOrEqual(t, st.Claims, int64(2))
		require.Positive(t, st.ClaimTime)
	})
}

func mustProcess(t *testing.T, p *Processor, ev *Event) int64 {
	t.Helper()
	res, err := p.Process(context.Background(), ev)
	require.NoError(t, err)
	return res.JobID
}

func TestSplitBatches(t *testing.T) {
	jobs := make([]*store.Job, 7)
	for i := range jobs {
		jobs[i] = &store.Job{ID: int64(i)}
	}
	sizes := func(bs [][]*store.Job) (out []int) {
		for _, b := range bs {
			out = append(out, len(b))
		}
		return out
	}
	require.Equal(t, []int{1, 2, 2, 2}, sizes(splitBatches(jobs, 4)))
	require.Equal(t, []int{1, 1}, sizes(splitBatches(jobs[:2], 4)))
	require.Equal(t, []int{7}, sizes(splitBatches(jobs, 1)))
	require.Empty(t, splitBatches(nil, 4))
	var n int64
	for _, b := range splitBatches(jobs, 3) {
		for _, j := range b {
			require.Equal(t, n, j.ID, "claim order kept")
			n++
		}
	}
}

// A job that fails without having run a statement had no savepoint (they
// are opened lazily), so its batch cannot undo it alone: the batch rolls
// back, the failure is recorded on its own, and the other jobs run again.
// Writes of the jobs that ran before it are applied once all the same, and
// a Sync that writes through tx.Tx, unseen by the hook, is undone too.
func TestWorkerBatchFailureWithoutSavepoint(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newWorkerEnv(t, tdb)
		sideEffects(t, e.db)
		ids := []int64{e.ingest(t, "1", "a"), e.ingest(t, "2", "b"), e.ingest(t, "3", "c")}
		var mu sync.Mutex
		calls := map[int64]int{}
		s := SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
			mu.Lock()
			calls[job.JobID]++
			mu.Unlock()
			if job.JobID == ids[1] {
				// Unhooked: straight through database/sql.
				if _, err := tx.Tx.ExecContext(ctx, "INSERT INTO side_effects (job_id) VALUES ($1)", job.JobID); err != nil {
					return err
				}
				return Permanent(errors.New("rejected"))
			}
			return writeSideEffect(ctx, tx, job)
		})
		e.start(t, s, WithConcurrency(1), WithBatchSize(3))
		e.waitStatus(t, ids[0], StatusCompleted)
		e.waitStatus(t, ids[2], StatusCompleted)
		e.waitStatus(t, ids[1], StatusDeadLetter)
		require.Equal(t, []int64{ids[0], ids[2]}, sideEffectJobs(t, e.db))
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, 1, calls[ids[1]], "the failed job is not run again")
		require.Equal(t, 2, calls[ids[0]], "the job before it ran again, its first writes undone")
		require.Equal(t, 1, calls[ids[2]])
	})
}

// requireStolen checks that job id, whose lease a "thief" took during a
// batch, was left to it: still processing, unreported, and that the batch
// completed the two others.
func (e *workerEnv) requireStolen(t *testing.T, id int64, obs *observed, w *Worker) {
	t.Helper()
	j := e.job(t, id)
	require.Equal(t, StatusProcessing, j.Status, "left to its holder")
	require.Equal(t, "thief", *j.LeasedBy)
	require.Empty(t, obs.of(id))
	require.Equal(t, int64(2), w.Stats().Completed)
}
