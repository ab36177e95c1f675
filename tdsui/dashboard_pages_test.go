package tdsui

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds/internal/testdb"
)

// signedIn returns a client signed in to e's dashboard, and its root.
func (e *dashboardEnv) signedIn(t *testing.T) (*http.Client, string) {
	t.Helper()
	c := browserClient(t)
	root := e.srv.URL + "/ops/ui/"
	status, _, _ := fetchPage(t, c, "POST", root+"login", url.Values{"token": {testAdminToken}})
	require.Equal(t, http.StatusSeeOther, status)
	return c, root
}

// page fetches a dashboard page, which must answer 200.
func page(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	status, _, body := fetchPage(t, c, "GET", u, nil)
	require.Equal(t, http.StatusOK, status, body)
	return body
}

// eventOf is the id of the event of entity id, from the admin API.
func (e *dashboardEnv) eventOf(t *testing.T, id string) int64 {
	t.Helper()
	evs := adminGet(t, e.h, "/admin/events?entity_id="+id).body["events"].([]any)
	require.Len(t, evs, 1, id)
	return int64(evs[0].(map[string]any)["id"].(float64))
}

// TestDashboardEventStates: the events list has a status column, and an
// event's page shows its state with only the times that apply: a dead
// letter is dead-lettered, never "processed"; a job completed by a retry
// shows its outcome, and the error with the attempt that failed.
func TestDashboardEventStates(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		e := newDashboardEnv(t, tdb)
		e.flaky.Store("flaky-1", true)
		e.seed(t, []string{"p1", "bad-1", "flaky-1"}, "bad-1")
		c, root := e.signedIn(t)

		list := page(t, c, root+"events")
		require.Contains(t, list, "<th>Status</th>")
		require.NotContains(t, list, "<th>Processed</th>")
		require.Equal(t, 2, strings.Count(list, `<span class="badge synced">synced</span>`), list)
		require.Equal(t, 1, strings.Count(list, `<span class="badge dead_letter">dead_letter</span>`), list)
		dead := page(t, c, root+"events?status=dead_letter")
		require.Equal(t, 1, strings.Count(dead, `<td class="status">`))
		require.Contains(t, dead, `<option value="dead_letter" selected>dead_letter</option>`)

		ev := page(t, c, fmt.Sprintf("%sevents/%d", root, e.eventOf(t, "bad-1")))
		require.Contains(t, ev, `<dd id="event-status"><span class="badge dead_letter">dead_letter</span></dd>`)
		require.Contains(t, ev, "<dt>Dead-lettered</dt>")
		require.NotContains(t, ev, "<dt>Processed</dt>")
		require.NotContains(t, ev, "<dt>Synced</dt>")
		require.Contains(t, ev, "attempt 1 failed (refused): permanent: the test refuses bad-1")
		require.Contains(t, ev, "dead-lettered after attempt 1 of")

		ev = page(t, c, fmt.Sprintf("%sevents/%d", root, e.eventOf(t, "p1")))
		require.Contains(t, ev, "<dt>Synced</dt>")
		require.NotContains(t, ev, "<dt>Dead-lettered</dt>")

		// Completed by its second attempt: the outcome is shown, and the
		// first attempt's error only as that attempt's.
		ev = page(t, c, fmt.Sprintf("%sevents/%d", root, e.eventOf(t, "flaky-1")))
		require.Contains(t, ev, `<td id="job-outcome" data-label="Outcome"><span class="badge synced">synced</span></td>`)
		require.NotContains(t, ev, "Last error")
		failed := strings.Index(ev, "attempt 1 failed (flaky):")
		succeeded := strings.Index(ev, "attempt 2 succeeded: synced")
		require.True(t, failed > 0 && succeeded > failed, "attempt 1 failed, then attempt 2 succeeded:\n%s", ev)
	})
}

// TestDashboardDeadLetterPage: each row names its job and its event; the
// error-code filter offers the codes there; the retry-by-filter control
// shows only when there is something to retry.
func TestDashboardDeadLetterPage(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		e := newDashboardEnv(t, tdb)
		c, root := e.signedIn(t)
		empty := page(t, c, root+"dead-letters")
		require.Contains(t, empty, "No dead letter.")
		require.NotContains(t, empty, `id="retry-filter"`)

		e.seed(t, []string{"p1", "bad-1", "bad-2"}, "bad-1", "bad-2")
		codes := adminGet(t, e.h, "/admin/dead-letters/error-codes")
		require.Equal(t, http.StatusOK, codes.status, codes.raw)
		require.Equal(t, []any{map[string]any{"code": "refused", "count": 2.0}}, codes.body["error_codes"])

		body := page(t, c, root+"dead-letters")
		require.Contains(t, body, `id="retry-filter"`)
		require.Contains(t, body, "<th>Job</th><th>Event</th>")
		require.Contains(t, body, `<option value="refused" >refused (2)</option>`)
		for _, d := range adminGet(t, e.h, "/admin/dead-letters").body["dead_letters"].([]any) {
			job := d.(map[string]any)
			require.Contains(t, body, fmt.Sprintf(`<td class="job">job %.0f</td>`, job["id"]))
			require.Contains(t, body, fmt.Sprintf(`<a href="./events/%.0f">event %.0f</a>`, job["inbox_event_id"], job["inbox_event_id"]))
		}

		none := page(t, c, root+"dead-letters?error_code=http_500")
		require.Contains(t, none, `<option value="http_500" selected>http_500 (0)</option>`, "the code asked for stays chosen")
		require.Contains(t, none, "No dead letter matches these filters.")
		require.NotContains(t, none, `id="retry-filter"`)
	})
}

// TestDashboardReconcileOff: without a Reconciler the pages say which
// settings turn reconciliation on.
func TestDashboardReconcileOff(t *testing.T) {
	tdb := testdb.Open(t, "sqlite")
	srv := httptest.NewServer(newTestHandler(t, tdb, WithAdminToken(testAdminToken)))
	t.Cleanup(srv.Close)
	c := browserClient(t)
	status, _, _ := fetchPage(t, c, "POST", srv.URL+"/ui/login", url.Values{"token": {testAdminToken}})
	require.Equal(t, http.StatusSeeOther, status)
	for _, path := range []string{"/ui/", "/ui/reconcile"} {
		body := page(t, c, srv.URL+path)
		for _, setting := range []string{"TDS_ZOHO_CLIENT_ID", "TDS_ZOHO_CLIENT_SECRET", "TDS_ZOHO_REFRESH_TOKEN",
			"TDS_ZOHO_ORGANIZATION_ID", "-zoho-client-id", "tdsui.WithReconciler"} {
			require.Contains(t, body, setting, path)
		}
	}
}
