package tdstest_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdstest"
)

func TestMain(m *testing.M) { tdstest.Main(m) }

func openSQL(url string) *sql.DB {
	return sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(url)))
}

func tableExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var exists bool
	err := db.QueryRowContext(t.Context(), `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&exists)
	require.NoError(t, err)
	return exists
}

func TestPostgresIsolatesParallelTests(t *testing.T) {
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

				url := tdstest.PostgresURL(t)
				require.True(t, strings.HasPrefix(url, "postgres://"), url)
				db := openSQL(url)
				defer db.Close()
				var name string
				require.NoError(t, db.QueryRowContext(t.Context(), `SELECT current_database()`).Scan(&name))
				mu.Lock()
				dbNames[me] = name
				mu.Unlock()

				require.True(t, tableExists(t, db, "tds_sync_queue"), "the clone carries the template's schema")
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
}

func TestPostgresDropsTheDatabaseAtCleanup(t *testing.T) {
	var url string
	t.Run("user", func(t *testing.T) {
		db := tdstest.Postgres(t)
		require.NoError(t, db.PingContext(t.Context()))
		url = tdstest.PostgresURL(t)
	})
	if url == "" {
		t.Skip("no PostgreSQL")
	}
	db := openSQL(url)
	defer db.Close()
	err := db.PingContext(t.Context())
	require.Error(t, err)
	require.Contains(t, err.Error(), "does not exist")
}

func TestUnmigratedIsEmpty(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		db := openSQL(tdstest.PostgresURL(t, tdstest.Unmigrated()))
		defer db.Close()
		require.False(t, tableExists(t, db, "tds_sync_queue"))
	})
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		path, ok := strings.CutPrefix(tdstest.SQLiteURL(t, tdstest.Unmigrated()), "sqlite:")
		require.True(t, ok)
		_, err := os.Stat(path)
		require.ErrorIs(t, err, os.ErrNotExist)
	})
}

// Both databases come migrated: a Queue works on them at once.
func TestDatabasesAreMigrated(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(testing.TB, ...tdstest.DBOption) *bun.DB{"postgres": tdstest.Postgres, "sqlite": tdstest.SQLite} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			q, err := tds.NewQueue(open(t))
			require.NoError(t, err)
			stats, err := q.Stats(t.Context())
			require.NoError(t, err)
			require.Zero(t, stats.TotalJobs)
		})
	}
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
				url := tdstest.SQLiteURL(t)
				path, ok := strings.CutPrefix(url, "sqlite:")
				require.True(t, ok, url)
				require.True(t, filepath.IsAbs(path), path)
				fi, err := os.Stat(path)
				require.NoError(t, err)
				require.True(t, fi.Mode().IsRegular())
				mu.Lock()
				urls = append(urls, url)
				mu.Unlock()
			})
		}
	})
	require.Len(t, urls, 2)
	require.NotEqual(t, urls[0], urls[1])
}
