// Package tdsprom records tds's Prometheus metrics through the hooks the
// other packages expose: webhooks answered by a Handler, group-commit
// batches, sync attempts of a Worker, reconciliation runs, and gauges read
// from the database.
//
// One [Metrics] per registerer, wired into each component:
//
//	m, err := tdsprom.New(reg)
//	h, err := tds.NewHandler(db, tds.WithWebhookKeys(key),
//		tds.WithWebhookObserver(m.ObserveWebhook), tds.WithBatchObserver(m.ObserveBatch))
//	w, err := tds.NewWorker(db, s, tds.WithObserver(m.ObserveJob))
//	rc, err := tdsreconcile.New(db, h.Processor(), api, tdsreconcile.WithHooks(m.ReconcileHooks()))
//	err = m.WatchDatabase(db)
//
// The metrics, all prefixed tds_:
//
//   - ingest_requests_total{route,outcome}, ingest_duration_seconds{route},
//     ingest_batch_size: webhooks ([Metrics.ObserveWebhook],
//     [Metrics.ObserveBatch]);
//   - sync_attempts_total{entity_type,outcome},
//     sync_duration_seconds{entity_type,outcome},
//     end_to_end_latency_seconds{entity_type}: jobs ([Metrics.ObserveJob]);
//   - reconcile_runs_total{mode,status}, reconcile_duration_seconds{mode,status},
//     reconcile_last_success_timestamp_seconds{mode},
//     drift_detected_total{entity_type,kind},
//     drift_repaired_total{entity_type,kind},
//     zoho_api_requests_total{endpoint,code},
//     zoho_token_refreshes_total{outcome}: reconciliation
//     ([Metrics.ReconcileHooks]);
//   - queue_jobs{status,priority}, queue_oldest_pending_age_seconds,
//     queue_blocked_jobs, dead_letters{entity_type}, zoho_webhooks_today,
//     zoho_api_calls_today, reconcile_paused: read from the database at most
//     every [DatabaseMaxAge] ([Metrics.WatchDatabase]).
//
// tdsprom never registers on the global registry unless it is given
// [prometheus.DefaultRegisterer].
package tdsprom

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tdscore/tds"
)

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

// Metrics are tds's collectors on one registerer. Its methods are the
// hooks given to the other packages; they are safe for concurrent use.
type Metrics struct {
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

// New registers tds's metrics on reg, or takes those registered there
// before (by another call of New), so that every Metrics of one registerer
// shares one set.
func New(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("tdsprom: New: registerer is nil")
	}
	m := &Metrics{reg: reg}
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
		return nil, fmt.Errorf("tdsprom: New: %w", err)
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

// ObserveWebhook records a webhook a Handler answered in
// tds_ingest_requests_total and tds_ingest_duration_seconds. Give it to
// the Handler with [tds.WithWebhookObserver].
func (m *Metrics) ObserveWebhook(r tds.WebhookResult) {
	route := r.Route
	if r.EntityType == "" {
		route = otherRoute
	}
	m.ingestRequests.WithLabelValues(route, outcome(r)).Inc()
	m.ingestDuration.WithLabelValues(route).Observe(nonNegative(r.Duration))
}

// outcome is the outcome label of a webhook's answer. A request abandoned
// by its sender before its event was stored got no answer: an error.
func outcome(r tds.WebhookResult) string {
	switch r.Status {
	case http.StatusOK:
		if r.Duplicate {
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

// ObserveBatch records the number of events of a group-commit transaction
// in tds_ingest_batch_size. Give it to the Handler or the Processor with
// [tds.WithBatchObserver].
func (m *Metrics) ObserveBatch(events int) {
	m.ingestBatch.Observe(float64(events))
}

// ObserveJob records a job's attempt in tds_sync_attempts_total,
// tds_sync_duration_seconds and, once synced,
// tds_end_to_end_latency_seconds. A job handed back unfinished was no
// attempt and is not counted. Give it to the Worker with
// [tds.WithObserver].
func (m *Metrics) ObserveJob(r tds.JobResult) {
	var outcome string
	switch {
	case r.Status == tds.StatusCompleted:
		outcome = string(r.Outcome)
	case r.Status == tds.StatusRetry && r.Err != nil:
		outcome = "retry"
	case r.Status == tds.StatusDeadLetter:
		outcome = "dead_letter"
	default:
		return
	}
	m.syncAttempts.WithLabelValues(r.EntityType, outcome).Inc()
	if !r.StartedAt.IsZero() {
		m.syncDuration.WithLabelValues(r.EntityType, outcome).Observe(nonNegative(r.CommittedAt.Sub(r.StartedAt)))
	}
	if r.Status == tds.StatusCompleted && !r.ReceivedAt.IsZero() {
		m.endToEnd.WithLabelValues(r.EntityType).Observe(nonNegative(r.CommittedAt.Sub(r.ReceivedAt)))
	}
}

func nonNegative(d time.Duration) float64 { return max(d, 0).Seconds() }
