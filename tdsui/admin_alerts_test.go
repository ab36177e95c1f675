package tdsui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/alert"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/tdsalert"
)

// alertEnv is a database, a frozen clock, a Processor and an Alerter on
// them.
type alertEnv struct {
	clock *testkit.Clock
	proc  *tds.Processor
	a     *tdsalert.Alerter
}

func newAlertEnv(t *testing.T, tdb *testdb.DB, opts ...tdsalert.Option) *alertEnv {
	t.Helper()
	e := &alertEnv{clock: testkit.NewClock()}
	e.proc = testdb.Processor(t, tdb.DB, e.clock.Now)
	base := []tdsalert.Option{tdsalert.WithClock(e.clock.Now), tdsalert.WithLogger(testdb.QuietLogger)}
	var err error
	e.a, err = tdsalert.New(tdb.DB, append(base, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.a.Close(context.Background()) })
	return e
}

func TestAlertAdminAPI(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		e := newAlertEnv(t, tdb, tdsalert.WithRules(testdb.OnlyRule(alert.RuleZohoDailyWebhooks, "threshold: 0")))
		var logs testkit.LogBuffer
		h := newTestHandler(t, tdb, WithAdminToken(testAdminToken), WithClock(e.clock.Now), WithAlerter(e.a), WithLogger(logs.Logger()))
		testdb.Ingest(t, e.proc, "1", "a")
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
		for _, k := range []string{"id", "rule", "state", "labels", "value", "fired_value", "peak_value", "started_at", "firing_at",
			"resolved_at", "acknowledged_at", "silenced_until"} {
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

		got, err := e.a.Alerts(t.Context(), tdsalert.StateFiring)
		require.NoError(t, err)
		require.NotNil(t, got[0].AcknowledgedAt)
		require.NotNil(t, got[0].SilencedUntil)
		requireLogLine(t, &logs, "alert acknowledged", "actor.client_ip=192.0.2.1 actor.token=0")
		requireLogLine(t, &logs, "alert silenced", "actor.client_ip=192.0.2.1 actor.token=0")

		// Resolved, the alert still tells what fired, and when it resolved.
		testdb.Ingest(t, e.proc, "2", "b")
		require.NoError(t, e.a.Evaluate(t.Context()))
		e.clock.Advance(24 * time.Hour)
		require.NoError(t, e.a.Evaluate(t.Context()))
		code, out = do(http.MethodGet, "/admin/alerts?state=resolved", "")
		require.Equal(t, http.StatusOK, code)
		alerts = out["alerts"].([]any)
		require.Len(t, alerts, 1)
		res := alerts[0].(map[string]any)
		require.Equal(t, 1.0, res["fired_value"])
		require.Equal(t, 2.0, res["peak_value"])
		require.Equal(t, e.clock.Now().Format(time.RFC3339Nano), res["resolved_at"])
		require.Nil(t, res["last_notified_at"], "no receiver: nothing was sent")

		// Without an Alerter: 501.
		h2 := newTestHandler(t, tdb, WithAdminToken(testAdminToken))
		req := httptest.NewRequest(http.MethodGet, "/admin/alerts", nil)
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		rec := httptest.NewRecorder()
		h2.ServeHTTP(rec, req)
		require.Equal(t, http.StatusNotImplemented, rec.Code)
	})
}
