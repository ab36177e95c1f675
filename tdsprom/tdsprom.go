package tds

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/internal/zoho"
)

// MetricsMaxAge is how old the database-derived metrics (tds_queue_*,
// tds_dead_letters, tds_zoho_webhooks_today, tds_zoho_api_calls_today,
// tds_reconcile_paused) may be: they are read at most once in this window,
// however many scrapers ask.
const MetricsMaxAge = 5 * time.Second

// The outcomes of tds_ingest_requests_total.
const (
	ingestAccepted        = "accepted"
	ingestDuplicate       = "duplicate"
	ingestInvalid         = "invalid"
	ingestMalformed       = "malformed"
	ingestUnauthorized    = "unauthorized"
	ingestTooLarge        = "too_large"
	ingestUnsupportedType = "unsupported_type"
	ingestRateLimited     = "rate_limited"
	ingestUnavailable     = "unavailable"
	ingestError           = "error"
)

// otherRoute is the route label of a webhook to an unknown route, so that
// the label stays bounded whatever senders send.
const otherRoute = "other"

// WithMetrics registers tds's Prometheus metrics on reg and records them:
// webhooks received (tds_ingest_*), sync attempts and latency (tds_sync_*,
// tds_end_to_end_latency_seconds), the queue, dead letters, today's Zoho
// webhooks and API calls and a paused run, read from the database at most
// every [MetricsMaxAge] (tds_queue_*, tds_dead_letters,
// tds_zoho_webhooks_today, tds_zoho_api_calls_today,
// tds_reconcile_paused), reconciliation
// runs, drift and Zoho API calls (tds_reconcile_*, tds_drift_*, tds_zoho_*).
// Several constructors given the same reg share one set of metrics, so a
// process passes it to each of them; the database-derived metrics read the
// database of the first. tds never registers on the global registry unless
// reg is [prometheus.DefaultRegisterer].
// Applies to [NewProcessor], [NewWorker], [NewHandler] and [NewReconciler].
// Defaults to none.
func WithMetrics(reg prometheus.Registerer) Option {
	return newOption("WithMetrics", forProcessor|forWorker|forHandler|forReconciler, func(c *config) error {
		if reg == nil {
			return optErr("WithMetrics", "registerer is nil")
		}
		m, err := newMetrics(reg)
		if err != nil {
			return optErr("WithMetrics", "%v", err)
		}
		c.metrics = m
		return nil
	})
}

// metrics are the collectors of one Registerer. A nil *metrics records
// nothing: every method may be called on it.
type metrics struct {
	reg prometheus.Registerer

	ingestRequests *prometheus.CounterVec
	ingestDuration *prometheus.HistogramVec
	ingestBatch    prometheus.Histogram

	syncDuration *prometheus.HistogramVec
	syncAttempts *prometheus.CounterVec
	endToEnd     *prometheus.HistogramVec

	reconcileRuns        *prometheus.CounterVec
	reconcileDuration    *prometheus.HistogramVec
	reconcileLastSuccess *prometheus.GaugeVec
	driftDetected        *prometheus.CounterVec
	driftRepaired        *prometheus.CounterVec
	zohoRequests         *prometheus.CounterVec
	zohoRefreshes        *prometheus.CounterVec
}

// newMetrics registers the metrics on reg, or takes those another
// constructor registered there before.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{reg: reg}
	var errs []error
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels), &errs)
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		return register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels), &errs)
	}
	m.ingestRequests = counter("tds_ingest_requests_total", "Webhook requests answered, by route and outcome.", "route", "outcome")
	m.ingestDuration = histogram("tds_ingest_duration_seconds", "Time to answer a webhook request.", prometheus.DefBuckets, "route")
	m.ingestBatch = register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tds_ingest_batch_size", Help: "Events stored by one group-commit transaction.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 9),
	}), &errs)
	m.syncDuration = histogram("tds_sync_duration_seconds", "Time from the start of a sync attempt to the commit of its outcome.",
		prometheus.DefBuckets, "entity_type", "outcome")
	m.syncAttempts = counter("tds_sync_attempts_total", "Sync attempts, by entity type and outcome (synced, superseded, retry, dead_letter).",
		"entity_type", "outcome")
	m.endToEnd = histogram("tds_end_to_end_latency_seconds", "Time from an event's receipt to the commit of its sync.",
		[]float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}, "entity_type")
	m.reconcileRuns = counter("tds_reconcile_runs_total", "Reconciliation runs ended, by mode and status.", "mode", "status")
	m.reconcileDuration = histogram("tds_reconcile_duration_seconds", "Duration of reconciliation runs, by mode and status.",
		[]float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600}, "mode", "status")
	m.reconcileLastSuccess = register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tds_reconcile_last_success_timestamp_seconds", Help: "When the last reconciliation run that completed (not a dry run) ended, as a Unix time.",
	}, []string{"mode"}), &errs)
	m.driftDetected = counter("tds_drift_detected_total", "Differences between the source and what tds applied, found by reconciliation.", "entity_type", "kind")
	m.driftRepaired = counter("tds_drift_repaired_total", "Differences repaired by ingesting the source's record again.", "entity_type", "kind")
	m.zohoRequests = counter("tds_zoho_api_requests_total", "Zoho API responses, by endpoint and status class (2xx, 4xx, 429, 5xx).", "endpoint", "code")
	m.zohoRefreshes = counter("tds_zoho_token_refreshes_total", "Zoho OAuth token refreshes, by outcome (success, failure).", "outcome")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c on reg, or returns the collector registered there
// before under the same descriptors.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, errs *[]error) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	*errs = append(*errs, err)
	return c
}

// watch registers the database-derived metrics on db, once per Registerer:
// a later call finds them registered and changes nothing.
func (m *metrics) watch(db *bun.DB, st store.Store, cfg *config) {
	if m == nil {
		return
	}
	c := newDBCollector(db, st, cfg)
	if err := m.reg.Register(c); err != nil {
		if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
			cfg.logger.Warn("tds: registering the database metrics", "err", err)
		}
	}
}

// observeBatch records the size of a group-commit batch.
func (m *metrics) observeBatch(n int) {
	if m != nil {
		m.ingestBatch.Observe(float64(n))
	}
}

// instrumentWebhook counts the answers of next, the webhook route, and
// times them. Without metrics it returns next.
func (m *metrics) instrumentWebhook(reg *Registry, next http.HandlerFunc) http.HandlerFunc {
	if m == nil {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &ingestRecorder{ResponseWriter: w}
		next(rec, r)
		route := r.PathValue("route")
		if _, ok := reg.ByRoute(route); !ok {
			route = otherRoute
		}
		m.ingestRequests.WithLabelValues(route, rec.outcome()).Inc()
		m.ingestDuration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	}
}

// ingestRecorder remembers the status of a webhook's answer.
type ingestRecorder struct {
	http.ResponseWriter
	status    int
	duplicate bool
}

func (w *ingestRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *ingestRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *ingestRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// markDuplicate tells the recorder, if any, that the 200 it is about to
// see answers a duplicate.
func markDuplicate(w http.ResponseWriter) {
	if rec, ok := w.(*ingestRecorder); ok {
		rec.duplicate = true
	}
}

// outcome is the outcome label of the answer. A request abandoned by its
// sender before its event was stored got no answer: an error.
func (w *ingestRecorder) outcome() string {
	switch w.status {
	case http.StatusOK:
		if w.duplicate {
			return ingestDuplicate
		}
		return ingestAccepted
	case http.StatusUnprocessableEntity:
		return ingestInvalid
	case http.StatusBadRequest, http.StatusNotFound:
		return ingestMalformed
	case http.StatusUnauthorized:
		return ingestUnauthorized
	case http.StatusRequestEntityTooLarge:
		return ingestTooLarge
	case http.StatusUnsupportedMediaType:
		return ingestUnsupportedType
	case http.StatusTooManyRequests:
		return ingestRateLimited
	case http.StatusServiceUnavailable:
		return ingestUnavailable
	}
	return ingestError
}

// observeJobs records the committed results of a worker's jobs; a job
// handed back unfinished was no attempt and is not counted.
func (m *metrics) observeJobs(results []JobResult) {
	if m == nil {
		return
	}
	for i := range results {
		r := &results[i]
		var outcome string
		switch {
		case r.Status == StatusCompleted:
			outcome = r.Outcome
		case r.Status == StatusRetry && r.Err != nil:
			outcome = "retry"
		case r.Status == StatusDeadLetter:
			outcome = "dead_letter"
		default:
			continue
		}
		m.syncAttempts.WithLabelValues(r.EntityType, outcome).Inc()
		if !r.StartedAt.IsZero() {
			m.syncDuration.WithLabelValues(r.EntityType, outcome).Observe(nonNegative(r.CommittedAt.Sub(r.StartedAt)))
		}
		if r.Status == StatusCompleted && !r.ReceivedAt.IsZero() {
			m.endToEnd.WithLabelValues(r.EntityType).Observe(nonNegative(r.CommittedAt.Sub(r.ReceivedAt)))
		}
	}
}

func nonNegative(d time.Duration) float64 { return max(d, 0).Seconds() }

// runEnded records a reconciliation run that ended with status at end.
func (m *metrics) runEnded(rec *store.Run, status string, end time.Time) {
	if m == nil {
		return
	}
	m.reconcileRuns.WithLabelValues(rec.Mode, status).Inc()
	m.reconcileDuration.WithLabelValues(rec.Mode, status).Observe(nonNegative(end.Sub(rec.StartedAt)))
	if status == store.RunCompleted && !rec.DryRun {
		m.reconcileLastSuccess.WithLabelValues(rec.Mode).Set(float64(end.UnixNano()) / 1e9)
	}
}

// driftFound counts a drift item a run is about to deal with.
func (m *metrics) driftFound(entityType, kind string) {
	if m != nil {
		m.driftDetected.WithLabelValues(entityType, kind).Inc()
	}
}

// driftFixed counts a drift item repaired by an ingested event.
func (m *metrics) driftFixed(entityType, kind string) {
	if m != nil {
		m.driftRepaired.WithLabelValues(entityType, kind).Inc()
	}
}

// zohoHooks returns h with the hooks that count the Zoho client's
// responses and token refreshes added.
func (m *metrics) zohoHooks(h zoho.Hooks) zoho.Hooks {
	if m == nil {
		return h
	}
	response, refresh := h.Response, h.Refresh
	h.Response = func(endpoint string, status int, elapsed time.Duration) {
		if code := statusClass(status); code != "" {
			m.zohoRequests.WithLabelValues(endpoint, code).Inc()
		}
		if response != nil {
			response(endpoint, status, elapsed)
		}
	}
	h.Refresh = func(err error) {
		outcome := "success"
		if err != nil {
			outcome = "failure"
		}
		m.zohoRefreshes.WithLabelValues(outcome).Inc()
		if refresh != nil {
			refresh(err)
		}
	}
	return h
}

// statusClass is the code label of an HTTP status; "" for none (a
// transport error) or a class Zoho's API does not answer with.
func statusClass(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "429"
	case status >= 200 && status < 300:
		return "2xx"
	case status >= 400 && status < 500:
		return "4xx"
	case status >= 500 && status < 600:
		return "5xx"
	}
	return ""
}

// dbCollector exports the metrics read from the database. Collect reads
// them at most every MetricsMaxAge: concurrent scrapes wait for one read
// and share it, and a failed read is kept for the window too, so that a
// struggling database is not asked again by every scraper.
type dbCollector struct {
	db     *bun.DB
	st     store.Store
	cfg    *config
	now    func() time.Time // the wall clock of the cache; tests move it
	maxAge time.Duration

	mu     sync.Mutex // held during a read: scrapes arriving then wait for it
	counts *store.MetricCounts
	at     time.Time
	loaded bool
}

var (
	descQueueJobs = prometheus.NewDesc("tds_queue_jobs",
		"Unfinished jobs in the queue, by status and priority.", []string{"status", "priority"}, nil)
	descOldestPending = prometheus.NewDesc("tds_queue_oldest_pending_age_seconds",
		"Age of the oldest job waiting in the queue (pending or retry); 0 when none waits.", nil, nil)
	descBlocked = prometheus.NewDesc("tds_queue_blocked_jobs",
		"Jobs blocked behind an earlier job of their entity.", nil, nil)
	descDeadLetters = prometheus.NewDesc("tds_dead_letters",
		"Dead letters waiting for an operator, by entity type.", []string{"entity_type"}, nil)
	descZohoToday = prometheus.NewDesc("tds_zoho_webhooks_today",
		"Events received today (UTC) from the zoho source, against Zoho's 1,000 webhooks a day.", nil, nil)
	descZohoCallsToday = prometheus.NewDesc("tds_zoho_api_calls_today",
		"Zoho API calls made today (UTC) by reconciliation for the zoho source, against its daily budget.", nil, nil)
	descReconcilePaused = prometheus.NewDesc("tds_reconcile_paused",
		"1 while a reconciliation run of the zoho source is paused at the daily budget, else 0.", nil, nil)
)

func newDBCollector(db *bun.DB, st store.Store, cfg *config) *dbCollector {
	return &dbCollector{db: db, st: st, cfg: cfg, now: time.Now, maxAge: MetricsMaxAge}
}

// Describe implements [prometheus.Collector].
func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueJobs, descOldestPending, descBlocked, descDeadLetters, descZohoToday,
		descZohoCallsToday, descReconcilePaused} {
		ch <- d
	}
}

// Collect implements [prometheus.Collector]. When the database cannot be
// read, the database-derived metrics are left out of the scrape (and the
// failure logged), the others are still served.
func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.get()
	if counts == nil {
		return
	}
	for _, j := range counts.Jobs {
		ch <- prometheus.MustNewConstMetric(descQueueJobs, prometheus.GaugeValue, float64(j.N), j.Status, strconv.Itoa(j.Priority))
	}
	age := 0.0
	if counts.OldestWaiting != nil {
		age = nonNegative(counts.At.Sub(*counts.OldestWaiting))
	}
	ch <- prometheus.MustNewConstMetric(descOldestPending, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(descBlocked, prometheus.GaugeValue, float64(counts.Blocked))
	// Every registered type has its series, 0 included, so that a drop to
	// none is seen as such.
	dead := make(map[string]int64)
	for _, t := range c.cfg.registry.Types() {
		dead[t.Name] = 0
	}
	for _, d := range counts.DeadLetters {
		dead[d.EntityType] = d.N
	}
	for et, n := range dead {
		ch <- prometheus.MustNewConstMetric(descDeadLetters, prometheus.GaugeValue, float64(n), et)
	}
	ch <- prometheus.MustNewConstMetric(descZohoToday, prometheus.GaugeValue, float64(counts.SourceSince))
	ch <- prometheus.MustNewConstMetric(descZohoCallsToday, prometheus.GaugeValue, float64(counts.APICallsToday))
	ch <- prometheus.MustNewConstMetric(descReconcilePaused, prometheus.GaugeValue, float64(min(counts.PausedRuns, 1)))
}

// get returns counts no older than maxAge, reading them if needed, or nil
// when the last read failed.
func (c *dbCollector) get() *store.MetricCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded && c.now().Sub(c.at) < c.maxAge {
		return c.counts
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultHealthTimeout)
	defer cancel()
	now := dbTime(c.cfg.now())
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	counts, err := c.st.MetricCounts(ctx, c.db, DefaultSource, day)
	if err != nil {
		c.cfg.logger.LogAttrs(ctx, slog.LevelWarn, "tds: reading the database metrics", slog.Any("error", err))
		counts = nil
	} else {
		counts.At = now
	}
	c.counts, c.at, c.loaded = counts, c.now(), true
	return counts
}

// RequireAdmin returns next behind the admin API's authentication: a
// request without one of the [WithAdminToken] tokens as its bearer token is
// answered 401. The reference server serves /metrics through it.
func (h *Handler) RequireAdmin(next http.Handler) http.Handler {
	return h.admin(next.ServeHTTP)
}
