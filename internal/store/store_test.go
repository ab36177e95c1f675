package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/pgdriver"
	_ "modernc.org/sqlite"

	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/tdstest"
)

func TestMain(m *testing.M) { tdstest.Main(m) }

// migrationsTable is where the tests record the migrations applied, as tds
// does.
const migrationsTable = "tds_schema_migrations"

// t0 is the suite's "now": events are received then, jobs are due then.
var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// openPostgres opens a pgdriver pool on url.
func openPostgres(url string) *bun.DB {
	sqldb := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(url)))
	return bun.NewDB(sqldb, pgdialect.New())
}

// openSQLite opens a SQLite file as tds does: one connection, foreign
// keys, WAL, immediate transactions.
func openSQLite(path string) (*bun.DB, error) {
	dsn := "file:" + path + "?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_txlock=immediate"
	sqldb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	sqldb.SetMaxOpenConns(1)
	sqldb.SetMaxIdleConns(1)
	return bun.NewDB(sqldb, sqlitedialect.New()), nil
}

// openDB returns a fresh migrated database of the dialect, closed after
// the test. tdstest migrates it with tds.Migrate, which runs the same
// migrations into the same table (migrationsTable); the pools are this package's
// own, so that the suite runs against the Store without the root package.
func openDB(t *testing.T, dialect string) *bun.DB {
	t.Helper()
	var db *bun.DB
	switch dialect {
	case "postgres":
		db = openPostgres(tdstest.PostgresURL(t))
	case "pgbouncer":
		db = openPostgres(tdstest.PostgresURL(t, tdstest.ThroughPgBouncer()))
	case "sqlite":
		path, ok := strings.CutPrefix(tdstest.SQLiteURL(t), "sqlite:")
		require.True(t, ok, "tdstest.SQLiteURL returns sqlite:PATH")
		var err error
		db, err = openSQLite(path)
		require.NoError(t, err)
	default:
		t.Fatalf("unknown dialect %q", dialect)
	}
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, db.PingContext(t.Context()))
	return db
}

// eachStore runs fn as parallel subtests "postgres", "pgbouncer" (PostgreSQL
// through PgBouncer in transaction pooling mode) and "sqlite", each on a
// fresh migrated database with its Store: the conformance suite.
func eachStore(t *testing.T, fn func(t *testing.T, db *bun.DB, st store.Store)) {
	t.Helper()
	for _, d := range []string{"postgres", "pgbouncer", "sqlite"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			db := openDB(t, d)
			st, err := store.For(db)
			require.NoError(t, err)
			require.Equal(t, strings.Replace(d, "pgbouncer", "postgres", 1), st.Name())
			fn(t, db, st)
		})
	}
}

// suite is what a case needs: the database, its store, and a counter
// that keeps idempotency keys apart.
type suite struct {
	t   *testing.T
	ctx context.Context
	db  *bun.DB
	st  store.Store
	seq int
}

func newSuite(t *testing.T, db *bun.DB, st store.Store) *suite {
	return &suite{t: t, ctx: t.Context(), db: db, st: st}
}

// ent names entity id of source "zoho", type "product".
func ent(id string) store.Entity {
	return store.Entity{Source: "zoho", EntityType: "product", EntityID: id}
}

func ptr[T any](v T) *T { return &v }

// event returns a new valid event of e, received (and due) at t0, with a
// fresh idempotency key.
func (s *suite) event(e store.Entity) *store.Event {
	s.seq++
	return &store.Event{
		Source: e.Source, EventType: "update", EntityType: e.EntityType, EntityID: e.EntityID,
		IdempotencyKey: fmt.Sprintf("%s:%s:%s:update:%d", e.Source, e.EntityType, e.EntityID, s.seq),
		ContentHash:    fmt.Sprintf("hash-%d", s.seq),
		Payload:        json.RawMessage(fmt.Sprintf(`{"n": %d}`, s.seq)),
		Version:        t0, Metadata: json.RawMessage(`{}`),
		IsValid: true, ValidatedAt: ptr(t0), MovedToQueue: true, QueuedAt: ptr(t0), ReceivedAt: t0,
	}
}

// invalid returns a new event of e stored as invalid.
func (s *suite) invalid(e store.Entity) *store.Event {
	ev := s.event(e)
	ev.IsValid, ev.MovedToQueue, ev.QueuedAt = false, false, nil
	ev.ValidationErrors = json.RawMessage(`[{"message": "bad"}]`)
	return ev
}

// withJob is an ingest of ev with a job of priority prio.
func withJob(ev *store.Event, prio int) store.Ingest {
	return store.Ingest{Event: ev, Job: &store.NewJob{Priority: prio, MaxAttempts: 3}}
}

// insert stores a batch through InsertEvents on the pool.
func (s *suite) insert(batch ...store.Ingest) []store.Stored {
	s.t.Helper()
	stored, err := s.st.InsertEvents(s.ctx, s.db, batch)
	require.NoError(s.t, err)
	return stored
}

// queue stores a new event of e with a job of priority prio and max
// attempts, and returns the job.
func (s *suite) queue(e store.Entity, prio, maxAttempts int) *store.Job {
	s.t.Helper()
	return s.queueEvent(s.event(e), prio, maxAttempts)
}

// queueEvent stores ev with a job and returns the job.
func (s *suite) queueEvent(ev *store.Event, prio, maxAttempts int) *store.Job {
	s.t.Helper()
	in := withJob(ev, prio)
	in.Job.MaxAttempts = maxAttempts
	stored := s.insert(in)
	require.Len(s.t, stored, 1)
	require.NotNil(s.t, stored[0].JobID)
	return s.job(*stored[0].JobID)
}

// job reads a job.
func (s *suite) job(id int64) *store.Job {
	s.t.Helper()
	j, err := s.st.GetJob(s.ctx, s.db, id)
	require.NoError(s.t, err)
	return j
}

// blocked reads whether each job is blocked.
func (s *suite) blocked(jobs ...*store.Job) []bool {
	s.t.Helper()
	out := make([]bool, len(jobs))
	for i, j := range jobs {
		out[i] = s.job(j.ID).Blocked
	}
	return out
}

// tx runs fn in a transaction begun with the store's options.
func (s *suite) tx(fn func(tx bun.Tx) error) error {
	return s.db.RunInTx(s.ctx, s.st.TxOptions(), func(_ context.Context, tx bun.Tx) error { return fn(tx) })
}

// claim claims up to limit jobs at at, leased for a minute.
func (s *suite) claim(owner string, limit int, at time.Time) []*store.Job {
	s.t.Helper()
	jobs, err := s.st.Claim(s.ctx, s.db, owner, limit, at, at.Add(time.Minute))
	require.NoError(s.t, err)
	return jobs
}

// claimJob claims job id for owner at at: it claims every claimable job
// and hands the others back.
func (s *suite) claimJob(id int64, owner string, at time.Time) *store.Job {
	s.t.Helper()
	var mine *store.Job
	var others []store.Lease
	for _, j := range s.claim(owner, 1000, at) {
		if j.ID == id {
			mine = j
		} else {
			others = append(others, store.LeaseOf(j))
		}
	}
	require.NotNil(s.t, mine, "job %d is not claimable", id)
	if len(others) > 0 {
		back, err := s.st.HandBack(s.ctx, s.db, owner, others, at)
		require.NoError(s.t, err)
		require.Len(s.t, back, len(others))
	}
	return mine
}

// fail records a failed attempt of a job owner holds; a dead letter hands
// its entity on, as a lone failure does.
func (s *suite) fail(j *store.Job, owner string, dead bool, code string, at time.Time) {
	s.t.Helper()
	require.NoError(s.t, s.tx(func(tx bun.Tx) error {
		f := store.Failure{Job: j, Owner: owner, DeadLetter: dead, RetryAt: at, Error: "failed: " + code, Code: code}
		if err := s.st.RecordFailure(s.ctx, tx, f, at); err != nil {
			return err
		}
		if dead {
			return s.st.FinishDeadLetter(s.ctx, tx, j, at)
		}
		return nil
	}))
}

// deadLetter claims job id and dead-letters it with code.
func (s *suite) deadLetter(id int64, code string, at time.Time) *store.Job {
	s.t.Helper()
	j := s.claimJob(id, "dl", at)
	s.fail(j, "dl", true, code, at)
	return s.job(id)
}

// complete completes jobs owner holds, in one batch.
func (s *suite) complete(owner string, at time.Time, jobs ...*store.Job) {
	s.t.Helper()
	done := make([]store.Completion, len(jobs))
	for i, j := range jobs {
		done[i] = store.Completion{Job: j, Outcome: "synced"}
	}
	require.NoError(s.t, s.tx(func(tx bun.Tx) error {
		got, _, err := s.st.Complete(s.ctx, tx, owner, done, nil, at)
		if err != nil {
			return err
		}
		if len(got) != len(done) {
			return fmt.Errorf("completed %d of %d jobs", len(got), len(done))
		}
		return nil
	}))
}

// completeJob claims and completes job id.
func (s *suite) completeJob(id int64, at time.Time) {
	s.t.Helper()
	s.complete("done", at, s.claimJob(id, "done", at))
}

// ids returns the ids of jobs, sorted.
func ids(jobs []*store.Job) []int64 {
	out := make([]int64, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	slices.Sort(out)
	return out
}

// count runs a COUNT query.
func (s *suite) count(query string, args ...any) int {
	s.t.Helper()
	var n int
	require.NoError(s.t, s.db.QueryRowContext(s.ctx, query, args...).Scan(&n))
	return n
}

// sameTime requires two times to be the same instant.
func sameTime(t *testing.T, want time.Time, got *time.Time, msgAndArgs ...any) {
	t.Helper()
	require.NotNil(t, got, msgAndArgs...)
	require.Truef(t, want.Equal(*got), "want %s, got %s %v", want, *got, fmt.Sprint(msgAndArgs...))
}
