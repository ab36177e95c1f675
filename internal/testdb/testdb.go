// Package testdb holds the test plumbing shared by the tests of the
// optional packages (tdsalert, tdsprom, tdsreconcile, tdsui): a migrated
// database of each dialect, a Processor and a Worker on a test clock,
// webhooks posted from the module's fixtures, a fake Zoho with the mirror
// tables, and the alert rules of a single rule.
//
// It imports tds and tdstest, so the root package's own tests cannot use
// it (tdstest imports tds); what they share with these lives in
// internal/testkit. Only _test.go files import it.
package testdb

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/tdstest"
)

// QuietLogger discards what it is given, keeping expected refusals and
// failures out of the test output.
var QuietLogger = slog.New(slog.DiscardHandler)

// DB is one migrated database of one dialect.
type DB struct {
	Name string // "postgres" or "sqlite"
	URL  string // as tds.Open takes it, for a second pool or a child process
	DB   *bun.DB
}

// Open returns a fresh migrated database of dialect ("postgres" or
// "sqlite"), its pool closed when the test ends. PostgreSQL needs
// tdstest.Main in the package's TestMain.
func Open(t testing.TB, dialect string) *DB {
	t.Helper()
	var url string
	switch dialect {
	case "postgres":
		url = tdstest.PostgresURL(t)
	case "sqlite":
		url = tdstest.SQLiteURL(t)
	default:
		t.Fatalf("testdb: unknown dialect %q", dialect)
	}
	db, err := tds.Open(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return &DB{Name: dialect, URL: url, DB: db}
}

// EachDB runs fn as a parallel subtest, named for the dialect, against a
// fresh database of each dialect: "postgres" and "sqlite".
func EachDB(t *testing.T, fn func(t *testing.T, tdb *DB)) {
	t.Helper()
	for _, d := range []string{"postgres", "sqlite"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, Open(t, d))
		})
	}
}

// Store is the Store of db's dialect.
func Store(t testing.TB, db bun.IDB) store.Store {
	t.Helper()
	st, err := store.For(db)
	require.NoError(t, err)
	return st
}
