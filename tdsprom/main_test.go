package tdsprom

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/tdsreconcile"
	"github.com/tdscore/tds/tdstest"
)

func TestMain(m *testing.M) { tdstest.Main(m) }

const testWebhookKey = "test-webhook-key-0123456789"

// quietLogger keeps expected refusals and failures out of the test output.
var quietLogger = slog.New(slog.DiscardHandler)

// testDB is one migrated database of one dialect.
type testDB struct {
	name string // "postgres" or "sqlite"
	url  string
	db   *bun.DB
}

// eachDB runs fn as a parallel subtest against a fresh database of each
// dialect.
func eachDB(t *testing.T, fn func(t *testing.T, tdb *testDB)) {
	t.Helper()
	for _, d := range []string{"postgres", "sqlite"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			var url string
			if d == "postgres" {
				url = tdstest.PostgresURL(t)
			} else {
				url = tdstest.SQLiteURL(t)
			}
			db, err := tds.Open(t.Context(), url)
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			fn(t, &testDB{name: d, url: url, db: db})
		})
	}
}

// mustStore is the Store of db's dialect.
func mustStore(t testing.TB, db bun.IDB) store.Store {
	t.Helper()
	st, err := store.For(db)
	require.NoError(t, err)
	return st
}

// newTestHandler returns a Handler on tdb with opts and a silent logger,
// closed when the test ends.
func newTestHandler(t *testing.T, tdb *testDB, opts ...tds.Option) *tds.Handler {
	t.Helper()
	h, err := tds.NewHandler(tdb.db, append([]tds.Option{tds.WithLogger(quietLogger)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	return h
}

// fixtureBytes reads the root package's testdata/envelope/name.
func fixtureBytes(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "envelope", name))
	require.NoError(t, err)
	return b
}

// webhook posts body, JSON, to /webhooks/route through h with the test
// key; opts may replace either.
func webhook(t *testing.T, h http.Handler, route string, body []byte, opts ...tdstest.SendOption) tdstest.Answer {
	t.Helper()
	base := []tdstest.SendOption{tdstest.WebhookKey(testWebhookKey), tdstest.Body("application/json", body)}
	return tdstest.Send(t, h, route, tds.Event{}, append(base, opts...)...)
}

// workerEnv is a database, a frozen clock, and a Processor on both.
type workerEnv struct {
	db    *bun.DB
	clock *testkit.Clock
	p     *tds.Processor
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

// reconcileEnv is a workerEnv with a fake Zoho and a Reconciler on it.
type reconcileEnv struct {
	*workerEnv
	fake *tdstest.Zoho
	rc   *tdsreconcile.Reconciler
}

func newReconcileEnv(t *testing.T, tdb *testDB, opts ...tdsreconcile.Option) *reconcileEnv {
	t.Helper()
	clock := testkit.NewClock()
	p, err := tds.NewProcessor(tdb.db, tds.WithClock(clock.Now))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	e := &reconcileEnv{workerEnv: &workerEnv{db: tdb.db, clock: clock, p: p}, fake: tdstest.NewZoho(t)}
	require.NoError(t, tds.MigrateMirror(context.Background(), e.db, tds.ZohoRegistry()))
	e.rc = e.newReconcilerAPI(t, func(*tdsreconcile.ZohoAPI) {}, opts...)
	return e
}

// newReconcilerAPI returns a Reconciler on the fake, its ZohoAPI adjusted
// by edit, closed when the test ends.
func (e *reconcileEnv) newReconcilerAPI(t *testing.T, edit func(*tdsreconcile.ZohoAPI), opts ...tdsreconcile.Option) *tdsreconcile.Reconciler {
	t.Helper()
	var api tdsreconcile.ZohoAPI = e.fake.API()
	edit(&api)
	base := []tdsreconcile.Option{tdsreconcile.WithClock(e.clock.Now), tdsreconcile.WithLogger(quietLogger)}
	rc, err := tdsreconcile.New(e.db, e.p, api, append(base, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

func budgetOf(n int) func(*tdsreconcile.ZohoAPI) {
	return func(api *tdsreconcile.ZohoAPI) { api.DailyBudget = n }
}

var productsOnly = []string{"product"}

// productRecord builds a product as Zoho's API holds it, version at.
func productRecord(id string, at time.Time, rev int) map[string]any {
	zohoTime := at.UTC().Format(tds.ZohoTimeLayout)
	return map[string]any{"last_modified_time": zohoTime, "created_time": zohoTime, "rev": rev,
		"item_id": id, "name": fmt.Sprintf("Item %s r%d", id, rev), "rate": 10 + rev}
}

// putProducts puts n products into the fake, product i at base+i*step.
func (e *reconcileEnv) putProducts(t *testing.T, n int, base time.Time, step time.Duration) {
	t.Helper()
	for i := range n {
		e.fake.Put("items", productRecord(fmt.Sprintf("pro-%04d", i), base.Add(time.Duration(i)*step), 0))
	}
}

func mustLookup(t *testing.T, typ string) tds.EntityType {
	t.Helper()
	et, ok := tds.ZohoRegistry().Lookup(typ)
	require.True(t, ok, typ)
	return et
}
