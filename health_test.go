package tds

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
)

// queueQueryCounter counts the queue statistics queries: Queue.Stats runs
// several statements, one of them counting jobs by status.
type queueQueryCounter struct{ n atomic.Int64 }

func (c *queueQueryCounter) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context {
	return ctx
}

func (c *queueQueryCounter) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	if strings.Contains(e.Query, "GROUP BY status\nUNION ALL") { // the statement of the counts by status
		c.n.Add(1)
	}
}

// TestHealthReadsQueueStatsOncePerWindow: many concurrent /health calls
// within healthCountsMaxAge run the queue statistics query once; the
// counts are refreshed once the window has passed.
func TestHealthReadsQueueStatsOncePerWindow(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		counter := &queueQueryCounter{}
		h := newTestHandler(t, &testDB{name: tdb.name, url: tdb.url, db: tdb.db.WithQueryHook(counter)})
		var mu sync.Mutex
		now := time.Now()
		h.counts.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }

		require.Equal(t, http.StatusOK, webhook(t, h, "products", fixtureBytes(t, "product.json")).status)
		counter.n.Store(0)

		const n = 32
		var wg sync.WaitGroup
		answers := make([]answer, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				answers[i] = serve(t, h, "GET", "/health", nil)
			}()
		}
		wg.Wait()
		for _, a := range answers {
			require.Equal(t, http.StatusOK, a.status, a.raw)
			require.Equal(t, map[string]any{"pending": 1.0, "processing": 0.0, "retry": 0.0, "dead_letter": 0.0}, a.body["queue"])
		}
		require.EqualValues(t, 1, counter.n.Load(), "statements reading the queue during %d /health calls", n)

		// Within the window a new event is not counted yet, and nothing is read.
		require.Equal(t, http.StatusOK, webhook(t, h, "products", productBody("2", "Second")).status)
		counter.n.Store(0)
		a := serve(t, h, "GET", "/health", nil)
		require.Equal(t, 1.0, a.body["queue"].(map[string]any)["pending"])
		require.EqualValues(t, 0, counter.n.Load())

		// Past the window the counts are read again, once.
		mu.Lock()
		now = now.Add(healthCountsMaxAge)
		mu.Unlock()
		a = serve(t, h, "GET", "/health", nil)
		require.Equal(t, 2.0, a.body["queue"].(map[string]any)["pending"])
		require.EqualValues(t, 1, counter.n.Load())
	})
}

// productBody is the webhook body of productEvent(id, name).
func productBody(id, name string) []byte {
	ev := productEvent(id, name)
	return []byte(`{"event_type":"` + ev.EventType + `","entity_type":"product","entity_id":"` + id + `","data":` + string(ev.Data) + `}`)
}

func TestCountsCache(t *testing.T) {
	t.Parallel()
	t.Run("one load in flight; waiters share its result", func(t *testing.T) {
		t.Parallel()
		var loads atomic.Int64
		started, release := make(chan struct{}), make(chan struct{})
		c := newCountsCache(func(context.Context) (*healthCounts, error) {
			if loads.Add(1) == 1 {
				close(started)
			}
			<-release
			return &healthCounts{Pending: 7}, nil
		})
		const n = 16
		results := make(chan *healthCounts, n)
		go func() { got, _ := c.get(context.Background()); results <- got }()
		<-started // the first caller holds the load; the others must wait for it
		for range n - 1 {
			go func() { got, _ := c.get(context.Background()); results <- got }()
		}
		close(release)
		for range n {
			require.Equal(t, int64(7), (<-results).Pending)
		}
		require.EqualValues(t, 1, loads.Load())
	})
	t.Run("a failure is kept for the window", func(t *testing.T) {
		t.Parallel()
		var loads atomic.Int64
		c := newCountsCache(func(context.Context) (*healthCounts, error) {
			loads.Add(1)
			return nil, errors.New("database down")
		})
		for range 3 {
			_, err := c.get(context.Background())
			require.Error(t, err)
		}
		require.EqualValues(t, 1, loads.Load())
	})
	t.Run("a waiter whose request ends stops waiting", func(t *testing.T) {
		t.Parallel()
		started, release := make(chan struct{}), make(chan struct{})
		c := newCountsCache(func(context.Context) (*healthCounts, error) {
			close(started)
			<-release
			return &healthCounts{}, nil
		})
		done := make(chan struct{})
		go func() { defer close(done); _, _ = c.get(context.Background()) }()
		<-started
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.get(ctx)
		require.ErrorIs(t, err, context.Canceled)
		close(release)
		<-done
	})
}

// TestProbes: /health/live answers without the database; /health/ready
// answers 200 on a migrated database (a newer schema too), 503 with its
// reason when the database is down or its schema behind this binary.
func TestProbes(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		db, err := Open(ctx, tdb.url)
		require.NoError(t, err)
		h, err := NewHandler(db, WithWebhookKeys(testWebhookKey), WithLogger(quietLogger))
		require.NoError(t, err)
		defer h.Close()

		ready := serve(t, h, "GET", "/health/ready", nil)
		require.Equal(t, http.StatusOK, ready.status, ready.raw)
		require.Equal(t, map[string]any{"status": "ready", "database": "ok", "schema": "current"}, ready.body)
		live := serve(t, h, "GET", "/health/live", nil)
		require.Equal(t, http.StatusOK, live.status, live.raw)
		require.Equal(t, map[string]any{"status": "alive"}, live.body)

		// A newer binary migrated the database: the old one stays ready.
		_, err = tdb.db.ExecContext(ctx, "INSERT INTO "+MigrationsTable+" (version, name) VALUES (9999, '9999_future')")
		require.NoError(t, err)
		ready = serve(t, h, "GET", "/health/ready", nil)
		require.Equal(t, http.StatusOK, ready.status, ready.raw)
		require.Equal(t, "ahead", ready.body["schema"])

		require.NoError(t, db.Close())
		ready = serve(t, h, "GET", "/health/ready", nil)
		require.Equal(t, http.StatusServiceUnavailable, ready.status, ready.raw)
		require.Equal(t, map[string]any{"status": "unready", "database": "unavailable", "error": "database unavailable"}, ready.body)
		live = serve(t, h, "GET", "/health/live", nil)
		require.Equal(t, http.StatusOK, live.status, "live reads no database: %s", live.raw)
	})
}

// TestReadyBeforeMigration: a database without the schema, and one with
// part of it, is not ready, and the answer names what is missing.
func TestReadyBeforeMigration(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, err := Open(ctx, freshURL(t, dialect))
			require.NoError(t, err)
			defer db.Close()
			h, err := NewHandler(db, WithWebhookKeys(testWebhookKey), WithLogger(quietLogger))
			require.NoError(t, err)
			defer h.Close()

			ready := serve(t, h, "GET", "/health/ready", nil)
			require.Equal(t, http.StatusServiceUnavailable, ready.status, ready.raw)
			require.Equal(t, "behind", ready.body["schema"])
			require.Contains(t, ready.body["error"], "schema behind")
			require.Contains(t, ready.body["error"], "0001_")

			// The first migration only.
			all, err := migrationFS(db)
			require.NoError(t, err)
			names, err := fs.Glob(all, "0001_*.up.sql")
			require.NoError(t, err)
			b, err := fs.ReadFile(all, names[0])
			require.NoError(t, err)
			require.NoError(t, applyMigrations(ctx, db, fstest.MapFS{names[0]: {Data: b}}, MigrationsTable))
			ready = serve(t, h, "GET", "/health/ready", nil)
			require.Equal(t, http.StatusServiceUnavailable, ready.status, ready.raw)
			require.NotContains(t, ready.body["error"], "0001_")
			require.Contains(t, ready.body["error"], "0002_")

			require.NoError(t, Migrate(ctx, db))
			ready = serve(t, h, "GET", "/health/ready", nil)
			require.Equal(t, http.StatusOK, ready.status, ready.raw)
		})
	}
}
