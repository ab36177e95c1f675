package tds

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
)

func TestMigrateIsIdempotent(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		before := count(t, tdb.db, "SELECT COUNT(*) FROM "+MigrationsTable)
		require.Positive(t, before)
		require.NoError(t, Migrate(ctx, tdb.db))
		require.NoError(t, Migrate(ctx, tdb.db))
		require.Equal(t, before, count(t, tdb.db, "SELECT COUNT(*) FROM "+MigrationsTable))
		// The host application's bun_migrations is not ours to create.
		var n int
		q := "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'bun_migrations'"
		if tdb.name == "sqlite" {
			q = "SELECT COUNT(*) FROM sqlite_master WHERE name = 'bun_migrations'"
		}
		require.NoError(t, tdb.db.QueryRowContext(ctx, q).Scan(&n))
		require.Zero(t, n)
	})
}

func TestMigrateConcurrently(t *testing.T) {
	for _, dialect := range []string{"postgres", "pgbouncer", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			url := freshURL(t, dialect)
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Separate *bun.DB values, as separate processes would have.
					db, err := Open(ctx, url)
					if err != nil {
						errs[i] = err
						return
					}
					defer db.Close()
					errs[i] = Migrate(ctx, db)
				}()
			}
			wg.Wait()
			for _, err := range errs {
				require.NoError(t, err)
			}
			requireMigratedOnce(t, url)
		})
	}
}

func TestMigrateFromTwoProcesses(t *testing.T) {
	for _, dialect := range []string{"postgres", "pgbouncer"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			migrateFromTwoProcesses(t, freshURL(t, dialect))
		})
	}
}

func migrateFromTwoProcesses(t *testing.T, url string) {
	cmds := make([]*exec.Cmd, 2)
	outs := make([]strings.Builder, 2)
	for i := range cmds {
		cmds[i] = exec.Command(os.Args[0], "-test.run=^$")
		cmds[i].Env = append(os.Environ(), "TDS_TEST_CHILD_MIGRATE="+url)
		cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
		require.NoError(t, cmds[i].Start())
	}
	for i, c := range cmds {
		require.NoError(t, c.Wait(), outs[i].String())
	}
	requireMigratedOnce(t, url)
}

func TestFailedMigrationIsNotRecorded(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		fsys := fstest.MapFS{
			"0001_ok.up.sql":  {Data: []byte("CREATE TABLE tds_test_ok (id INTEGER PRIMARY KEY)")},
			"0002_bad.up.sql": {Data: []byte("CREATE TABLE tds_test_half (id INTEGER PRIMARY KEY);\nSELECT * FROM no_such_table;")},
		}
		err := applyMigrations(ctx, tdb.db, fsys, "tds_test_migrations")
		require.Error(t, err)
		require.Contains(t, err.Error(), "0002_bad")
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_test_migrations"))
		require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_test_ok"))
		// The failed migration's first statement was rolled back with it.
		_, err = tdb.db.ExecContext(ctx, "SELECT * FROM tds_test_half")
		require.Error(t, err)

		fsys["0002_bad.up.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE tds_test_half (id INTEGER PRIMARY KEY)")}
		require.NoError(t, applyMigrations(ctx, tdb.db, fsys, "tds_test_migrations"))
		require.Equal(t, 2, count(t, tdb.db, "SELECT COUNT(*) FROM tds_test_migrations"))
	})
}

func TestReadMigrationsRejectsBadNames(t *testing.T) {
	t.Parallel()
	_, err := store.ReadMigrations(fstest.MapFS{"first.up.sql": {Data: []byte("SELECT 1")}})
	require.Error(t, err)
	_, err = store.ReadMigrations(fstest.MapFS{"1_a.up.sql": {}, "01_b.up.sql": {}})
	require.ErrorContains(t, err, "share version 1")
}

// freshURL is an empty, unmigrated database of the dialect.
func freshURL(t *testing.T, dialect string) string {
	switch dialect {
	case "postgres":
		return TestKit.PostgresURL(t, true)
	case "pgbouncer":
		return TestKit.PgBouncerURL(t, true)
	}
	return TestKit.SQLiteURL(t, true)
}

func requireMigratedOnce(t *testing.T, url string) {
	t.Helper()
	db, err := Open(context.Background(), url)
	require.NoError(t, err)
	defer db.Close()
	files, err := migrationFS(db)
	require.NoError(t, err)
	want, err := store.ReadMigrations(files)
	require.NoError(t, err)
	require.Equal(t, len(want), count(t, db, "SELECT COUNT(*) FROM "+MigrationsTable))
	require.Equal(t, 0, count(t, db, "SELECT COUNT(*) FROM tds_sync_queue"))
}

// applyMigrations applies fsys to db.
func applyMigrations(ctx context.Context, db *bun.DB, fsys fs.FS, table string) error {
	return store.ApplyMigrations(ctx, db, fsys, table, nil)
}

// migrationFS is the embedded schema of db's dialect.
func migrationFS(db *bun.DB) (fs.FS, error) {
	st, err := store.For(db)
	if err != nil {
		return nil, err
	}
	return store.MigrationFS(st)
}
