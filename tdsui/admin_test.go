package tdsui

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/alert"
	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/internal/ui"
	"github.com/tdscore/tds/tdsalert"
)

var bearer = []string{"Authorization", "Bearer " + testAdminToken}

// adminGet and adminPost call the admin API with the test token.
func adminGet(t *testing.T, h http.Handler, path string) answer {
	t.Helper()
	return serve(t, h, "GET", path, nil, bearer...)
}

func adminPost(t *testing.T, h http.Handler, path, body string) answer {
	t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	return serve(t, h, "POST", path, b, append([]string{"Content-Type", "application/json"}, bearer...)...)
}

func TestAdminAuthentication(t *testing.T) {
	tdb := testdb.Open(t, "sqlite")
	// Without a refusal limit: these are many refusals from one address.
	h := newTestHandler(t, tdb, WithAdminToken(testAdminToken), WithAdminRefusalLimit(0, 0))
	noAdmin := newTestHandler(t, tdb, WithAdminRefusalLimit(0, 0))
	// Every 401 is the same answer: it does not say whether a token is
	// configured, nor whether one was sent.
	refused := func(a answer) {
		t.Helper()
		requireError(t, a, 401, adminUnauthorized)
		require.Equal(t, adminUnauthorized, a.body["error"])
		require.Equal(t, `Bearer realm="tds"`, a.header.Get("WWW-Authenticate"))
	}
	for _, path := range []string{"/queue/stats", "/admin/events", "/admin/events/1", "/admin/dead-letters"} {
		refused(serve(t, h, "GET", path, nil))
		refused(serve(t, h, "GET", path, nil, "Authorization", "Bearer wrong"))
		refused(serve(t, h, "GET", path, nil, "Authorization", "Bearer "+testdb.WebhookKey))
		refused(serve(t, h, "GET", path, nil, "Authorization", "Basic "+testAdminToken))
		refused(serve(t, h, "GET", path, nil, tds.HeaderWebhookKey, testdb.WebhookKey))
		refused(serve(t, noAdmin, "GET", path, nil, bearer...))
		refused(serve(t, noAdmin, "GET", path, nil))
		refused(serve(t, noAdmin, "GET", path, nil, "Authorization", "Bearer "))
		// The scheme is case-insensitive; event 1 does not exist, which is a 404, not a 401.
		require.NotEqual(t, http.StatusUnauthorized, serve(t, h, "GET", path, nil, "Authorization", "bearer "+testAdminToken).status, path)
	}
	for _, path := range []string{"/admin/dead-letters/retry", "/admin/dead-letters/1/retry", "/admin/dead-letters/1/discard"} {
		refused(serve(t, h, "POST", path, nil))
		refused(serve(t, noAdmin, "POST", path, nil))
	}
}

// Several admin tokens are accepted at once, given in one call or several,
// so one can be rotated without downtime.
func TestAdminTokenRotation(t *testing.T) {
	tdb := testdb.Open(t, "sqlite")
	h := newTestHandler(t, tdb, WithAdminToken("old-admin-token-01", "new-admin-token-02"), WithAdminToken("third-admin-token-03"))
	for _, tok := range []string{"old-admin-token-01", "new-admin-token-02", "third-admin-token-03"} {
		a := serve(t, h, "GET", "/queue/stats", nil, "Authorization", "Bearer "+tok)
		require.Equal(t, http.StatusOK, a.status, a.raw)
	}
	for _, tok := range []string{"old-admin-token-0", "new-admin-token-020", "", testdb.WebhookKey} {
		requireError(t, serve(t, h, "GET", "/queue/stats", nil, "Authorization", "Bearer "+tok), 401, adminUnauthorized)
	}
}

// TestQueueStatsOverHTTP also keeps the seed's shape of the answer
// (total_events, by_status, by_entity, by_priority, oldest_pending,
// processing_rate), which clients of the first version read.
func TestQueueStatsOverHTTP(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		hooks := newWebhooks(t, tdb)
		h := newTestHandler(t, tdb, WithAdminToken(testAdminToken))
		for _, f := range []struct{ route, file string }{{"products", "product.json"}, {"invoices", "invoice.json"}, {"stock", "stock.json"}} {
			require.Equal(t, http.StatusOK, webhook(t, hooks, f.route, testdb.Fixture(t, f.file)).status)
		}
		a := adminGet(t, h, "/queue/stats")
		require.Equal(t, http.StatusOK, a.status, a.raw)
		for _, k := range []string{"total_jobs", "by_status", "by_entity", "by_priority", "blocked", "oldest_pending", "processing_rate"} {
			require.Contains(t, a.body, k)
		}
		require.EqualValues(t, 3, a.body["total_jobs"])
		for _, k := range []string{"total_events", "by_status", "by_entity", "by_priority", "oldest_pending", "processing_rate"} {
			require.Contains(t, a.body, k, "the seed's shape")
		}
		require.EqualValues(t, 3, a.body["total_events"])
		require.Equal(t, map[string]any{"pending": 3.0, "processing": 0.0, "retry": 0.0, "completed": 0.0, "dead_letter": 0.0}, a.body["by_status"])
		require.Equal(t, map[string]any{"product": 1.0, "invoice": 1.0, "stock": 1.0}, a.body["by_entity"])
		require.Equal(t, map[string]any{"2": 1.0, "5": 1.0, "8": 1.0}, a.body["by_priority"])
		require.NotNil(t, a.body["oldest_pending"])
	})
}

func TestAdminEvents(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		clock := testkit.NewClock()
		hooks := newWebhooks(t, tdb, tds.WithClock(clock.Now))
		h := newTestHandler(t, tdb, WithAdminToken(testAdminToken), WithClock(clock.Now))
		var ids []float64
		for _, f := range []struct{ route, file string }{
			{"products", "product.json"}, {"customers", "customer.json"},
			{"products", "invalid_product_missing_name.json"}, {"invoices", "invoice.json"},
		} {
			a := webhook(t, hooks, f.route, testdb.Fixture(t, f.file))
			require.Contains(t, []int{200, 422}, a.status, a.raw)
			ids = append(ids, a.body["event_id"].(float64))
			clock.Advance(time.Hour)
		}

		all := adminGet(t, h, "/admin/events")
		require.Equal(t, http.StatusOK, all.status, all.raw)
		require.Equal(t, true, all.body["success"])
		require.Equal(t, []float64{ids[3], ids[2], ids[1], ids[0]}, eventIDs(all), "newest first")
		require.NotContains(t, all.body, "next_before_id", "the last page has no cursor")

		page1 := adminGet(t, h, "/admin/events?limit=3")
		require.Equal(t, []float64{ids[3], ids[2], ids[1]}, eventIDs(page1))
		page2 := adminGet(t, h, fmt.Sprintf("/admin/events?limit=3&before_id=%.0f", page1.body["next_before_id"]))
		require.Equal(t, []float64{ids[0]}, eventIDs(page2))

		for query, want := range map[string][]float64{
			"entity_type=product":            {ids[2], ids[0]},
			"entity_type=product&valid=true": {ids[0]},
			"valid=false":                    {ids[2]},
			"queued=false":                   {ids[2]},
			"processed=false":                {ids[3], ids[2], ids[1], ids[0]},
			"processed=true":                 {},
			"event_type=create":              {ids[3], ids[1]},
			"entity_id=460000000026049":      {ids[1]},
			"source=zoho&limit=1":            {ids[3]},
			"since=2026-11-20T11:00:00Z":     {ids[3], ids[2], ids[1]},
			"until=2026-11-20T11:00:00Z":     {ids[0]},
			"since=2026-11-20T11:00:00Z&until=2026-11-20T12:00:00%2B00:00": {ids[1]},
		} {
			a := adminGet(t, h, "/admin/events?"+query)
			require.Equal(t, http.StatusOK, a.status, "%s: %s", query, a.raw)
			require.Equal(t, want, eventIDs(a), query)
		}
		for _, query := range []string{"limit=0", "limit=1001", "limit=x", "valid=maybe", "since=yesterday", "before_id=-1"} {
			requireError(t, adminGet(t, h, "/admin/events?"+query), 400, "must be")
		}

		// One event: its queue entry and every attempt's error.
		a := adminGet(t, h, fmt.Sprintf("/admin/events/%.0f", ids[0]))
		require.Equal(t, http.StatusOK, a.status, a.raw)
		event := a.body["event"].(map[string]any)
		require.Equal(t, "460000000038080", event["entity_id"])
		require.Equal(t, "Hydraulic Pump 3kW", event["payload"].(map[string]any)["name"])
		job := a.body["job"].(map[string]any)
		require.Equal(t, "pending", job["status"])
		require.Equal(t, []any{}, a.body["attempts"])
		jobID := int64(job["id"].(float64))
		failJob(t, tdb, jobID, "timeout", "upstream timed out", "upstream timed out again")
		a = adminGet(t, h, fmt.Sprintf("/admin/events/%.0f", ids[0]))
		attempts := a.body["attempts"].([]any)
		require.Len(t, attempts, 2)
		require.Equal(t, "upstream timed out", attempts[0].(map[string]any)["error"])
		require.Equal(t, "upstream timed out again", attempts[1].(map[string]any)["error"])
		require.Equal(t, "dead_letter", a.body["job"].(map[string]any)["status"])

		// The invalid event has no job; its errors are on the event.
		a = adminGet(t, h, fmt.Sprintf("/admin/events/%.0f", ids[2]))
		require.Nil(t, a.body["job"])
		require.NotEmpty(t, a.body["event"].(map[string]any)["validation_errors"])

		requireError(t, adminGet(t, h, "/admin/events/99999"), 404, "not found")
		requireError(t, adminGet(t, h, "/admin/events/abc"), 400, "positive integer")
		requireError(t, adminGet(t, h, "/admin/events/0"), 400, "positive integer")
	})
}

func eventIDs(a answer) []float64 {
	out := []float64{}
	evs, _ := a.body["events"].([]any)
	for _, e := range evs {
		out = append(out, e.(map[string]any)["id"].(float64))
	}
	return out
}

// failJob does what a worker does when it gives up on a job: one attempt
// row per error, then dead_letter with the last error's code.
func failJob(t *testing.T, tdb *testdb.DB, jobID int64, code string, errs ...string) {
	t.Helper()
	ctx := context.Background()
	for i, e := range errs {
		_, err := tdb.DB.NewInsert().Model(&store.Attempt{JobID: jobID, Attempt: i + 1, Error: e, ErrorCode: &code,
			FailedAt: time.Now().UTC()}).Exec(ctx)
		require.NoError(t, err)
	}
	_, err := tdb.DB.NewUpdate().Model((*store.Job)(nil)).Set("status = ?", tds.StatusDeadLetter).
		Set("attempt_count = ?", len(errs)).Set("last_error = ?", errs[len(errs)-1]).
		Set("last_error_code = ?", code).Where("id = ?", jobID).Exec(ctx)
	require.NoError(t, err)
}

func TestAdminDeadLetters(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		hooks := newWebhooks(t, tdb)
		h := newTestHandler(t, tdb, WithAdminToken(testAdminToken))
		var jobs []int64
		for i, f := range []struct{ route, file string }{
			{"products", "product.json"}, {"invoices", "invoice.json"}, {"customers", "customer.json"}, {"bills", "bill.json"},
		} {
			a := webhook(t, hooks, f.route, testdb.Fixture(t, f.file))
			require.Equal(t, http.StatusOK, a.status, a.raw)
			ev := adminGet(t, h, fmt.Sprintf("/admin/events/%.0f", a.body["event_id"]))
			id := int64(ev.body["job"].(map[string]any)["id"].(float64))
			jobs = append(jobs, id)
			code := "timeout"
			if i%2 == 1 {
				code = "http_500"
			}
			failJob(t, tdb, id, code, "failed: "+code)
		}

		list := adminGet(t, h, "/admin/dead-letters")
		require.Equal(t, http.StatusOK, list.status, list.raw)
		require.Equal(t, []int64{jobs[3], jobs[2], jobs[1], jobs[0]}, jobIDs(list))
		require.Equal(t, []int64{jobs[3], jobs[1]}, jobIDs(adminGet(t, h, "/admin/dead-letters?error_code=http_500")))
		require.Equal(t, []int64{jobs[1]}, jobIDs(adminGet(t, h, "/admin/dead-letters?entity_type=invoice")))
		page := adminGet(t, h, "/admin/dead-letters?limit=2")
		require.Equal(t, []int64{jobs[3], jobs[2]}, jobIDs(page))
		require.Equal(t, []int64{jobs[1], jobs[0]}, jobIDs(adminGet(t, h, fmt.Sprintf("/admin/dead-letters?limit=2&before_id=%.0f", page.body["next_before_id"]))))
		requireError(t, adminGet(t, h, "/admin/dead-letters?until=soon"), 400, "RFC 3339")

		// Retry one.
		a := adminPost(t, h, fmt.Sprintf("/admin/dead-letters/%d/retry", jobs[0]), "")
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, "pending", a.body["job"].(map[string]any)["status"])
		require.EqualValues(t, 0, a.body["job"].(map[string]any)["attempt"])
		requireError(t, adminPost(t, h, fmt.Sprintf("/admin/dead-letters/%d/retry", jobs[0]), ""), 404, "not found")
		requireError(t, adminPost(t, h, "/admin/dead-letters/99999/retry", ""), 404, "not found")
		requireError(t, adminPost(t, h, "/admin/dead-letters/x/retry", ""), 400, "positive integer")

		// Retry by filter: a dry run counts and changes nothing.
		a = adminPost(t, h, "/admin/dead-letters/retry", `{"error_code": "http_500", "dry_run": true}`)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, map[string]any{"success": true, "dry_run": true, "count": 2.0,
			"message": "dry run: 2 dead letters would be queued again"}, a.body)
		require.Equal(t, 3, testkit.Count(t, tdb.DB, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'dead_letter'"))
		a = adminPost(t, h, "/admin/dead-letters/retry?dry_run=true", `{"entity_type": "bill"}`)
		require.Equal(t, 1.0, a.body["count"], a.raw)
		a = adminPost(t, h, "/admin/dead-letters/retry", `{"error_code": "http_500"}`)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, false, a.body["dry_run"])
		require.Equal(t, 2.0, a.body["count"])
		require.Equal(t, 1, testkit.Count(t, tdb.DB, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'dead_letter'"))
		requireError(t, adminPost(t, h, "/admin/dead-letters/retry", `{"error_code": 5}`), 400, "malformed JSON")
		requireError(t, adminPost(t, h, "/admin/dead-letters/retry", `{"errorcode": "x"}`), 400, "malformed JSON")
		requireError(t, adminPost(t, h, "/admin/dead-letters/retry?dry_run=perhaps", ""), 400, "dry_run")

		// A bulk retry names a filter or says "all": an empty body is no
		// longer "everything".
		for _, body := range []string{"", "{}", `{"dry_run": true}`, `{"all": false}`} {
			requireError(t, adminPost(t, h, "/admin/dead-letters/retry", body), 400, `"all": true`)
		}
		requireError(t, adminPost(t, h, "/admin/dead-letters/retry", `{"all": true, "entity_type": "bill"}`), 400, "without a filter")
		require.Equal(t, 1, testkit.Count(t, tdb.DB, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'dead_letter'"))
		a = adminPost(t, h, "/admin/dead-letters/retry", `{"all": true, "dry_run": true}`)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, 1.0, a.body["count"], a.raw)
		require.Equal(t, 1, testkit.Count(t, tdb.DB, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'dead_letter'"))

		// Every admin POST is declared JSON, even one without a body.
		for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx"} {
			for _, path := range []string{"/admin/dead-letters/retry", fmt.Sprintf("/admin/dead-letters/%d/retry", jobs[2]), fmt.Sprintf("/admin/dead-letters/%d/discard", jobs[2])} {
				r := httptest.NewRequest("POST", path, strings.NewReader(`{"all": true}`))
				r.Header.Set("Authorization", "Bearer "+testAdminToken)
				if ct != "" {
					r.Header.Set("Content-Type", ct)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				requireError(t, decodeAnswer(t, w.Code, w.Header(), w.Body.Bytes()), 415, "application/json")
			}
		}
		require.Equal(t, 1, testkit.Count(t, tdb.DB, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'dead_letter'"))
		a = adminPost(t, h, "/admin/dead-letters/retry", `{"all": true, "dry_run": true}`)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		a = serve(t, h, "POST", "/admin/dead-letters/retry", []byte(`{"all": true, "dry_run": true}`), append([]string{"Content-Type", "application/json; charset=utf-8"}, bearer...)...)
		require.Equal(t, http.StatusOK, a.status, a.raw)

		// Discard: a reason is required.
		discard := fmt.Sprintf("/admin/dead-letters/%d/discard", jobs[2])
		requireError(t, adminPost(t, h, discard, ""), 400, "reason")
		requireError(t, adminPost(t, h, discard, `{"reason": "  "}`), 400, "reason")
		a = adminPost(t, h, discard, `{"reason": "customer deleted upstream"}`)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		job := a.body["job"].(map[string]any)
		require.Equal(t, "completed", job["status"])
		require.Equal(t, string(tds.OutcomeDiscarded), job["outcome"])
		require.Equal(t, "customer deleted upstream", job["outcome_detail"])
		requireError(t, adminPost(t, h, discard, `{"reason": "again"}`), 404, "not found")
		require.Equal(t, []int64{}, jobIDs(adminGet(t, h, "/admin/dead-letters")))
	})
}

func jobIDs(a answer) []int64 {
	out := []int64{}
	jobs, _ := a.body["dead_letters"].([]any)
	for _, j := range jobs {
		out = append(out, int64(j.(map[string]any)["id"].(float64)))
	}
	return out
}

// A filter the databases cannot hold (a NUL byte, text that is not UTF-8,
// a time outside years 1 to 9999) is the client's error, 400 on both
// dialects, never a logged 500.
func TestAdminFilterOutOfRange(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		h := newTestHandler(t, tdb, WithAdminToken(testAdminToken))
		for _, query := range []string{
			"since=0000-01-01T00:00:00Z", "until=0000-12-31T23:59:59Z", "since=0001-01-01T00:30:00%2B01:00",
			"until=9999-12-31T23:00:00-01:00", "entity_id=%00", "source=a%00b", "entity_type=%00",
			"event_type=%00", "entity_id=%ff",
		} {
			requireError(t, adminGet(t, h, "/admin/events?"+query), 400, "")
		}
		for _, query := range []string{"since=0000-01-01T00:00:00Z", "until=0000-01-01T00:00:00Z", "error_code=%00", "entity_type=%00"} {
			requireError(t, adminGet(t, h, "/admin/dead-letters?"+query), 400, "")
		}
		requireError(t, adminPost(t, h, "/admin/dead-letters/retry", `{"since":"0000-01-01T00:00:00Z","dry_run":true}`), 400, "")
		requireError(t, adminPost(t, h, "/admin/dead-letters/retry", `{"entity_type":"a\u0000b","dry_run":true}`), 400, "")
		// The edges of the range are accepted.
		for _, query := range []string{"since=0001-01-01T00:00:00Z", "until=9999-12-31T23:59:59.999999Z"} {
			a := adminGet(t, h, "/admin/events?"+query)
			require.Equal(t, http.StatusOK, a.status, "%s: %s", query, a.raw)
			a = adminGet(t, h, "/admin/dead-letters?"+query)
			require.Equal(t, http.StatusOK, a.status, "%s: %s", query, a.raw)
		}
	})
}

// requireLogLine checks that logs has a line of message "tds: "+msg
// containing attrs.
func requireLogLine(t *testing.T, logs *testkit.LogBuffer, msg, attrs string) {
	t.Helper()
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `msg="tds: `+msg+`"`) && strings.Contains(line, attrs) {
			return
		}
	}
	require.Fail(t, "no such log line", "%q with %q in:\n%s", msg, attrs, logs.String())
}

// TestAdminRefusalLimit: refused admin requests are counted per address
// in their own bucket, logged at most once per address and period, told
// to the Alerter, and answered 429 past the limit; a valid token is never
// limited.
func TestAdminRefusalLimit(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		clock := testkit.NewClock()
		var logs testkit.LogBuffer
		a, err := tdsalert.New(tdb.DB, tdsalert.WithClock(clock.Now), tdsalert.WithLogger(testdb.QuietLogger),
			tdsalert.WithRules(testdb.OnlyRule(alert.RuleAuthFailures, "threshold: 4")))
		require.NoError(t, err)
		t.Cleanup(func() { _ = a.Close(t.Context()) })
		h := newTestHandler(t, tdb, WithAdminToken(testAdminToken), WithClock(clock.Now), WithLogger(logs.Logger()),
			WithAdminRefusalLimit(3, time.Minute), WithSignInLimit(3, time.Minute), WithAlerter(a))
		get := func(remote, token string) answer {
			t.Helper()
			r := httptest.NewRequest("GET", "/admin/events", nil)
			r.RemoteAddr = remote
			if token != "" {
				r.Header.Set("Authorization", "Bearer "+token)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return decodeAnswer(t, w.Code, w.Header(), w.Body.Bytes())
		}
		const attacker = "192.0.2.1:4000"
		for range 3 {
			requireError(t, get(attacker, "wrong-token-guess-000"), 401, adminUnauthorized)
		}
		limited := get(attacker, "wrong-token-guess-001")
		requireError(t, limited, 429, "too many refused requests")
		require.Equal(t, "20", limited.header.Get("Retry-After"))
		requireError(t, get(attacker, ""), 429, "too many refused requests")
		require.Equal(t, http.StatusOK, get(attacker, testAdminToken).status, "a valid token is never limited")
		requireError(t, get("192.0.2.2:4000", "wrong"), 401, adminUnauthorized)

		// The dashboard's sign-in has its own bucket.
		require.Equal(t, http.StatusSeeOther, signIn(h, attacker, "", testAdminToken).Code)

		// One log line per address and period, saying how many it stands for.
		require.Equal(t, 2, strings.Count(logs.String(), "admin request refused"), logs.String())
		requireLogLine(t, &logs, "admin request refused", "client_ip=192.0.2.1")
		clock.Advance(time.Minute)
		requireError(t, get(attacker, "wrong"), 401, adminUnauthorized)
		requireLogLine(t, &logs, "admin request refused", "client_ip=192.0.2.1 path=/admin/events refused=5")

		// The Alerter counted every refusal: 3 + 2 + 1 + 1.
		require.NoError(t, a.Evaluate(t.Context()))
		alerts, err := a.Alerts(t.Context(), "")
		require.NoError(t, err)
		require.Len(t, alerts, 1)
		require.Equal(t, alert.RuleAuthFailures, alerts[0].Rule)
		require.Equal(t, 7.0, alerts[0].Value)
	})
}

// TestAdminActorLogged: every change made through the admin API or the
// dashboard is logged with who made it: the client address and the
// token's index, or the dashboard session.
func TestAdminActorLogged(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		var logs testkit.LogBuffer
		hooks := newWebhooks(t, tdb)
		h := newTestHandler(t, tdb, WithAdminToken("first-admin-token-0123", testAdminToken), WithLogger(logs.Logger()))
		var jobs []int64
		for _, id := range []string{"9001", "9002", "9003", "9004"} {
			body := fmt.Sprintf(`{"source":"zoho","event_type":"update","entity_type":"product","entity_id":%q,"data":{"item_id":%q,"name":"P","last_modified_time":"2026-11-20T10:00:00+0000"}}`, id, id)
			a := webhook(t, hooks, "products", []byte(body))
			require.Equal(t, http.StatusOK, a.status, a.raw)
			job, err := h.queue.GetByInboxEvent(t.Context(), int64(a.body["event_id"].(float64)))
			require.NoError(t, err)
			failJob(t, tdb, job.ID, "timeout", "upstream timed out")
			jobs = append(jobs, job.ID)
		}
		const api = "actor.client_ip=192.0.2.1 actor.token=1"
		require.Equal(t, http.StatusOK, adminPost(t, h, fmt.Sprintf("/admin/dead-letters/%d/retry", jobs[0]), "").status)
		requireLogLine(t, &logs, "dead letter retried", api)
		require.Equal(t, http.StatusOK, adminPost(t, h, fmt.Sprintf("/admin/dead-letters/%d/discard", jobs[1]), `{"reason":"gone"}`).status)
		requireLogLine(t, &logs, "dead letter discarded", api)
		require.Equal(t, http.StatusOK, adminPost(t, h, "/admin/dead-letters/retry", `{"entity_type":"nothing"}`).status)
		requireLogLine(t, &logs, "dead letters retried", api)

		// The dashboard: the session's id and the client address.
		sessions, err := h.dash.sessions(t.Context())
		require.NoError(t, err)
		s, cookie, ok := sessions.Issue(time.Now())
		require.True(t, ok)
		post := func(path string, form url.Values) int {
			t.Helper()
			form.Set("csrf", s.CSRF())
			r := httptest.NewRequest("POST", path, strings.NewReader(form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.RemoteAddr = "198.51.100.4:5000"
			r.AddCookie(&http.Cookie{Name: ui.CookieName, Value: cookie})
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w.Code
		}
		dash := "actor.client_ip=198.51.100.4 actor.session=" + s.ID
		require.Equal(t, http.StatusSeeOther, post(fmt.Sprintf("/ui/dead-letters/%d/retry", jobs[2]), url.Values{}))
		requireLogLine(t, &logs, "dead letter retried", dash)
		require.Equal(t, http.StatusSeeOther, post(fmt.Sprintf("/ui/dead-letters/%d/discard", jobs[3]), url.Values{"reason": {"gone"}}))
		requireLogLine(t, &logs, "dead letter discarded", dash)
		require.Equal(t, http.StatusSeeOther, post("/ui/dead-letters/retry", url.Values{"id": {"1"}}))
		require.Equal(t, http.StatusSeeOther, post("/ui/dead-letters/retry-filter", url.Values{"entity_type": {"x"}, "confirm": {"yes"}}))
		require.Equal(t, 2, strings.Count(logs.String(), `msg="tds: dead letters retried" count=0 `+dash), logs.String())
	})
}

// TestAdminEventStatus: every event says where it stands, in one field
// and one filter, on both databases; a dead letter is not "synced", and
// processed=true keeps its documented meaning (finished, whatever the
// outcome).
func TestAdminEventStatus(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		e := newDashboardEnv(t, tdb)
		ctx := context.Background()
		e.failing.Store("dead", true)
		e.failing.Store("gone", true)
		e.later.Store("later", true)
		post := func(id, name, modified string) float64 {
			body := fmt.Sprintf(`{"source":"zoho","event_type":"update","entity_type":"product","entity_id":%q,"data":{"item_id":%q,"name":%q,"last_modified_time":%q}}`,
				id, id, name, modified)
			a := webhook(t, e.hooks, "products", []byte(body))
			require.Contains(t, []int{200, 422}, a.status, a.raw)
			return a.body["event_id"].(float64)
		}
		synced := post("p1", "New", "2026-11-20T10:00:00+0000")
		superseded := post("p1", "Old", "2026-11-20T09:00:00+0000")
		dead := post("dead", "Dead", "2026-11-20T10:00:00+0000")
		discarded := post("gone", "Gone", "2026-11-20T10:00:00+0000")
		waiting := post("later", "Later", "2026-11-20T10:00:00+0000")
		invalid := webhook(t, e.hooks, "products", testdb.Fixture(t, "invalid_product_missing_name.json")).body["event_id"].(float64)
		inbox, err := tds.NewInbox(tdb.DB)
		require.NoError(t, err)
		store := func(id string) float64 {
			ev, dup, err := inbox.Store(ctx, &tds.Event{EventType: "update", EntityType: "product", EntityID: id, Data: []byte(`{}`)})
			require.NoError(t, err)
			require.False(t, dup)
			require.Equal(t, tds.EventStatusReceived, ev.Status)
			return float64(ev.ID)
		}
		received, closed := store("r1"), store("r2")
		require.NoError(t, inbox.MarkProcessed(ctx, int64(closed)))
		require.Eventually(t, func() bool {
			s, err := e.h.queue.Stats(ctx)
			require.NoError(t, err)
			return s.ByStatus[tds.StatusPending]+s.ByStatus[tds.StatusProcessing] == 0 &&
				s.ByStatus[tds.StatusRetry] == 1 && s.ByStatus[tds.StatusDeadLetter] == 2
		}, 20*time.Second, 20*time.Millisecond)
		gone := adminGet(t, e.h, fmt.Sprintf("/admin/events/%.0f", discarded)).body["job"].(map[string]any)["id"].(float64)
		require.Equal(t, http.StatusOK, adminPost(t, e.h, fmt.Sprintf("/admin/dead-letters/%.0f/discard", gone), `{"reason":"not ours"}`).status)

		want := map[float64]string{synced: "synced", superseded: "superseded", dead: "dead_letter", discarded: "discarded",
			waiting: "waiting", invalid: "invalid", received: "received", closed: "closed"}
		all := adminGet(t, e.h, "/admin/events")
		got := map[float64]string{}
		for _, ev := range all.body["events"].([]any) {
			m := ev.(map[string]any)
			got[m["id"].(float64)] = m["status"].(string)
		}
		require.Equal(t, want, got)
		for id, st := range want {
			require.Equal(t, []float64{id}, eventIDs(adminGet(t, e.h, "/admin/events?status="+st)), st)
			one := adminGet(t, e.h, fmt.Sprintf("/admin/events/%.0f", id))
			require.Equal(t, st, one.body["event"].(map[string]any)["status"], "GET /admin/events/{id}")
		}
		require.Equal(t, []float64{closed, discarded, dead, superseded, synced}, eventIDs(adminGet(t, e.h, "/admin/events?processed=true")),
			"processed: finished, whatever the outcome")
		require.Equal(t, []float64{received, invalid, waiting}, eventIDs(adminGet(t, e.h, "/admin/events?processed=false")))
		require.Equal(t, []float64{dead}, eventIDs(adminGet(t, e.h, "/admin/events?processed=true&status=dead_letter")))
		requireError(t, adminGet(t, e.h, "/admin/events?status=processed"), 400, "status must be one of received, waiting")
	})
}
