package tdsreconcile

import (
	"os"
	"testing"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testdb"
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

// workerEnv is a database, a frozen clock and a processor on both.
type workerEnv struct {
	db    *bun.DB
	clock *testkit.Clock
	p     *tds.Processor
}

func newWorkerEnv(t *testing.T, tdb *testdb.DB) *workerEnv {
	t.Helper()
	clock := testkit.NewClock()
	return &workerEnv{db: tdb.DB, clock: clock, p: testdb.Processor(t, tdb.DB, clock.Now)}
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
