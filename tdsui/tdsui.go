// Package tdsui is tds' operator console: the admin JSON API and the HTML
// dashboard, as one [http.Handler] the host mounts beside the webhook
// [tds.Handler], as River UI is mounted beside River.
//
// Every admin capability is in the JSON API first, behind a bearer token
// ([WithAdminToken]); the dashboard, under /ui/, signs in with the same
// token and calls the same code paths. Reconciliation and alerting are
// served when the host passes its [tdsreconcile.Reconciler]
// ([WithReconciler]) and [tdsalert.Alerter] ([WithAlerter]).
//
//	webhooks, err := tds.NewHandler(db, tds.WithWebhookKeys(key))
//	console, err := tdsui.New(db, tdsui.WithAdminToken(token))
//	mux := http.NewServeMux()
//	mux.Handle("/webhooks/", webhooks)
//	mux.Handle("/health", webhooks)
//	mux.Handle("/health/", webhooks)
//	mux.Handle("/", console) // /admin/, /queue/, /ui/
//	mux.Handle("GET /metrics", console.RequireMetrics(metrics))
package tdsui

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/httpx"
	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/tdsalert"
	"github.com/tdscore/tds/tdsreconcile"
)

// Handler is the operator console. It is an [http.Handler] built on a
// standard [http.ServeMux], so it can be mounted in any router and under
// any prefix (with [http.StripPrefix]):
//
//	GET  /queue/stats                        queue statistics
//	GET  /queue/throughput                   jobs completed and their latency, per minute of the last hour
//	GET  /admin/events                       inbox events, filtered, paginated
//	GET  /admin/events/{id}                  one event, its job and attempts
//	GET  /admin/dead-letters                 dead letters
//	POST /admin/dead-letters/retry           retry dead letters by filter, or all
//	POST /admin/dead-letters/{id}/retry      retry one dead letter
//	POST /admin/dead-letters/{id}/discard    give up on one dead letter
//	POST /admin/reconcile                    start a reconciliation run ([WithReconciler])
//	GET  /admin/sync-runs                    reconciliation runs
//	GET  /admin/sync-runs/{id}               one run and its drift
//	POST /admin/sync-runs/{id}/cancel        stop a run
//	POST /admin/sync-runs/{id}/confirm       apply the deletes a run held for confirmation (409 unless needs_confirmation)
//	GET  /admin/alerts                       alerts ([WithAlerter])
//	POST /admin/alerts/{id}/ack              acknowledge an alert
//	POST /admin/alerts/{id}/silence          silence an alert until a time
//	GET  /ui/                                the dashboard (HTML; sign in with an admin token)
//
// Every route but the dashboard's needs "Authorization: Bearer <token>"
// and answers JSON; admin POSTs must be sent as application/json (415
// otherwise). A Handler is safe for concurrent use.
type Handler struct {
	db         *bun.DB
	st         store.Store // the dashboard's sessions
	inbox      *tds.Inbox
	queue      *tds.Queue
	reconciler *tdsreconcile.Reconciler // nil: the reconciliation routes answer 501
	alerter    *tdsalert.Alerter        // nil: the alert routes answer 501
	admins     [][sha256.Size]byte      // digests of the admin tokens (adminDigests)
	metrics    [][sha256.Size]byte      // digests of the metrics tokens
	trusted    []netip.Prefix
	signIns    *httpx.Refusals // failed sign-ins per address; nil: no limit
	refusals   *httpx.Refusals // refused admin requests per address; nil: no limit
	retryAfter time.Duration
	logger     *slog.Logger
	now        func() time.Time
	dash       *dashboard
	mux        *http.ServeMux
}

// New returns the console on db, a database migrated by [tds.Migrate].
// Without [WithAdminToken] every admin route answers 401 and the
// dashboard's sign-in page says it is off.
func New(db *bun.DB, opts ...Option) (*Handler, error) {
	if db == nil {
		return nil, errors.New("tdsui: New: db is nil")
	}
	s, err := newSettings(opts)
	if err != nil {
		return nil, err
	}
	st, err := store.For(db)
	if err != nil {
		return nil, fmt.Errorf("tdsui: New: %w", err)
	}
	inbox, err := tds.NewInbox(db, tds.WithClock(s.now))
	if err != nil {
		return nil, fmt.Errorf("tdsui: New: %w", err)
	}
	queue, err := tds.NewQueue(db, tds.WithRegistry(s.registry), tds.WithClock(s.now))
	if err != nil {
		return nil, fmt.Errorf("tdsui: New: %w", err)
	}
	h := &Handler{
		db:         db,
		st:         st,
		inbox:      inbox,
		queue:      queue,
		reconciler: s.reconciler,
		alerter:    s.alerter,
		admins:     adminDigests(s.tokens),
		metrics:    adminDigests(s.metrics),
		trusted:    s.trusted,
		signIns:    httpx.NewRefusals(s.signInLimit, s.signInPeriod, s.now),
		refusals:   httpx.NewRefusals(s.refuseLimit, s.refusePeriod, s.now),
		retryAfter: s.retryAfter,
		logger:     s.logger,
		now:        s.now,
		mux:        http.NewServeMux(),
	}
	if h.dash, err = newDashboard(h, s.tokens); err != nil {
		return nil, fmt.Errorf("tdsui: New: %w", err)
	}
	h.routes()
	return h, nil
}

// routes registers every route on h.mux.
func (h *Handler) routes() {
	m, d := h.mux, h.dash
	m.HandleFunc("GET /queue/stats", h.admin(h.serveQueueStats))
	m.HandleFunc("GET /queue/throughput", h.admin(h.serveThroughput))
	m.HandleFunc("GET /admin/events", h.admin(h.serveListEvents))
	m.HandleFunc("GET /admin/events/{id}", h.admin(h.serveEvent))
	m.HandleFunc("GET /admin/dead-letters", h.admin(h.serveListDeadLetters))
	m.HandleFunc("GET /admin/dead-letters/error-codes", h.admin(h.serveDeadLetterCodes))
	m.HandleFunc("POST /admin/dead-letters/retry", h.admin(h.serveRetryDeadLetters))
	m.HandleFunc("POST /admin/dead-letters/{id}/retry", h.admin(h.serveRetryDeadLetter))
	m.HandleFunc("POST /admin/dead-letters/{id}/discard", h.admin(h.serveDiscardDeadLetter))
	m.HandleFunc("POST /admin/reconcile", h.admin(h.serveReconcile))
	m.HandleFunc("GET /admin/sync-runs", h.admin(h.serveListRuns))
	m.HandleFunc("GET /admin/sync-runs/{id}", h.admin(h.serveRun))
	m.HandleFunc("POST /admin/sync-runs/{id}/cancel", h.admin(h.serveCancelRun))
	m.HandleFunc("POST /admin/sync-runs/{id}/confirm", h.admin(h.serveConfirmRun))
	m.HandleFunc("GET /admin/alerts", h.admin(h.serveListAlerts))
	m.HandleFunc("POST /admin/alerts/{id}/ack", h.admin(h.serveAckAlert))
	m.HandleFunc("POST /admin/alerts/{id}/silence", h.admin(h.serveSilenceAlert))

	m.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) { seeOther(w, "ui/") })
	m.Handle("GET /ui/assets/", http.StripPrefix("/ui/assets/", d.assets))
	m.HandleFunc("GET /ui/login", d.serveLoginForm)
	m.HandleFunc("POST /ui/login", d.serveLogin)
	m.HandleFunc("POST /ui/logout", d.post(d.serveLogout))
	m.HandleFunc("GET /ui/{$}", d.get(d.serveOverview))
	m.HandleFunc("GET /ui/events", d.get(d.serveEvents))
	m.HandleFunc("GET /ui/events/{id}", d.get(d.serveEvent))
	m.HandleFunc("GET /ui/dead-letters", d.get(d.serveDeadLetters))
	m.HandleFunc("POST /ui/dead-letters/retry", d.post(d.serveRetrySelected))
	m.HandleFunc("POST /ui/dead-letters/retry-filter", d.post(d.serveRetryFilter))
	m.HandleFunc("POST /ui/dead-letters/{id}/retry", d.post(d.serveRetryOne))
	m.HandleFunc("POST /ui/dead-letters/{id}/discard", d.post(d.serveDiscard))
	m.HandleFunc("GET /ui/alerts", d.get(d.serveAlerts))
	m.HandleFunc("POST /ui/alerts/{id}/ack", d.post(d.serveAck))
	m.HandleFunc("POST /ui/alerts/{id}/silence", d.post(d.serveSilence))
	m.HandleFunc("GET /ui/reconcile", d.get(d.serveRuns))
	m.HandleFunc("GET /ui/reconcile/{id}", d.get(d.serveRun))
	m.HandleFunc("POST /ui/reconcile", d.post(d.serveStartRun))
	m.HandleFunc("POST /ui/reconcile/{id}/confirm", d.post(d.serveConfirmRun))
}

// ServeHTTP routes the request. The mux's own 404 and 405 answers are
// JSON, like every other answer but the dashboard's pages.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	httpx.ServeMux(h.mux, w, r)
}

// RequireAdmin returns next behind the admin API's authentication: a
// request without one of the [WithAdminToken] tokens as its bearer token
// is answered 401 (429 past [WithAdminRefusalLimit]), a POST not declared
// application/json 415. The reference server serves /metrics through it.
func (h *Handler) RequireAdmin(next http.Handler) http.Handler {
	return h.admin(next.ServeHTTP)
}

// RequireMetrics returns next behind a read-only check: a request whose
// bearer token is one of the [WithMetricsToken] tokens or one of the
// [WithAdminToken] tokens is served, any other is refused as the admin
// API refuses it (401, or 429 past [WithAdminRefusalLimit]). The reference
// server serves GET /metrics through it, so Prometheus scrapes with a
// metrics token.
func (h *Handler) RequireMetrics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := bearerToken(r)
		_, metrics := adminTokenIndex(h.metrics, got)
		_, admin := adminTokenIndex(h.admins, got)
		if !metrics && !admin {
			h.refuseAdmin(w, r, httpx.ClientIP(r, h.trusted))
			return
		}
		next.ServeHTTP(w, r)
	})
}
