package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdsalert"
	"github.com/tdscore/tds/tdsui"
)

// The dashboard scenario: each /ui/ page's render time on a database of
// dashboardEvents events (spread over the last ~14 h, one every 50 ms)
// and dashboardDead dead letters. Seeded in SQL, in a few statements:
// the events older than the last hour are processed with their jobs
// deleted (as retention leaves them), the last hour's are completed
// jobs (the throughput chart), the newest 2,000 wait, and 10,000 events
// in between are dead letters with one failed attempt each.
const (
	dashboardDead     = 10_000
	dashboardWaiting  = 2_000
	dashboardLastHour = 72_000 // events in the last hour: 3600 s / 50 ms
	dashboardToken    = "tdsbench-dashboard-admin-token"
	dashboardRequests = 200
)

// Seeding statements; ? is the newest event's time. PostgreSQL uses
// generate_series, SQLite a recursive CTE and its text times.
const (
	pgSeedEventsSQL = `INSERT INTO tds_inbox_events (source, event_type, entity_type, source_entity_id,
	idempotency_key, content_hash, payload, source_modified_at, request_metadata, is_valid, validated_at,
	moved_to_queue, queued_at, processed_at, received_at)
SELECT 'zoho', 'update', t.et, 'e' || (g % 50000), 'bench:' || g, md5(g::text),
	jsonb_build_object('item_id', 'e' || (g % 50000), 'name', 'Item ' || g, 'rate', g % 1000),
	t.at, '{"headers":{"Content-Type":["application/json"],"X-Webhook-Key":["[redacted]"]}}', TRUE, t.at,
	TRUE, t.at, CASE WHEN g <= ? THEN t.at + INTERVAL '1 second' END, t.at
FROM generate_series(?, ?) AS g,
LATERAL (SELECT (ARRAY['product','customer','invoice','bill'])[1 + g % 4] AS et,
	CAST(? AS TIMESTAMPTZ) - (? - g) * INTERVAL '50 milliseconds' AS at) AS t`
	sqSeedEventsSQL = `WITH RECURSIVE s(g) AS (SELECT ? UNION ALL SELECT g + 1 FROM s WHERE g < ?),
t AS (SELECT g, CASE g % 4 WHEN 0 THEN 'product' WHEN 1 THEN 'customer' WHEN 2 THEN 'invoice' ELSE 'bill' END AS et,
	strftime('%Y-%m-%d %H:%M:%f+00:00', julianday(?) - (? - g) * 0.05 / 86400.0) AS at FROM s)
INSERT INTO tds_inbox_events (source, event_type, entity_type, source_entity_id,
	idempotency_key, content_hash, payload, source_modified_at, request_metadata, is_valid, validated_at,
	moved_to_queue, queued_at, processed_at, received_at)
SELECT 'zoho', 'update', et, 'e' || (g % 50000), 'bench:' || g, printf('%064x', g),
	json_object('item_id', 'e' || (g % 50000), 'name', 'Item ' || g, 'rate', g % 1000),
	at, '{"headers":{"Content-Type":["application/json"],"X-Webhook-Key":["[redacted]"]}}', TRUE, at,
	TRUE, at, CASE WHEN g <= ? THEN strftime('%Y-%m-%d %H:%M:%f+00:00', julianday(at) + 1 / 86400.0) END, at
FROM t`
	// seedJobsSQL gives the events of ids (lo, hi] jobs of one status;
	// completed ones finish 0.2 to 2 s after receipt.
	pgSeedJobsSQL = `INSERT INTO tds_sync_queue (inbox_event_id, source, event_type, entity_type, source_entity_id,
	status, priority, attempt_count, max_retry_attempts, next_retry_at, last_error, last_error_code,
	created_at, updated_at, completed_at)
SELECT e.id, e.source, e.event_type, e.entity_type, e.source_entity_id, ?, 5,
	CASE WHEN ? = 'pending' THEN 0 ELSE 1 END, 5, e.received_at,
	CASE WHEN ? = 'dead_letter' THEN 'permanent: Zoho answered 400: invalid item' END,
	CASE WHEN ? = 'dead_letter' THEN 'zoho_400' END,
	e.received_at, e.received_at, CASE WHEN ? = 'completed' THEN e.received_at + (200 + e.id % 1800) * INTERVAL '1 millisecond' END
FROM tds_inbox_events AS e WHERE e.id > ? AND e.id <= ?`
	sqSeedJobsSQL = `INSERT INTO tds_sync_queue (inbox_event_id, source, event_type, entity_type, source_entity_id,
	status, priority, attempt_count, max_retry_attempts, next_retry_at, last_error, last_error_code,
	created_at, updated_at, completed_at)
SELECT e.id, e.source, e.event_type, e.entity_type, e.source_entity_id, ?, 5,
	CASE WHEN ? = 'pending' THEN 0 ELSE 1 END, 5, e.received_at,
	CASE WHEN ? = 'dead_letter' THEN 'permanent: Zoho answered 400: invalid item' END,
	CASE WHEN ? = 'dead_letter' THEN 'zoho_400' END,
	e.received_at, e.received_at,
	CASE WHEN ? = 'completed' THEN strftime('%Y-%m-%d %H:%M:%f+00:00', julianday(e.received_at) + (200 + e.id % 1800) / 86400000.0) END
FROM tds_inbox_events AS e WHERE e.id > ? AND e.id <= ?`
	seedAttemptsSQL = `INSERT INTO tds_sync_attempts (job_id, attempt, worker, error, error_code, started_at, failed_at)
SELECT q.id, 1, 'bench', q.last_error, q.last_error_code, q.created_at, q.updated_at
FROM tds_sync_queue AS q WHERE q.status = 'dead_letter'`
	// Dead letters' and waiting jobs' events are not processed.
	seedUnprocessSQL = `UPDATE tds_inbox_events SET processed_at = NULL WHERE id > ? AND id <= ?`
)

func runDashboard(ctx context.Context, db *bun.DB, c config, r *report) error {
	pg := db.Dialect().Name().String() == "pg"
	now := time.Now().UTC()
	start := time.Now()
	// Events 1..n; the last hour's (and the waiting ones) are not yet
	// processed by processed_at: their jobs say so.
	n := c.dashboardN
	lastHour := min(dashboardLastHour, n/2)
	doneBefore := n - lastHour
	deadLo := doneBefore / 2 // dead letters: a range of older events
	dead := min(dashboardDead, deadLo)
	// In chunks: one statement stays within the connection's timeouts.
	for lo := 1; lo <= n; lo += 50_000 {
		hi := min(lo+50_000-1, n)
		var err error
		if pg {
			_, err = db.ExecContext(ctx, pgSeedEventsSQL, doneBefore, lo, hi, now, n)
		} else {
			_, err = db.ExecContext(ctx, sqSeedEventsSQL, lo, hi, now.Format("2006-01-02 15:04:05.999999"), n, doneBefore)
		}
		if err != nil {
			return fmt.Errorf("seeding events: %w", err)
		}
	}
	jobs := pgSeedJobsSQL
	if !pg {
		jobs = sqSeedJobsSQL
	}
	for _, j := range []struct {
		status string
		lo, hi int
	}{
		{"dead_letter", deadLo, deadLo + dead},
		{"completed", doneBefore, n - dashboardWaiting},
		{"pending", n - dashboardWaiting, n},
	} {
		if _, err := db.ExecContext(ctx, jobs, j.status, j.status, j.status, j.status, j.status, j.lo, j.hi); err != nil {
			return fmt.Errorf("seeding %s jobs: %w", j.status, err)
		}
	}
	if _, err := db.ExecContext(ctx, seedUnprocessSQL, deadLo, deadLo+dead); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, seedAttemptsSQL); err != nil {
		return fmt.Errorf("seeding attempts: %w", err)
	}
	if _, err := db.ExecContext(ctx, "ANALYZE"); err != nil {
		return err
	}
	seeded := time.Since(start)

	log := slog.New(slog.DiscardHandler)
	alerter, err := tdsalert.New(db, tdsalert.WithLogger(log))
	if err != nil {
		return err
	}
	defer func() { _ = alerter.Close(context.Background()) }()
	h, err := tdsui.New(db, tdsui.WithRegistry(tds.ZohoRegistry()), tdsui.WithLogger(log),
		tdsui.WithAdminToken(dashboardToken), tdsui.WithAlerter(alerter))
	if err != nil {
		return err
	}
	cookie, csrf, err := dashboardSignIn(h)
	if err != nil {
		return err
	}
	var deadEvent int64
	if err := db.NewRaw(`SELECT inbox_event_id FROM tds_sync_queue WHERE status = 'dead_letter' ORDER BY id LIMIT 1`).
		Scan(ctx, &deadEvent); err != nil {
		return err
	}
	r.row("dashboard: seed", seeded.Round(time.Second).String(),
		fmt.Sprintf("%d events, %d dead letters (one attempt each), %d completed in the last hour, %d waiting",
			n, dead, lastHour-dashboardWaiting, dashboardWaiting))
	retry := url.Values{"csrf": {csrf}, "entity_type": {"bill"}}.Encode()
	for _, p := range []struct{ name, method, path, body string }{
		{"overview (its counts cached 10 s)", "GET", "/ui/", ""},
		{"uncached: GET /queue/stats", "GET", "/queue/stats", ""},
		{"uncached: GET /queue/throughput", "GET", "/queue/throughput", ""},
		{"events, first page", "GET", "/ui/events", ""},
		{"events, a page 10% back (before_id)", "GET", fmt.Sprintf("/ui/events?before_id=%d", n-n/10), ""},
		{"events by entity type", "GET", "/ui/events?entity_type=invoice", ""},
		{"events by entity id", "GET", "/ui/events?entity_type=product&entity_id=e4", ""},
		{"events not processed", "GET", "/ui/events?processed=false", ""},
		{"an event (dead letter, its attempt)", "GET", fmt.Sprintf("/ui/events/%d", deadEvent), ""},
		{"dead letters", "GET", "/ui/dead-letters", ""},
		{"dead letters by entity type", "GET", "/ui/dead-letters?entity_type=bill", ""},
		{"retry by filter: the confirmation (dry-run count)", "POST", "/ui/dead-letters/retry-filter", retry},
		{"alerts", "GET", "/ui/alerts", ""},
		{"reconciliation (not configured)", "GET", "/ui/reconcile", ""},
	} {
		c := cookie
		if !strings.HasPrefix(p.path, "/ui/") {
			c = nil // the JSON API, with the bearer token
		}
		d, err := timePage(h, c, p.method, p.path, p.body)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		slices.Sort(d)
		r.row("dashboard: "+p.name, "p50 "+ms(percentile(d, 50))+", p95 "+ms(percentile(d, 95)),
			fmt.Sprintf("max %s; %d requests, one at a time", ms(d[len(d)-1]), len(d)))
	}
	return nil
}

var benchCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// dashboardSignIn signs in and returns the session cookie and CSRF token.
func dashboardSignIn(h http.Handler) (*http.Cookie, string, error) {
	req := httptest.NewRequest("POST", "/ui/login", strings.NewReader(url.Values{"token": {dashboardToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	cs := w.Result().Cookies()
	if w.Code != http.StatusSeeOther || len(cs) != 1 {
		return nil, "", fmt.Errorf("sign-in answered %d", w.Code)
	}
	req = httptest.NewRequest("GET", "/ui/alerts", nil)
	req.AddCookie(cs[0])
	w = httptest.NewRecorder()
	h.ServeHTTP(w, req)
	m := benchCSRF.FindStringSubmatch(w.Body.String())
	if m == nil {
		return nil, "", fmt.Errorf("no CSRF token on the page (%d)", w.Code)
	}
	return cs[0], m[1], nil
}

// timePage requests a page dashboardRequests times after a warm-up.
func timePage(h http.Handler, cookie *http.Cookie, method, path, body string) ([]time.Duration, error) {
	var out []time.Duration
	for i := range dashboardRequests + 10 {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req := httptest.NewRequest(method, path, rd)
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if cookie != nil {
			req.AddCookie(cookie)
		} else {
			req.Header.Set("Authorization", "Bearer "+dashboardToken)
		}
		w := httptest.NewRecorder()
		t0 := time.Now()
		h.ServeHTTP(w, req)
		d := time.Since(t0)
		if w.Code != http.StatusOK {
			return nil, fmt.Errorf("%s %s answered %d: %.300s", method, path, w.Code, w.Body.String())
		}
		if i >= 10 {
			out = append(out, d)
		}
	}
	return out, nil
}
