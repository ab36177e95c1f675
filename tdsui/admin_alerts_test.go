package tdsui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/alert"
	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/tdsalert"
)

// alertEnv is a database, a frozen clock, a Processor and an Alerter on
// them.
type alertEnv struct {
	tdb   *testDB
	clock *testkit.Clock
	proc  *tds.Processor
	a     *tdsalert.Alerter
}

func newAlertEnv(t *testing.T, tdb *testDB, opts ...tdsalert.Option) *alertEnv {
	t.Helper()
	e := &alertEnv{tdb: tdb, clock: testkit.NewClock()}
	var err error
	e.proc, err = tds.NewProcessor(tdb.db, tds.WithClock(e.clock.Now), tds.WithLogger(quietLogger))
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.proc.Close() })
	base := []tdsalert.Option{tdsalert.WithClock(e.clock.Now), tdsalert.WithLogger(quietLogger)}
	e.a, err = tdsalert.New(tdb.db, append(base, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.a.Close(context.Background()) })
	return e
}

// ingest stores and queues a product event.
func (e *alertEnv) ingest(t *testing.T, id, name string) {
	t.Helper()
	data, err := json.Marshal(map[string]any{"item_id": id, "name": name})
	require.NoError(t, err)
	res, err := e.proc.Process(context.Background(),
		&tds.Event{EventType: tds.EventUpdate, EntityType: "product", EntityID: id, Data: data})
	require.NoError(t, err)
	require.True(t, res.Queued)
}

// onlyRule is a rules document enabling rule alone, with fields such as
// "threshold: 0".
func onlyRule(rule, fields string) io.Reader {
	var b strings.Builder
	b.WriteString("rules:\n")
	for _, r := range alert.DefaultRules() {
		if r.Name == rule {
			fmt.Fprintf(&b, "  - {name: %s, enabled: true, %s}\n", r.Name, fields)
		} else {
			fmt.Fprintf(&b, "  - {name: %s, enabled: false}\n", r.Name)
		}
	}
	return strings.NewReader(b.String())
}

func TestAlertAdminAPI(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newAlertEnv(t, tdb, tdsalert.WithRules(onlyRule(alert.RuleZohoDailyWebhooks, "threshold: 0")))
		h := newTestHandler(t, tdb, WithAdminToken(testAdminToken), WithClock(e.clock.Now), WithAlerter(e.a))
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

		got, err := e.a.Alerts(t.Context(), tdsalert.StateFiring)
		require.NoError(t, err)
		require.NotNil(t, got[0].AcknowledgedAt)
		require.NotNil(t, got[0].SilencedUntil)

		// Without an Alerter: 501.
		h2 := newTestHandler(t, tdb, WithAdminToken(testAdminToken))
		req := httptest.NewRequest(http.MethodGet, "/admin/alerts", nil)
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		rec := httptest.NewRecorder()
		h2.ServeHTTP(rec, req)
		require.Equal(t, http.StatusNotImplemented, rec.Code)
	})
}
