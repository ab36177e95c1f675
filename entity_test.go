package tds

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
)

// syncOrder records the order in which jobs were synced.
type syncOrder struct {
	mu  sync.Mutex
	ids []int64
}

func (o *syncOrder) Sync(_ context.Context, _ bun.Tx, job *SyncJob) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ids = append(o.ids, job.JobID)
	return nil
}

// among returns the jobs of ids that were synced, in the order they were.
func (o *syncOrder) among(ids ...int64) []int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []int64
	for _, id := range o.ids {
		if slices.Contains(ids, id) {
			out = append(out, id)
		}
	}
	return out
}

// requireBlocked asserts which of the jobs are blocked.
func (e *workerEnv) requireBlocked(t *testing.T, want map[int64]bool) {
	t.Helper()
	for id, blocked := range want {
		require.Equal(t, blocked, e.job(t, id).Blocked, "job %d blocked", id)
	}
}

// waitForLockWaiter polls until a session waits for an advisory lock.
func waitForLockWaiter(t *testing.T, db *bun.DB) {
	t.Helper()
	require.Eventually(t, func() bool {
		return count(t, db, "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") > 0
	}, 10*time.Second, 2*time.Millisecond, "nobody waited for an entity lock")
}

func TestEntityHeadIsTheOnlyClaimableJob(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		a1 := e.ingest(t, "1", "A v1")
		b1 := e.ingest(t, "2", "B v1")
		a2 := e.ingest(t, "1", "A v2")
		// In one batch: two of an entity with a head, two of an idle one.
		var batch []*ingestReq
		for _, ev := range []*Event{productEvent("1", "A v3"), productEvent("3", "C v1"),
			productEvent("1", "A v4"), productEvent("3", "C v2")} {
			r, err := e.p.prepare(ctx, ev)
			require.NoError(t, err)
			batch = append(batch, r)
		}
		require.NoError(t, e.p.storeBatch(ctx, e.db, batch))
		a3, c1, a4, c2 := batch[0].res.JobID, batch[1].res.JobID, batch[2].res.JobID, batch[3].res.JobID
		e.requireBlocked(t, map[int64]bool{a1: false, b1: false, a2: true, a3: true, c1: false, a4: true, c2: true})
		stats, err := e.q.Stats(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 4, stats.Blocked)
		require.EqualValues(t, 7, stats.ByStatus[StatusPending])

		order := &syncOrder{}
		e.start(t, order)
		for _, id := range []int64{a1, a2, a3, a4, b1, c1, c2} {
			e.waitStatus(t, id, StatusCompleted)
		}
		require.Equal(t, []int64{a1, a2, a3, a4}, order.among(a1, a2, a3, a4))
		require.Equal(t, []int64{c1, c2}, order.among(c1, c2))
		require.Zero(t, count(t, e.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE blocked"))
	})
}

// A dead-lettered head hands its entity on, whichever way it was
// dead-lettered: in the batch (the Syncer wrote first), alone (it wrote
// nothing), or by the rescue of an expired lease.
func TestEntityDeadLetteredHeadUnblocksTheNext(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes bool
	}{{"in the batch", true}, {"alone", false}} {
		t.Run(tc.name, func(t *testing.T) {
			eachDB(t, func(t *testing.T, tdb *testDB) {
				e := newWorkerEnv(t, tdb)
				sideEffects(t, e.db)
				head := e.ingest(t, "1", "v1")
				next := e.ingest(t, "1", "v2")
				e.requireBlocked(t, map[int64]bool{head: false, next: true})
				e.start(t, SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
					if job.JobID != head {
						return nil
					}
					if tc.writes {
						if err := writeSideEffect(ctx, tx, job); err != nil {
							return err
						}
					}
					return Permanent(errors.New("never"))
				}))
				e.waitStatus(t, head, StatusDeadLetter)
				e.waitStatus(t, next, StatusCompleted)
			})
		})
	}
	t.Run("rescued", func(t *testing.T) {
		eachDB(t, func(t *testing.T, tdb *testDB) {
			ctx := context.Background()
			e := newWorkerEnv(t, tdb)
			head := e.ingest(t, "1", "v1")
			next := e.ingest(t, "1", "v2")
			// Its last attempt's worker died.
			_, err := e.db.NewUpdate().Model((*store.Job)(nil)).
				Set("status = ?", StatusProcessing).Set("attempt_count = max_retry_attempts").
				Set("locked_by = 'dead-worker'").Set("locked_until = ?", e.clock.Now().Add(-time.Second)).
				Where("id = ?", head).Exec(ctx)
			require.NoError(t, err)
			w, err := NewWorker(e.db, &syncOrder{}, WithClock(e.clock.Now), WithLogger(slog.New(slog.DiscardHandler)))
			require.NoError(t, err)
			n, err := w.rescue(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			require.Equal(t, StatusDeadLetter, e.job(t, head).Status)
			e.requireBlocked(t, map[int64]bool{next: false})
		})
	})
}

// Retried dead letters join their entity's line: behind its head if it has
// one, else the oldest of them leads.
func TestEntityRetriedDeadLettersWaitTheirTurn(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		d1 := e.ingest(t, "1", "v1")
		d2 := e.ingest(t, "1", "v2")
		x1 := e.ingest(t, "2", "v1")
		x2 := e.ingest(t, "2", "v2")
		// Dead letters all, as if each had failed in turn.
		_, err := e.db.NewUpdate().Model((*store.Job)(nil)).
			Set("status = ?", StatusDeadLetter).Set("blocked = FALSE").
			Where("id IN (?)", bun.List([]int64{d1, d2, x1, x2})).Exec(ctx)
		require.NoError(t, err)
		// Entity 2 gets a new job meanwhile, its head.
		head := e.ingest(t, "2", "v3")
		e.requireBlocked(t, map[int64]bool{head: false})

		n, err := e.q.RetryDeadLetters(ctx, DeadLetterFilter{}, false)
		require.NoError(t, err)
		require.EqualValues(t, 4, n)
		e.requireBlocked(t, map[int64]bool{d1: false, d2: true, head: false, x1: true, x2: true})

		order := &syncOrder{}
		e.start(t, order)
		for _, id := range []int64{d1, d2, x1, x2, head} {
			e.waitStatus(t, id, StatusCompleted)
		}
		require.Equal(t, []int64{d1, d2}, order.among(d1, d2))
		require.Equal(t, []int64{head, x1, x2}, order.among(head, x1, x2))
	})
}

// An entity whose head was deleted by hand gets a new one from
// housekeeping; a new job of it becomes its head at once as well.
func TestEntityWithoutHeadIsRepaired(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		a1 := e.ingest(t, "1", "A v1")
		a2 := e.ingest(t, "1", "A v2")
		a3 := e.ingest(t, "1", "A v3")
		b1 := e.ingest(t, "2", "B v1")
		b2 := e.ingest(t, "2", "B v2")
		_, err := e.db.NewDelete().Model((*store.Job)(nil)).Where("id IN (?)", bun.List([]int64{a1, b1})).Exec(ctx)
		require.NoError(t, err)
		w, err := NewWorker(e.db, &syncOrder{}, WithClock(e.clock.Now), WithLogger(slog.New(slog.DiscardHandler)))
		require.NoError(t, err)
		n, err := w.repairHeads(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 2, n)
		e.requireBlocked(t, map[int64]bool{a2: false, a3: true, b2: false})
		n, err = w.repairHeads(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "nothing left to repair")

		// Without housekeeping: a new job finds no head and becomes it.
		_, err = e.db.NewDelete().Model((*store.Job)(nil)).Where("id = ?", a2).Exec(ctx)
		require.NoError(t, err)
		a4 := e.ingest(t, "1", "A v4")
		e.requireBlocked(t, map[int64]bool{a3: true, a4: false})
	})
}

// On PostgreSQL, ingestion reads an entity's jobs after taking its lock:
// a job enqueued while the head finishes must not wait for it forever.
func TestEntityIngestSeesTheHeadThatFinishedMeanwhile(t *testing.T) {
	ctx := context.Background()
	e := newWorkerEnv(t, openTestDB(t, "postgres"))
	head := e.ingest(t, "1", "v1")
	job := e.job(t, head)

	// A worker finishing the head holds the entity's lock until it commits.
	tx, err := e.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	st := store.NewPostgres()
	row, err := st.GetJob(ctx, tx, job.ID)
	require.NoError(t, err)
	_, err = tx.NewUpdate().Model((*store.Job)(nil)).Set("status = ?", StatusCompleted).Where("id = ?", head).Exec(ctx)
	require.NoError(t, err)
	require.NoError(t, st.FinishDeadLetter(ctx, tx, row, e.clock.Now())) // the entity lock, then the hand-on

	res := processWhileLocked(t, e, tx, productEvent("1", "v2"))
	require.False(t, e.job(t, res.JobID).Blocked, "the entity had no head left: the new job is it")
}

// processWhileLocked processes ev while tx holds its entity's lock: it
// waits until the ingestion waits for the lock, commits tx, and returns
// the ingestion's result.
func processWhileLocked(t *testing.T, e *workerEnv, tx bun.Tx, ev *Event) *Result {
	t.Helper()
	type result struct {
		res *Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := e.p.Process(context.Background(), ev)
		done <- result{res, err}
	}()
	waitForLockWaiter(t, e.db)
	require.NoError(t, tx.Commit())
	r := <-done
	require.NoError(t, r.err)
	return r.res
}

// On PostgreSQL, of two ingestions of one entity the second sees the first's
// job, committed while it waited for the lock, and waits behind it.
func TestEntityIngestSeesTheHeadEnqueuedMeanwhile(t *testing.T) {
	ctx := context.Background()
	e := newWorkerEnv(t, openTestDB(t, "postgres"))
	tx, err := e.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	first, err := e.p.ProcessTx(ctx, tx, productEvent("1", "v1"))
	require.NoError(t, err)

	second := processWhileLocked(t, e, tx, productEvent("1", "v2"))
	e.requireBlocked(t, map[int64]bool{first.JobID: false, second.JobID: true})
}

// Reading an entity's jobs after taking its lock works only at READ
// COMMITTED: ProcessTx in a stricter transaction is refused, whole.
func TestEntityProcessTxNeedsReadCommitted(t *testing.T) {
	ctx := context.Background()
	e := newWorkerEnv(t, openTestDB(t, "postgres"))
	tx, err := e.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead})
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	_, err = e.p.ProcessTx(ctx, tx, productEvent("1", "v1"))
	require.Error(t, err)
	require.Contains(t, err.Error(), "READ COMMITTED")
	require.NoError(t, tx.Rollback())
	require.Zero(t, count(t, e.db, "SELECT COUNT(*) FROM tds_inbox_events"))

	// So is Enqueue.
	in, err := NewInbox(e.db)
	require.NoError(t, err)
	ev, _, err := in.Store(ctx, productEvent("1", "v1"))
	require.NoError(t, err)
	require.NoError(t, in.MarkValidated(ctx, ev.ID, nil))
	ev.IsValid = true
	tx, err = e.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
	require.NoError(t, err)
	_, err = e.q.WithTx(tx).Enqueue(ctx, ev, 1)
	require.ErrorIs(t, err, store.ErrNeedsReadCommitted)
	require.NoError(t, tx.Rollback())
	require.Zero(t, count(t, e.db, "SELECT COUNT(*) FROM tds_sync_queue"))
}

// Migration 0002 blocks the jobs that were waiting behind their entity's
// head under the old rule: the job in processing, else the oldest.
func TestMigrationBlocksWaitingJobs(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, err := Open(ctx, freshURL(t, dialect))
			require.NoError(t, err)
			defer db.Close()
			all, err := migrationFS(db)
			require.NoError(t, err)
			first := fstest.MapFS{}
			names, err := fs.Glob(all, "0001_*.up.sql")
			require.NoError(t, err)
			require.Len(t, names, 1)
			b, err := fs.ReadFile(all, names[0])
			require.NoError(t, err)
			first[names[0]] = &fstest.MapFile{Data: b}
			require.NoError(t, applyMigrations(ctx, db, first, MigrationsTable))

			// entity, status of each job, in id order
			jobs := []struct{ entity, status string }{
				{"1", "pending"}, {"1", "retry"}, {"1", "pending"}, // oldest leads
				{"2", "completed"}, {"2", "pending"}, {"2", "pending"},
				{"3", "pending"}, {"3", "processing"}, {"3", "pending"}, // processing leads
				{"4", "dead_letter"}, {"4", "retry"},
			}
			now := time.Now().UTC()
			for i, j := range jobs {
				_, err := db.ExecContext(ctx, `INSERT INTO tds_inbox_events (id, source, event_type, entity_type,
	source_entity_id, idempotency_key, content_hash, payload, source_modified_at, received_at)
	VALUES (?, 'zoho', 'update', 'product', ?, ?, 'h', '{}', ?, ?)`, i+1, j.entity, strings.Repeat("k", i+1), now, now)
				require.NoError(t, err)
				_, err = db.ExecContext(ctx, `INSERT INTO tds_sync_queue (id, inbox_event_id, source, event_type,
	entity_type, source_entity_id, status, priority, max_retry_attempts, next_retry_at, created_at, updated_at)
	VALUES (?, ?, 'zoho', 'update', 'product', ?, ?, 5, 3, ?, ?, ?)`, i+1, i+1, j.entity, j.status, now, now, now)
				require.NoError(t, err)
			}
			require.NoError(t, Migrate(ctx, db))
			var blocked []int64
			require.NoError(t, db.NewSelect().Model((*store.Job)(nil)).Column("id").Where("blocked").Order("id").Scan(ctx, &blocked))
			require.Equal(t, []int64{2, 3, 6, 7, 9}, blocked)
		})
	}
}
