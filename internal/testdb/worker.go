package testdb

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testkit"
)

// Test timings of StartWorker: short, so that a test waits milliseconds
// for the Worker, and a shutdown that cannot hang a test.
const (
	pollInterval         = 10 * time.Millisecond
	housekeepingInterval = 20 * time.Millisecond
	shutdownTimeout      = 5 * time.Second
	runReturnTimeout     = 30 * time.Second
)

// Processor returns a Processor on db with the clock now, a quiet logger
// and opts, closed when the test ends.
func Processor(t testing.TB, db *bun.DB, now func() time.Time, opts ...tds.Option) *tds.Processor {
	t.Helper()
	p, err := tds.NewProcessor(db, append([]tds.Option{tds.WithClock(now), tds.WithLogger(QuietLogger)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// Handler returns a webhook Handler on db with a quiet logger and opts,
// closed (and checked to close cleanly) when the test ends.
func Handler(t testing.TB, db *bun.DB, opts ...tds.Option) *tds.Handler {
	t.Helper()
	h, err := tds.NewHandler(db, append([]tds.Option{tds.WithLogger(QuietLogger)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	return h
}

// StartWorker runs a Worker with s on db, the clock now, a quiet logger,
// the test timings and opts, until the test ends or the returned stop is
// called. stop cancels Run, waits for it to return and checks it returned
// nil; calling it again does nothing.
func StartWorker(t testing.TB, db *bun.DB, now func() time.Time, s tds.Syncer, opts ...tds.Option) (stop func()) {
	t.Helper()
	base := []tds.Option{tds.WithClock(now), tds.WithLogger(QuietLogger), tds.WithPollInterval(pollInterval),
		tds.WithHousekeepingInterval(housekeepingInterval), tds.WithShutdownTimeout(shutdownTimeout)}
	w, err := tds.NewWorker(db, s, append(base, opts...)...)
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
			case <-time.After(runReturnTimeout):
				t.Error("Worker.Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// StartMirror is [StartWorker] with a MirrorSyncer, until the test ends.
func StartMirror(t testing.TB, db *bun.DB, now func() time.Time, opts ...tds.Option) {
	t.Helper()
	m, err := tds.NewMirrorSyncer()
	require.NoError(t, err)
	StartWorker(t, db, now, m, opts...)
}

// Drain polls until no job in db is left unfinished.
func Drain(t testing.TB, db bun.IDB) {
	t.Helper()
	require.Eventually(t, func() bool {
		return testkit.Count(t, db, "SELECT COUNT(*) FROM tds_sync_queue WHERE status <> 'completed'") == 0
	}, 60*time.Second, 5*time.Millisecond)
}

// Ingest stores and queues, through p, an update of the product id named
// name, and returns its job's id.
func Ingest(t testing.TB, p *tds.Processor, id, name string) int64 {
	t.Helper()
	data, err := json.Marshal(map[string]any{"item_id": id, "name": name})
	require.NoError(t, err)
	res, err := p.Process(context.Background(),
		&tds.Event{EventType: tds.EventUpdate, EntityType: "product", EntityID: id, Data: data})
	require.NoError(t, err)
	require.True(t, res.Queued)
	return res.JobID
}
