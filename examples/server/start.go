package main

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/backoff"
	"github.com/tdscore/tds/internal/httpx"
)

// Waiting for the database at start: the first retry after about
// startRetryBase, doubling up to startRetryMax (±20 % jitter, so replicas
// started together do not knock together).
const (
	startRetryBase = 500 * time.Millisecond
	startRetryMax  = 30 * time.Second
)

// openWhenReachable opens and migrates the database (openMigrated),
// waiting for it while it cannot be reached: under an orchestrator the
// database often starts after the server, and exiting would only restart
// the server in a loop. Each failed attempt is logged at WARN with the
// attempt, the next delay and the error. Only "database unavailable"
// errors (refused, reset, starting up; an attempt that outlasted
// startTimeout) are waited out; any other (a wrong URL or password, a
// failed migration) is returned at once. It returns ctx's error when ctx
// ends first (SIGINT, SIGTERM).
func openWhenReachable(ctx context.Context, s *settings, reg *tds.Registry, log *slog.Logger, addr string) (*bun.DB, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for attempt := 1; ; attempt++ {
		attemptCtx, cancel := context.WithTimeout(ctx, startTimeout)
		db, err := openMigrated(attemptCtx, s, reg)
		cancel()
		if err == nil {
			if attempt > 1 {
				log.Info("database reachable", "database", dbKind(s.database), "attempts", attempt)
			}
			return db, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !errors.Is(err, tds.ErrDatabaseUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		delay := backoff.Exponential(attempt, startRetryBase, startRetryMax, 0.2, rand.Float64())
		log.Warn("database unavailable: not ready, retrying", "database", dbKind(s.database), "attempt", attempt,
			"retry_in", delay.Round(time.Millisecond).String(), "addr", addr, "error", err)
		if timer == nil {
			timer = time.NewTimer(delay)
		} else {
			timer.Reset(delay)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

// switchHandler serves through the handler last stored: the starting
// handler until the database is ready, then the server's routes.
type switchHandler struct {
	h atomic.Pointer[http.Handler]
}

func newSwitchHandler(h http.Handler) *switchHandler {
	s := &switchHandler{}
	s.set(h)
	return s
}

func (s *switchHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *switchHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// startingHandler answers while the database is awaited: the process is
// alive (an orchestrator must not restart it) but not ready (it must get
// no traffic). Webhooks and everything else get the 503 and Retry-After a
// Handler gives when its database is unavailable, so senders retry.
func startingHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health/live", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{
			"status": "unready", "database": "unavailable", "error": "starting: waiting for the database"})
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{
			"status": "unhealthy", "database": "unavailable", "error": "starting: waiting for the database"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteUnavailable(w, tds.DefaultRetryAfter)
	})
	return mux
}
