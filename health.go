package tds

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tdscore/tds/internal/httpx"
)

// healthCountsMaxAge is how old the queue counts of GET /health may be: the
// health check runs the queue statistics query at most once in this
// window, however often it is polled.
const healthCountsMaxAge = 5 * time.Second

// healthCounts are the queue counts of GET /health.
type healthCounts struct {
	Pending    int64 `json:"pending"`
	Processing int64 `json:"processing"`
	Retry      int64 `json:"retry"`
	DeadLetter int64 `json:"dead_letter"`
}

// countsCache keeps the last queue counts for healthCountsMaxAge so that an
// unauthenticated /health, polled by anyone, cannot load the database: it
// is safe for concurrent use and runs at most one load at a time, in the
// goroutine of the request that found the counts stale, so no goroutine
// outlives the Handler. Requests arriving during a load wait for it.
type countsCache struct {
	load   func(ctx context.Context) (*healthCounts, error)
	now    func() time.Time // the wall clock; tests move it
	maxAge time.Duration

	mu       sync.Mutex
	counts   *healthCounts
	err      error
	at       time.Time
	loaded   bool
	inflight chan struct{} // closed when the running load ends
}

func newCountsCache(load func(ctx context.Context) (*healthCounts, error)) *countsCache {
	return &countsCache{load: load, now: time.Now, maxAge: healthCountsMaxAge}
}

// get returns counts no older than maxAge, loading them if needed. A
// failed load is kept for the window too, so a struggling database is not
// asked again by every poll.
func (c *countsCache) get(ctx context.Context) (*healthCounts, error) {
	c.mu.Lock()
	for {
		if c.loaded && c.now().Sub(c.at) < c.maxAge {
			counts, err := c.counts, c.err
			c.mu.Unlock()
			return counts, err
		}
		if c.inflight == nil {
			break
		}
		done := c.inflight
		c.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.Lock()
	}
	done := make(chan struct{})
	c.inflight = done
	c.mu.Unlock()
	return c.refresh(ctx, done)
}

// refresh runs the load and publishes its result, even if the load panics
// (the next request then tries again).
func (c *countsCache) refresh(ctx context.Context, done chan struct{}) (counts *healthCounts, err error) {
	published := false
	defer func() {
		c.mu.Lock()
		if published {
			c.counts, c.err, c.at, c.loaded = counts, err, c.now(), true
		}
		c.inflight = nil
		c.mu.Unlock()
		close(done)
	}()
	// The load finishes even if this request goes away: others wait on it.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healthTimeout)
	defer cancel()
	counts, err = c.load(lctx)
	published = true
	return counts, err
}

// probeResponse is the answer of GET /health/live and GET /health/ready.
type probeResponse struct {
	Status   string `json:"status"`
	Database string `json:"database,omitempty"`
	Schema   string `json:"schema,omitempty"`
	Error    string `json:"error,omitempty"`
}

// serveLive answers that the process serves HTTP. It reads nothing, so a
// database outage never makes an orchestrator restart healthy processes.
func serveLive(w http.ResponseWriter, _ *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, probeResponse{Status: "alive"})
}

// serveReady answers 200 when this process can do its work: the database
// answers and has every migration this binary embeds. A schema ahead of
// the binary (a newer version migrated it) is ready too: migrations only
// add, and during a rolling upgrade the old processes must keep serving
// until they are replaced.
func (h *Handler) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	unready := func(resp probeResponse, err error) {
		h.cfg.logger.LogAttrs(r.Context(), slog.LevelWarn, "tds: not ready", slog.String("reason", resp.Error), slog.Any("error", err))
		resp.Status = "unready"
		httpx.WriteJSON(w, http.StatusServiceUnavailable, resp)
	}
	if err := h.db.PingContext(ctx); err != nil {
		unready(probeResponse{Database: "unavailable", Error: "database unavailable"}, err)
		return
	}
	sc, err := h.st.SchemaStatus(ctx, h.db, MigrationsTable)
	if err != nil {
		unready(probeResponse{Database: "ok", Schema: "unknown", Error: "schema unreadable"}, err)
		return
	}
	if len(sc.Missing) > 0 {
		unready(probeResponse{Database: "ok", Schema: "behind",
			Error: fmt.Sprintf("schema behind: %d migrations not applied (%s)", len(sc.Missing), strings.Join(sc.Missing, ", "))}, nil)
		return
	}
	schema := "current"
	if len(sc.Unknown) > 0 {
		schema = "ahead"
	}
	httpx.WriteJSON(w, http.StatusOK, probeResponse{Status: "ready", Database: "ok", Schema: schema})
}
