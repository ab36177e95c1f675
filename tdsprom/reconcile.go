package tdsprom

import (
	"net/http"
	"time"

	"github.com/tdscore/tds/tdsreconcile"
)

// ReconcileHooks returns the hooks that record a Reconciler's runs, drift
// and Zoho API calls in tds_reconcile_runs_total,
// tds_reconcile_duration_seconds,
// tds_reconcile_last_success_timestamp_seconds, tds_drift_detected_total,
// tds_drift_repaired_total, tds_zoho_api_requests_total and
// tds_zoho_token_refreshes_total. Give them to the Reconciler with
// [tdsreconcile.WithHooks].
func (m *Metrics) ReconcileHooks() tdsreconcile.Hooks {
	return tdsreconcile.Hooks{
		RunEnded: m.runEnded,
		DriftFound: func(entityType string, kind tdsreconcile.DriftKind) {
			m.driftDetected.WithLabelValues(entityType, string(kind)).Inc()
		},
		DriftRepaired: func(entityType string, kind tdsreconcile.DriftKind) {
			m.driftRepaired.WithLabelValues(entityType, string(kind)).Inc()
		},
		APIResponse: func(endpoint string, status int, _ time.Duration) {
			if code := statusClass(status); code != "" {
				m.zohoRequests.WithLabelValues(endpoint, code).Inc()
			}
		},
		TokenRefresh: func(err error) {
			outcome := "success"
			if err != nil {
				outcome = "failure"
			}
			m.zohoRefreshes.WithLabelValues(outcome).Inc()
		},
	}
}

// runEnded records a reconciliation run that ended.
func (m *Metrics) runEnded(run tdsreconcile.SyncRun) {
	mode, status := string(run.Mode), string(run.Status)
	end := run.StartedAt
	if run.FinishedAt != nil {
		end = *run.FinishedAt
	}
	m.reconcileRuns.WithLabelValues(mode, status).Inc()
	m.reconcileDuration.WithLabelValues(mode, status).Observe(nonNegative(end.Sub(run.StartedAt)))
	if run.Status == tdsreconcile.RunCompleted && !run.DryRun {
		m.reconcileLastSuccess.WithLabelValues(mode).Set(float64(end.UnixNano()) / 1e9)
	}
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
