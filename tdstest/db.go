package tdstest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"go.uber.org/goleak"

	"github.com/tdscore/tds"
)

// mainCalled records that the test binary runs through Main, which is what
// stops the server; without it a started server would outlive the tests.
var mainCalled atomic.Bool

// Main runs the tests of a package (call it from TestMain:
// `func TestMain(m *testing.M) { tdstest.Main(m) }`), stops the PostgreSQL
// server the kit started, if any, then looks for goroutines the tests
// leaked (goleak, with opts, such as goleak.IgnoreTopFunction for a known
// one), and exits with m.Run's code. A failure to stop the server or a
// leaked goroutine turns a passing run into a failing one.
func Main(m *testing.M, opts ...goleak.Option) {
	mainCalled.Store(true)
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "tdstest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	// After shutdown, so that the admin pool's goroutines are gone. goleak
	// retries for a while, so goroutines that are ending do not count.
	// pgdriver, modernc sqlite and the local server leave none behind once
	// every pool is closed. The container path has not run on the
	// machines this was written on; should testcontainers-go leave a
	// goroutine (its reaper connection ends in TerminateContainer), ignore
	// exactly that function here and say why.
	if err := goleak.Find(opts...); err != nil {
		fmt.Fprintf(os.Stderr, "tdstest: goroutines leaked by the tests: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// DBOption changes the database [Postgres], [PostgresURL], [SQLite] or
// [SQLiteURL] returns.
type DBOption func(*dbSettings)

type dbSettings struct {
	unmigrated bool
	pgbouncer  bool
}

// Unmigrated returns an empty database, without the tds schema, for tests
// of migrations.
func Unmigrated() DBOption {
	return func(s *dbSettings) { s.unmigrated = true }
}

func dbSettingsOf(opts []DBOption) dbSettings {
	var s dbSettings
	for _, o := range opts {
		o(&s)
	}
	return s
}

// PostgresURL returns the URL (postgres://user@host:port/db?sslmode=disable,
// as [tds.Open] takes it) of a fresh PostgreSQL database with the tds schema
// that belongs to this test only and is dropped when it ends. It needs
// [Main] in the package's TestMain. When no PostgreSQL can be found it skips
// the test, or fails it when the CI environment variable is set.
func PostgresURL(t testing.TB, opts ...DBOption) string {
	t.Helper()
	set := dbSettingsOf(opts)
	if !mainCalled.Load() {
		t.Fatal("tdstest: PostgreSQL needs `func TestMain(m *testing.M) { tdstest.Main(m) }` in this package, so that the server is stopped")
	}
	s, err := getServer()
	if errors.Is(err, errNoServer) {
		msg := fmt.Sprintf("tdstest: %v; set TDS_TEST_DATABASE_URL, start a Docker engine, or install PostgreSQL (initdb and pg_ctl)", err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " (failing rather than skipping because CI is set)")
		}
		t.Skip(msg)
	}
	if err != nil {
		t.Fatalf("tdstest: %v", err)
	}

	ctx := t.Context()
	source := "template0"
	if !set.unmigrated {
		if source, err = s.template(ctx); err != nil {
			t.Fatalf("tdstest: %v", err)
		}
	}
	name := fmt.Sprintf("%s_%d", s.prefix, s.seq.Add(1))
	if err := s.clone(ctx, name, source); err != nil {
		t.Fatalf("tdstest: %v", err)
	}
	t.Cleanup(func() {
		// The test's context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.drop(ctx, name); err != nil {
			t.Errorf("tdstest: %v", err)
		}
	})
	if set.pgbouncer {
		b, err := getBouncer(s)
		if errors.Is(err, errNoBouncer) {
			msg := fmt.Sprintf("tdstest: %v; install PgBouncer (Debian's pgbouncer)", err)
			if os.Getenv("CI") != "" {
				t.Fatal(msg + " (failing rather than skipping because CI is set)")
			}
			t.Skip(msg)
		}
		if err != nil {
			t.Fatalf("tdstest: %v", err)
		}
		return b.viaBouncer(s.dbURL(name))
	}
	return s.dbURL(name)
}

// Postgres returns a pool ([tds.Open]) on a fresh database of [PostgresURL],
// closed when the test ends.
func Postgres(t testing.TB, opts ...DBOption) *bun.DB {
	t.Helper()
	return open(t, PostgresURL(t, opts...))
}

// SQLiteURL returns the URL ("sqlite:" and a path) of a fresh SQLite
// database file with the tds schema in t.TempDir(), removed when the test
// ends. With [Unmigrated] the file does not exist yet.
func SQLiteURL(t testing.TB, opts ...DBOption) string {
	t.Helper()
	if dbSettingsOf(opts).pgbouncer {
		t.Fatal("tdstest: ThroughPgBouncer applies to PostgreSQL databases only")
	}
	u := "sqlite:" + filepath.Join(t.TempDir(), "test.db")
	if !dbSettingsOf(opts).unmigrated {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := migrateURL(ctx, u); err != nil {
			t.Fatalf("tdstest: %v", err)
		}
	}
	return u
}

// SQLite returns a pool ([tds.Open]) on a fresh database of [SQLiteURL],
// closed when the test ends.
func SQLite(t testing.TB, opts ...DBOption) *bun.DB {
	t.Helper()
	return open(t, SQLiteURL(t, opts...))
}

func open(t testing.TB, url string) *bun.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := tds.Open(ctx, url)
	if err != nil {
		t.Fatalf("tdstest: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// migrateURL applies the tds schema to the database at url and closes its
// pool: PostgreSQL refuses to clone a template that has sessions.
func migrateURL(ctx context.Context, url string) error {
	db, err := tds.Open(ctx, url)
	if err != nil {
		return err
	}
	return errors.Join(tds.Migrate(ctx, db), db.Close())
}
