package tdsprom

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/internal/zohofake"
	"github.com/tdscore/tds/tdsreconcile"
	"github.com/tdscore/tds/tdstest"
)

func TestMain(m *testing.M) { tdstest.Main(m) }

// reconcileEnv is a database, a frozen clock, a Processor, a fake Zoho
// and a Reconciler on them.
type reconcileEnv struct {
	db    *bun.DB
	clock *testkit.Clock
	p     *tds.Processor
	fake  *zohofake.Server
	rc    *tdsreconcile.Reconciler
}

func newReconcileEnv(t *testing.T, tdb *testdb.DB, opts ...tdsreconcile.Option) *reconcileEnv {
	t.Helper()
	clock := testkit.NewClock()
	e := &reconcileEnv{db: tdb.DB, clock: clock, p: testdb.Processor(t, tdb.DB, clock.Now), fake: testdb.Zoho(t, tdb.DB)}
	e.rc = e.newReconcilerAPI(t, func(*tdsreconcile.ZohoAPI) {}, opts...)
	return e
}

// newReconcilerAPI returns a Reconciler on the fake, its ZohoAPI adjusted
// by edit, closed when the test ends.
func (e *reconcileEnv) newReconcilerAPI(t *testing.T, edit func(*tdsreconcile.ZohoAPI), opts ...tdsreconcile.Option) *tdsreconcile.Reconciler {
	t.Helper()
	api := tdsreconcile.ZohoAPI(testdb.ZohoAPI(e.fake.URL()))
	edit(&api)
	base := []tdsreconcile.Option{tdsreconcile.WithClock(e.clock.Now), tdsreconcile.WithLogger(testdb.QuietLogger)}
	rc, err := tdsreconcile.New(e.db, e.p, api, append(base, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

func budgetOf(n int) func(*tdsreconcile.ZohoAPI) {
	return func(api *tdsreconcile.ZohoAPI) { api.DailyBudget = n }
}

var productsOnly = []string{"product"}
