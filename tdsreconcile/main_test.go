package tdsreconcile

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/tdstest"
)

func TestMain(m *testing.M) {
	// A child process started by a multi-process test.
	if mode := os.Getenv("TDS_TEST_CHILD_RECONCILE"); mode != "" {
		os.Exit(childReconcile(mode))
	}
	tdstest.Main(m)
}

// quietLogger discards what it is given.
var quietLogger = slog.New(slog.DiscardHandler)

// testDB is one migrated database of one dialect.
type testDB struct {
	name string // "postgres" or "sqlite"
	url  string
	db   *bun.DB
}

// openTestDB opens a fresh migrated database of the dialect.
func openTestDB(t testing.TB, dialect string) *testDB {
	t.Helper()
	var url string
	switch dialect {
	case "postgres":
		url = tdstest.PostgresURL(t)
	case "sqlite":
		url = tdstest.SQLiteURL(t)
	default:
		t.Fatalf("unknown dialect %q", dialect)
	}
	db, err := tds.Open(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return &testDB{name: dialect, url: url, db: db}
}

// eachDB runs fn as a parallel subtest against a fresh database of each
// dialect.
func eachDB(t *testing.T, fn func(t *testing.T, tdb *testDB)) {
	t.Helper()
	for _, d := range []string{"postgres", "sqlite"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, openTestDB(t, d))
		})
	}
}

// workerEnv is a database, a frozen clock and a processor on both.
type workerEnv struct {
	tdb   *testDB
	db    *bun.DB
	clock *testkit.Clock
	p     *tds.Processor
}

func newWorkerEnv(t *testing.T, tdb *testDB) *workerEnv {
	t.Helper()
	e := &workerEnv{tdb: tdb, db: tdb.db, clock: testkit.NewClock()}
	e.p = e.newProcessor(t, tdb.db)
	return e
}

// newProcessor returns a processor on db, on the env's clock, closed when
// the test ends.
func (e *workerEnv) newProcessor(t *testing.T, db *bun.DB, opts ...tds.Option) *tds.Processor {
	t.Helper()
	p, err := tds.NewProcessor(db, append([]tds.Option{tds.WithClock(e.clock.Now), tds.WithLogger(quietLogger)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// start runs a Worker with fast test timings until the test ends or the
// returned stop is called; stop waits for Run to return and checks it
// returned nil.
func (e *workerEnv) start(t *testing.T, s tds.Syncer, opts ...tds.Option) (stop func()) {
	t.Helper()
	base := []tds.Option{tds.WithClock(e.clock.Now), tds.WithLogger(quietLogger), tds.WithPollInterval(10 * time.Millisecond),
		tds.WithHousekeepingInterval(20 * time.Millisecond), tds.WithShutdownTimeout(5 * time.Second)}
	w, err := tds.NewWorker(e.db, s, append(base, opts...)...)
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

// count runs a COUNT query.
func count(t *testing.T, db bun.IDB, query string, args ...any) int {
	t.Helper()
	return testkit.Count(t, db, query, args...)
}

// requireSameTime asserts two times are the same instant.
func requireSameTime(t *testing.T, want, got time.Time, msgAndArgs ...any) {
	t.Helper()
	testkit.RequireSameTime(t, want, got, msgAndArgs...)
}

// mustStore is the Store of db's dialect.
func mustStore(t testing.TB, db bun.IDB) store.Store {
	t.Helper()
	st, err := store.For(db)
	require.NoError(t, err)
	return st
}

// assertNoError reports err without stopping the goroutine's loop.
func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}
