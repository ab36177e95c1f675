package tds

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/internal/testkit"
)

func TestMain(m *testing.M) {
	// A child process started by a multi-process test.
	if url := os.Getenv("TDS_TEST_CHILD_MIGRATE"); url != "" {
		os.Exit(childMigrate(url))
	}
	if mode := os.Getenv("TDS_TEST_CHILD_WORKER"); mode != "" {
		os.Exit(childWorker(mode))
	}
	if TestKit.Main == nil {
		os.Stderr.WriteString("tds: TestKit is not set: kit_test.go (package tds_test) must hand tdstest in\n")
		os.Exit(2)
	}
	TestKit.Main(m)
}

// TestKit is package tdstest, which gives the tests their databases, handed
// in by kit_test.go. The tests of this package are in package tds, and
// tdstest imports tds: importing it here would be an import cycle. The
// external test package (tds_test) may import it, and both packages are
// linked into the one test binary, whose package initialisation (kit_test.go's
// init) runs before TestMain. Exported only to the tests: this is a _test file.
var TestKit struct {
	Main func(m *testing.M)
	// PostgresURL, PgBouncerURL (PostgreSQL through PgBouncer in
	// transaction pooling mode) and SQLiteURL return a fresh migrated
	// database, or an empty one when empty is true.
	PostgresURL, PgBouncerURL, SQLiteURL func(t testing.TB, empty bool) string
}

func childMigrate(url string) int {
	ctx := context.Background()
	db, err := Open(ctx, url)
	if err != nil {
		os.Stderr.WriteString(err.Error())
		return 2
	}
	defer db.Close()
	if err := Migrate(ctx, db); err != nil {
		os.Stderr.WriteString(err.Error())
		return 1
	}
	return 0
}

// testDB is one migrated database of one dialect.
type testDB struct {
	name string // "postgres" or "sqlite"
	url  string
	db   *bun.DB
}

// openTestDB opens a fresh migrated database of the dialect.
func openTestDB(t testing.TB, dialect string) *testDB {
	t.Helper()
	ctx := context.Background()
	var url string
	switch dialect {
	case "postgres":
		url = TestKit.PostgresURL(t, false)
	case "pgbouncer":
		url = TestKit.PgBouncerURL(t, false)
	case "sqlite":
		url = TestKit.SQLiteURL(t, false)
	default:
		t.Fatalf("unknown dialect %q", dialect)
	}
	db, err := Open(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return &testDB{name: dialect, url: url, db: db}
}

// eachDB runs fn as a parallel subtest against a fresh database of each
// dialect: the conformance suite.
func eachDB(t *testing.T, fn func(t *testing.T, tdb *testDB)) {
	t.Helper()
	eachOf(t, []string{"postgres", "sqlite"}, fn)
}

// eachDBAndPooler is eachDB and PostgreSQL through PgBouncer in transaction
// pooling mode ("pgbouncer"), for what a pooler could break.
func eachDBAndPooler(t *testing.T, fn func(t *testing.T, tdb *testDB)) {
	t.Helper()
	eachOf(t, []string{"postgres", "pgbouncer", "sqlite"}, fn)
}

func eachOf(t *testing.T, dialects []string, fn func(t *testing.T, tdb *testDB)) {
	t.Helper()
	for _, d := range dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, openTestDB(t, d))
		})
	}
}

// testClock is a settable clock.
type testClock = testkit.Clock

func newTestClock() *testClock { return testkit.NewClock() }

// logBuffer is a logger whose output tests can read.
type logBuffer = testkit.LogBuffer

// fixture reads testdata/envelope/name and parses it.
func fixture(t testing.TB, name string) *Event {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", "envelope", name))
	require.NoError(t, err)
	ev, err := ParseEnvelope(body)
	require.NoError(t, err)
	return ev
}

// productEvent is a valid product update with the given name.
func productEvent(id, name string) *Event {
	data, _ := json.Marshal(map[string]any{"item_id": id, "name": name})
	return &Event{EventType: EventUpdate, EntityType: "product", EntityID: id, Data: data}
}

// unprocessedSQL counts the inbox events (alias e) not processed: without
// processed_at and without a completed job.
const unprocessedSQL = `SELECT COUNT(*) FROM tds_inbox_events AS e WHERE e.processed_at IS NULL
AND NOT EXISTS (SELECT 1 FROM tds_sync_queue AS q WHERE q.inbox_event_id = e.id AND q.status = 'completed')`

func count(t *testing.T, db bun.IDB, query string, args ...any) int {
	t.Helper()
	return testkit.Count(t, db, query, args...)
}

// requireSameTime asserts two times are the same instant (databases give
// back times in their own location).
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

// jobVersion is a job's outcome with its event's version.
type jobVersion struct {
	ID       int64     `bun:"id"`
	EntityID string    `bun:"source_entity_id"`
	Outcome  Outcome   `bun:"outcome"`
	Version  time.Time `bun:"source_modified_at"`
}

// jobVersions lists every job with its outcome and version, in id order.
func jobVersions(t *testing.T, db *bun.DB) []jobVersion {
	t.Helper()
	var jobs []jobVersion
	require.NoError(t, db.NewSelect().TableExpr("tds_sync_queue AS q").
		Join("JOIN tds_inbox_events AS e ON e.id = q.inbox_event_id").
		ColumnExpr("q.id, q.source_entity_id, q.outcome, e.source_modified_at").
		OrderExpr("q.id").Scan(context.Background(), &jobs))
	return jobs
}
