//go:build ignore

// TestAlertAdminAPI tests the admin API's /admin/alerts routes, which moved
// to package tdsui (tdsui/admin_alerts.go) with the rest of the console.
// It was alerts_test.go's; it moves to tdsui's tests, adapted to tdsui's
// constructor, once tdsui compiles. Its assertions are unchanged here.

package tdsalert

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tdscore/tds/internal/alert"
)

func TestAlertAdminAPI(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newAlertEnv(t, tdb, WithRules(onlyRule(alert.RuleZohoDailyWebhooks, "threshold: 0")))
		h, err := NewHandler(e.db, WithWebhookKeys(testWebhookKey), WithAdminToken(testAdminToken),
			WithClock(e.clock.Now), WithLogger(quietLogger), WithAlerter(e.a))
		require.NoError(t, err)
		e.ingest(t, "1", "a")
		require.NoError(t, e.a.Evaluate(t.Context()))

		do := func(method, path, body string) (int, map[string]any) {
			req := httptest.NewRequest(method, path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testAdminToken)
			if method == http.MethodPost {
				req.Header.Set("Content-Type", "application/json")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var out map[string]any
			_ = json.Unmarshal(rec.Body.Bytes(), &out)
			return rec.Code, out
		}
		code, out := do(http.MethodGet, "/admin/alerts?state=firing", "")
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, true, out["success"])
		alerts := out["alerts"].([]any)
		require.Len(t, alerts, 1)
		first := alerts[0].(map[string]any)
		for _, k := range []string{"id", "rule", "state", "labels", "value", "started_at", "resolved_at", "acknowledged_at", "silenced_until"} {
			require.Contains(t, first, k)
		}
		id := int64(first["id"].(float64))

		code, _ = do(http.MethodGet, "/admin/alerts?state=bogus", "")
		require.Equal(t, http.StatusBadRequest, code)
		code, _ = do(http.MethodPost, fmt.Sprintf("/admin/alerts/%d/ack", id), "")
		require.Equal(t, http.StatusOK, code)
		code, _ = do(http.MethodPost, "/admin/alerts/999/ack", "")
		require.Equal(t, http.StatusNotFound, code)
		until := e.clock.Now().Add(time.Hour).Format(time.RFC3339)
		code, _ = do(http.MethodPost, fmt.Sprintf("/admin/alerts/%d/silence", id), `{"until": "`+until+`"}`)
		require.Equal(t, http.StatusOK, code)
		code, _ = do(http.MethodPost, "/admin/alerts/999/silence", `{"until": "`+until+`"}`)
		require.Equal(t, http.StatusNotFound, code)
		past := e.clock.Now().Add(-time.Hour).Format(time.RFC3339)
		code, _ = do(http.MethodPost, fmt.Sprintf("/admin/alerts/%d/silence", id), `{"until": "`+past+`"}`)
		require.Equal(t, http.StatusBadRequest, code)
		code, _ = do(http.MethodPost, fmt.Sprintf("/admin/alerts/%d/silence", id), `{"until": "tomorrow"}`)
		require.Equal(t, http.StatusBadRequest, code)

		got, err := e.a.Alerts(t.Context(), StateFiring)
		require.NoError(t, err)
		require.NotNil(t, got[0].AcknowledgedAt)
		require.NotNil(t, got[0].SilencedUntil)

		// Without an Alerter: 501.
		h2, err := NewHandler(e.db, WithWebhookKeys(testWebhookKey), WithAdminToken(testAdminToken), WithLogger(quietLogger))
		require.NoError(t, err)
		req := httptest.NewRequest(http.MethodGet, "/admin/alerts", nil)
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		rec := httptest.NewRecorder()
		h2.ServeHTTP(rec, req)
		require.Equal(t, http.StatusNotImplemented, rec.Code)
	})
}
