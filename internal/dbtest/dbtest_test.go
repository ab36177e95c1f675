package dbtest_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/tdscore/tds/internal/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// prepareCalls counts the runs of prepare across the whole test binary.
var prepareCalls atomic.Int32

// prepare stands in for the migrations: one table with one row.
func prepare(ctx context.Context, url string) error {
	prepareCalls.Add(1)
	db := open(url)
	defer db.Close()
	_, err := db.ExecContext(ctx, `CREATE TABLE migrated (id int PRIMARY KEY); INSERT INTO migrated VALUES (1)`)
	return err
}

func open(url string) *sql.DB {
	return sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(url)))
}

// postgres returns a connection to a fresh database cloned from the prepared template.
func postgres(t *testing.T) (*sql.DB, string) {
	t.Helper()
	url := dbtest.PostgresURL(t, prepare)
	require.EqualValues(t, 1, prepareCalls.Load(), "prepare must run exactly once per test binary")
	db := open(url)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db, url
}

func tableExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var exists bool
	err := db.QueryRowContext(t.Context(), `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&exists)
	require.NoError(t, err)
	return exists
}

func TestPostgresURLIsolatesParallelTests(t *testing.T) {
	var (
		mu      sync.Mutex
		dbNames = map[string]string{} // subtest -> current_database()
		created = map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
	)
	t.Run("group", func(t *testing.T) {
		for me, other := range map[string]string{"a": "b", "b": "a"} {
			t.Run(me, func(t *testing.T) {
				t.Parallel()
				// Closed on every way out, so that the other subtest never waits forever.
				signal := sync.OnceFunc(func() { close(created[me]) })
				defer signal()

				db, url := postgres(t)
				require.True(t, strings.HasPrefix(url, "postgres://"), url)
				var name string
				require.NoError(t, db.QueryRowContext(t.Context(), `SELECT current_database()`).Scan(&name))
				mu.Lock()
				dbNames[me] = name
				mu.Unlock()

				var n int
				require.NoError(t, db.QueryRowContext(t.Context(), `SELECT count(*) FROM migrated`).Scan(&n))
				require.Equal(t, 1, n, "the clone carries the template's data")

				_, err := db.ExecContext(t.Context(), "CREATE TABLE only_"+me+" (x int)")
				require.NoError(t, err)
				signal()

				select {
				case <-created[other]:
				case <-time.After(time.Minute):
					t.Fatalf("subtest %s did not create its table", other)
				}
				require.True(t, tableExists(t, db, "only_"+me))
				require.False(t, tableExists(t, db, "only_"+other), "a table of the other test is visible")
			})
		}
	})
	if t.Failed() || len(dbNames) < 2 {
		return // failed or skipped
	}
	require.NotEqual(t, dbNames["a"], dbNames["b"])
	require.EqualValues(t, 1, prepareCalls.Load())
}

func TestPostgresURLDropsTheDatabaseAtCleanup(t *testing.T) {
	var url string
	t.Run("user", func(t *testing.T) {
		db, u := postgres(t)
		require.NoError(t, db.PingContext(t.Context()))
		url = u
	})
	if url == "" {
		t.Skip("no PostgreSQL")
	}
	db := open(url)
	defer db.Close()
	err := db.PingContext(t.Context())
	require.Error(t, err)
	require.Contains(t, err.Error(), "does not exist")
}

func TestPostgresURLWithoutPrepareIsEmpty(t *testing.T) {
	t.Parallel()
	url := dbtest.PostgresURL(t, nil)
	db := open(url)
	defer db.Close()
	require.False(t, tableExists(t, db, "migrated"))
}

// fatalRecorder stands in for a test to catch what PostgresURL reports.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Fatal(args ...any) { r.msg = fmt.Sprint(args...); runtime.Goexit() }
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *fatalRecorder) Skip(args ...any) { r.msg = "skip: " + fmt.Sprint(args...); runtime.Goexit() }

func TestPostgresURLRejectsASecondPrepare(t *testing.T) {
	postgres(t) // make sure the template is built by prepare

	other := func(context.Context, string) error { return nil }
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		dbtest.PostgresURL(rec, other)
	}()
	<-done
	require.Contains(t, rec.msg, "different prepare func")
	require.EqualValues(t, 1, prepareCalls.Load())
}

func TestSQLiteURLIsDistinctPerTest(t *testing.T) {
	var (
		mu   sync.Mutex
		urls []string
	)
	t.Run("group", func(t *testing.T) {
		for i := range 2 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				url := dbtest.SQLiteURL(t)
				path, ok := strings.CutPrefix(url, "sqlite:")
				require.True(t, ok, url)
				require.True(t, filepath.IsAbs(path), path)
				fi, err := os.Stat(filepath.Dir(path))
				require.NoError(t, err)
				require.True(t, fi.IsDir())
				mu.Lock()
				urls = append(urls, url)
				mu.Unlock()
			})
		}
	})
	require.Len(t, urls, 2)
	require.NotEqual(t, urls[0], urls[1])
}
