package tds

import (
	"context"
	"sync"
	"time"
)

// HealthCountsMaxAge is how old the queue counts of GET /health may be: the
// health check runs the queue statistics query at most once in this
// window, however often it is polled.
const HealthCountsMaxAge = 5 * time.Second

// healthCounts are the queue counts of GET /health.
type healthCounts struct {
	Pending    int64 `json:"pending"`
	Processing int64 `json:"processing"`
	Retry      int64 `json:"retry"`
	DeadLetter int64 `json:"dead_letter"`
}

// countsCache keeps the last queue counts for HealthCountsMaxAge so that an
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
	return &countsCache{load: load, now: time.Now, maxAge: HealthCountsMaxAge}
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
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultHealthTimeout)
	defer cancel()
	counts, err = c.load(lctx)
	published = true
	return counts, err
}
