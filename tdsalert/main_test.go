package tdsalert

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/alert"
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

const (
	testAlertSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	testWebhookKey  = "test-webhook-key-0123456789"
)

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

// workerEnv is a database, a frozen clock, and a Processor and a Queue on
// both.
type workerEnv struct {
	tdb   *testDB
	db    *bun.DB
	clock *testkit.Clock
	p     *tds.Processor
	q     *tds.Queue
}

func newWorkerEnv(t *testing.T, tdb *testDB) *workerEnv {
	t.Helper()
	clock := testkit.NewClock()
	p, err := tds.NewProcessor(tdb.db, tds.WithClock(clock.Now))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	q, err := tds.NewQueue(tdb.db, tds.WithClock(clock.Now))
	require.NoError(t, err)
	return &workerEnv{tdb: tdb, db: tdb.db, clock: clock, p: p, q: q}
}

// ingest stores and queues a product event and returns its job id.
func (e *workerEnv) ingest(t *testing.T, id, name string) int64 {
	t.Helper()
	data, err := json.Marshal(map[string]any{"item_id": id, "name": name})
	require.NoError(t, err)
	res, err := e.p.Process(context.Background(),
		&tds.Event{EventType: tds.EventUpdate, EntityType: "product", EntityID: id, Data: data})
	require.NoError(t, err)
	require.True(t, res.Queued)
	return res.JobID
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

// onlyRule is a rules file enabling rule alone, with its fields (YAML
// flow mapping entries such as "threshold: 2").
func onlyRule(rule, fields string) io.Reader {
	var b strings.Builder
	b.WriteString("rules:\n")
	for _, r := range alert.DefaultRules() {
		if r.Name == rule {
			fmt.Fprintf(&b, "  - {name: %s, enabled: true%s}\n", r.Name, prefixComma(fields))
		} else {
			fmt.Fprintf(&b, "  - {name: %s, enabled: false}\n", r.Name)
		}
	}
	return strings.NewReader(b.String())
}

func prefixComma(s string) string {
	if s == "" {
		return ""
	}
	return ", " + s
}
