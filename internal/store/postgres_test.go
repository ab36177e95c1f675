package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
)

// waitingForEntityLock counts the sessions of db's database waiting for an
// entity lock.
const waitingForEntityLockSQL = `SELECT COUNT(*) FROM pg_locks
WHERE locktype = 'advisory' AND classid = ?::oid AND objsubid = 2 AND NOT granted
AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`

// waitUntil polls cond until it holds, failing the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		require.NoError(t, err)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// queueOp queues a job of an entity in db, a transaction or the pool. It
// calls no require: it may run on another goroutine.
type queueOp func(db bun.IDB) (*store.Job, error)

// byInsert prepares InsertEvents of a new event of e.
func byInsert(s *suite, e store.Entity) queueOp {
	ev := s.event(e)
	return func(db bun.IDB) (*store.Job, error) {
		stored, err := s.st.InsertEvents(s.ctx, db, []store.Ingest{withJob(ev, 5)})
		if err != nil {
			return nil, err
		}
		if len(stored) != 1 || stored[0].JobID == nil {
			return nil, fmt.Errorf("stored %+v", stored)
		}
		return s.st.GetJob(s.ctx, db, *stored[0].JobID)
	}
}

// byEnqueue stores a new event of e now and prepares its Enqueue.
func byEnqueue(s *suite, e store.Entity) queueOp {
	id := s.storeOnly(s.unqueued(e))
	return func(db bun.IDB) (*store.Job, error) {
		var job *store.Job
		err := store.RunInTx(s.ctx, s.st, db, func(ctx context.Context, tx bun.IDB) error {
			var err error
			job, err = s.st.Enqueue(ctx, tx, id, e, store.NewJob{Priority: 5, MaxAttempts: 3}, t0)
			return err
		})
		return job, err
	}
}

// TestPostgresEntityLock: two transactions that queue jobs of one entity
// take turns on its lock, and the second one's job waits behind the
// first's, whichever operation each uses.
func TestPostgresEntityLock(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name          string
		first, second func(s *suite, e store.Entity) queueOp
	}{
		{"Enqueue then InsertEvents", byEnqueue, byInsert},
		{"InsertEvents then Enqueue", byInsert, byEnqueue},
		{"Enqueue then Enqueue", byEnqueue, byEnqueue},
		{"InsertEvents then InsertEvents", byInsert, byInsert},
	}
	db := openDB(t, "postgres")
	st := store.NewPostgres()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSuite(t, db, st)
			s.seq = 1000 * (i + 1)
			e := ent(tc.name)
			// Events are stored before the lock is taken: storing one
			// takes its entity's lock too.
			first, second := tc.first(s, e), tc.second(s, e)

			tx1, err := db.BeginTx(s.ctx, st.TxOptions())
			require.NoError(t, err)
			defer func() { _ = tx1.Rollback() }()
			j1, err := first(tx1)
			require.NoError(t, err)
			require.False(t, j1.Blocked)

			type result struct {
				job *store.Job
				err error
			}
			done := make(chan result, 1)
			go func() {
				j, err := second(db)
				done <- result{j, err}
			}()
			received := false
			defer func() {
				if !received {
					_ = tx1.Rollback()
					<-done
				}
			}()

			waitUntil(t, 10*time.Second, "the second transaction to wait for the entity lock", func() (bool, error) {
				var n int
				err := db.QueryRowContext(s.ctx, waitingForEntityLockSQL, store.EntityLockClass).Scan(&n)
				return n > 0, err
			})
			select {
			case r := <-done:
				received = true
				t.Fatalf("the second transaction went on while the first held the entity lock: %+v", r)
			default:
			}
			require.NoError(t, tx1.Commit())

			var r result
			select {
			case r = <-done:
				received = true
			case <-time.After(10 * time.Second):
				t.Fatal("the second transaction still waits after the first committed")
			}
			require.NoError(t, r.err)
			require.True(t, r.job.Blocked, "queued behind the first transaction's job")
			require.True(t, s.job(r.job.ID).Blocked)
			require.False(t, s.job(j1.ID).Blocked)
			require.Greater(t, r.job.ID, j1.ID)
		})
	}
}

// TestPostgresNeedsReadCommitted: what changes an entity's line of jobs
// refuses a transaction whose later statements would not see what
// committed under the entity locks.
func TestPostgresNeedsReadCommitted(t *testing.T) {
	t.Parallel()
	db := openDB(t, "postgres")
	st := store.NewPostgres()
	s := newSuite(t, db, st)
	e := ent("a")
	eventID := s.storeOnly(s.unqueued(e))
	dead := s.deadLetter(s.queue(ent("dead"), 5, 3).ID, "E", t0)

	ops := []struct {
		name string
		run  func(tx bun.Tx) error
	}{
		{"Enqueue", func(tx bun.Tx) error {
			_, err := st.Enqueue(s.ctx, tx, eventID, e, store.NewJob{Priority: 5, MaxAttempts: 3}, t0)
			return err
		}},
		{"RetryDeadLetters", func(tx bun.Tx) error {
			_, err := st.RetryDeadLetters(s.ctx, tx, store.DeadLetterFilter{ID: dead.ID}, t0)
			return err
		}},
		{"FinishDeadLetter", func(tx bun.Tx) error { return st.FinishDeadLetter(s.ctx, tx, dead, t0) }},
	}
	for _, level := range []sql.IsolationLevel{sql.LevelRepeatableRead, sql.LevelSerializable} {
		for _, op := range ops {
			t.Run(level.String()+"/"+op.name, func(t *testing.T) {
				tx, err := db.BeginTx(s.ctx, &sql.TxOptions{Isolation: level})
				require.NoError(t, err)
				defer func() { _ = tx.Rollback() }()
				require.ErrorIs(t, op.run(tx), store.ErrNeedsReadCommitted)
			})
		}
		// InsertEvents checks in tds_busy_entities, inside its one
		// statement; the store turns that refusal into the sentinel.
		t.Run(level.String()+"/InsertEvents", func(t *testing.T) {
			tx, err := db.BeginTx(s.ctx, &sql.TxOptions{Isolation: level})
			require.NoError(t, err)
			defer func() { _ = tx.Rollback() }()
			_, err = st.InsertEvents(s.ctx, tx, []store.Ingest{withJob(s.event(e), 5)})
			require.ErrorIs(t, err, store.ErrNeedsReadCommitted)
			require.ErrorContains(t, err, "needs READ COMMITTED")
		})
	}
	require.Equal(t, store.StatusDeadLetter, s.job(dead.ID).Status)
	_, err := st.GetJobByEvent(s.ctx, db, eventID)
	require.ErrorIs(t, err, store.ErrNoRows)

	// READ COMMITTED, the store's own option, is fine.
	require.NoError(t, s.tx(func(tx bun.Tx) error {
		_, err := st.Enqueue(s.ctx, tx, eventID, e, store.NewJob{Priority: 5, MaxAttempts: 3}, t0)
		return err
	}))
}

// TestPostgresClaimCommitIsLocal: the claim commits without waiting for
// its flush, but only the claim: on the same connection, the next
// transaction (an ingest's, say) is synchronous again.
func TestPostgresClaimCommitIsLocal(t *testing.T) {
	t.Parallel()
	db := openDB(t, "postgres")
	db.SetMaxOpenConns(1) // the claim's connection is the one asked below
	st := store.NewPostgres()
	s := newSuite(t, db, st)
	queued := s.queue(ent("a"), 5, 3)
	// The test server runs without flushes altogether; this session
	// asks for them.
	_, err := db.ExecContext(s.ctx, "SET synchronous_commit = on")
	require.NoError(t, err)

	jobs, err := st.Claim(s.ctx, db, "w1", 10, t0, t0.Add(time.Minute))
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	require.Equal(t, queued.ID, jobs[0].ID)

	var setting string
	require.NoError(t, db.NewRaw("SHOW synchronous_commit").Scan(s.ctx, &setting))
	require.Equal(t, "on", setting)
	require.Equal(t, store.StatusProcessing, s.job(queued.ID).Status)
}

// recorder keeps the text of every query a *bun.DB sends.
type recorder struct {
	mu      sync.Mutex
	queries []string
}

func (r *recorder) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }

func (r *recorder) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries = append(r.queries, e.Query)
}

// TestPostgresCompletionPlan: statistics gathered while no job was
// processing put the completion's lease test at one row; the completion
// must still be planned without a nested loop (which had scanned the
// batch's leases once per job of the queue), and must leave nested loops
// on for the rest of the transaction.
func TestPostgresCompletionPlan(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		st   func(*bun.DB) store.Store
	}{
		{"four-statements", func(*bun.DB) store.Store { return store.NewPostgres() }},
		{"one-message", func(db *bun.DB) store.Store { st, _ := store.For(db); return st }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := openDB(t, "postgres")
			st := tc.st(db)
			s := newSuite(t, db, st)
			batch := func(n int) []store.Ingest {
				out := make([]store.Ingest, n)
				for i := range out {
					out[i] = withJob(s.event(ent(fmt.Sprint(s.seq))), 5)
				}
				return out
			}
			s.insert(batch(2000)...)
			s.complete("w", t0, s.claim("w", 2000, t0)...)
			_, err := db.ExecContext(s.ctx, "ANALYZE tds_sync_queue")
			require.NoError(t, err)
			s.insert(batch(1000)...)
			jobs := s.claim("w", 1000, t0)
			require.Len(t, jobs, 1000)

			rec := &recorder{}
			hooked := db.WithQueryHook(rec)
			done := make([]store.Completion, len(jobs))
			for i, j := range jobs {
				done[i] = store.Completion{Job: j, Outcome: "synced"}
			}
			require.NoError(t, hooked.RunInTx(s.ctx, st.TxOptions(), func(ctx context.Context, tx bun.Tx) error {
				got, _, err := st.Complete(ctx, tx, "w", done, nil, t0)
				require.NoError(t, err)
				require.Len(t, got, len(done))
				var nestloop string
				require.NoError(t, tx.NewRaw("SHOW enable_nestloop").Scan(ctx, &nestloop))
				require.Equal(t, "on", nestloop, "the completion turns nested loops back on")
				return err
			}))

			// Replay what Complete sent before the completion, and read
			// the completion's plan.
			var before, complete string
			for _, q := range rec.queries {
				switch {
				case strings.Contains(q, "pg_advisory_xact_lock"):
					before = q
				case strings.HasPrefix(q, "WITH done AS"):
					complete = q
				case strings.Contains(q, "CALL tds_lock_entities"):
					i := strings.Index(q, "WITH done AS")
					j := strings.LastIndex(q, ";\nSET LOCAL enable_nestloop TO DEFAULT")
					require.True(t, i > 0 && j > i, q)
					before, complete = q[:i], q[i:j]
				}
			}
			require.NotEmpty(t, before)
			require.NotEmpty(t, complete)
			require.NoError(t, db.RunInTx(s.ctx, st.TxOptions(), func(ctx context.Context, tx bun.Tx) error {
				if _, err := tx.ExecContext(ctx, before); err != nil {
					return err
				}
				var plan string
				if err := tx.QueryRowContext(ctx, "EXPLAIN (FORMAT JSON) "+complete).Scan(&plan); err != nil {
					return err
				}
				require.NotContains(t, plan, `"Nested Loop"`, plan)
				return nil
			}))
		})
	}
}

// Warm takes no more connections than the pool may open: asked for more,
// it would hold every connection while the rest wait for one of them.
func TestPostgresWarmWithinThePool(t *testing.T) {
	t.Parallel()
	db := openDB(t, "postgres")
	db.SetMaxOpenConns(2)
	st, err := store.For(db)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, st.Warm(ctx, db, 8))
	require.Equal(t, 2, db.Stats().OpenConnections)
}
