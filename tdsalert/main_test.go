package tdsalert

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/tdstest"
)

func TestMain(m *testing.M) {
	// A child process started by a multi-process test.
	if rcv := os.Getenv("TDS_TEST_CHILD_ALERT"); rcv != "" {
		os.Exit(childAlert(rcv))
	}
	tdstest.Main(m)
}

const testAlertSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// workerEnv is a database, a frozen clock, and a Processor and a Queue on
// both.
type workerEnv struct {
	db    *bun.DB
	clock *testkit.Clock
	p     *tds.Processor
	q     *tds.Queue
}

func newWorkerEnv(t *testing.T, tdb *testdb.DB) *workerEnv {
	t.Helper()
	clock := testkit.NewClock()
	q, err := tds.NewQueue(tdb.DB, tds.WithClock(clock.Now))
	require.NoError(t, err)
	return &workerEnv{db: tdb.DB, clock: clock, p: testdb.Processor(t, tdb.DB, clock.Now), q: q}
}

// ingest stores and queues a product event and returns its job id.
func (e *workerEnv) ingest(t *testing.T, id, name string) int64 {
	t.Helper()
	return testdb.Ingest(t, e.p, id, name)
}

// waitStatus polls until job id has status st.
func (e *workerEnv) waitStatus(t *testing.T, id int64, st tds.Status) {
	t.Helper()
	var last *tds.Job
	require.Eventually(t, func() bool {
		j, err := e.q.Get(context.Background(), id)
		require.NoError(t, err)
		last = j
		return j.Status == st
	}, 20*time.Second, 5*time.Millisecond, "job %d never became %s; last %+v", id, st, last)
}
