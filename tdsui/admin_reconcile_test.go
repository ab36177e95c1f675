package tdsui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/internal/zohofake"
	"github.com/tdscore/tds/tdsreconcile"
)

// reconcileEnv is a database, a frozen clock, a Processor, a fake Zoho
// and a Reconciler on them.
type reconcileEnv struct {
	db    *bun.DB
	clock *testkit.Clock
	proc  *tds.Processor
	fake  *zohofake.Server
	rc    *tdsreconcile.Reconciler
}

func newReconcileEnv(t *testing.T, tdb *testdb.DB) *reconcileEnv {
	t.Helper()
	clock := testkit.NewClock()
	e := &reconcileEnv{db: tdb.DB, clock: clock, proc: testdb.Processor(t, tdb.DB, clock.Now), fake: testdb.Zoho(t, tdb.DB)}
	e.rc = e.newReconcilerAPI(t, func(*tdsreconcile.ZohoAPI) {})
	return e
}

// newReconcilerAPI returns a Reconciler on the fake, its ZohoAPI adjusted
// by edit, closed when the test ends.
func (e *reconcileEnv) newReconcilerAPI(t *testing.T, edit func(*tdsreconcile.ZohoAPI)) *tdsreconcile.Reconciler {
	t.Helper()
	api := tdsreconcile.ZohoAPI(testdb.ZohoAPI(e.fake.URL()))
	edit(&api)
	rc, err := tdsreconcile.New(e.db, e.proc, api, tdsreconcile.WithClock(e.clock.Now), tdsreconcile.WithLogger(testdb.QuietLogger))
	require.NoError(t, err)
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

// budgetOf sets a daily budget of n API calls.
func budgetOf(n int) func(*tdsreconcile.ZohoAPI) {
	return func(api *tdsreconcile.ZohoAPI) { api.DailyBudget = n }
}

// webhook ingests the product rec as Zoho's webhook for it would.
func (e *reconcileEnv) webhook(t *testing.T, rec map[string]any, eventType string) {
	t.Helper()
	data, err := json.Marshal(rec)
	require.NoError(t, err)
	_, err = e.proc.Process(context.Background(), &tds.Event{EventType: eventType, EntityType: "product",
		EntityID: rec["item_id"].(string), Data: data})
	require.NoError(t, err)
}

// runKeys are the documented keys of a run in the admin API.
var runKeys = []string{"id", "mode", "status", "dry_run", "entity_types", "started_at", "finished_at", "api_calls",
	"counts", "repaired", "deletes", "pending_deletes"}

// TestAdminReconcileRoutes drives the four reconciliation routes: start,
// conflict while a run is held open, cancel, a failed and a completed run,
// the list with paging, one run with its drift, and the refusals.
func TestAdminReconcileRoutes(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		var logs testkit.LogBuffer
		h := newTestHandler(t, tdb, WithAdminToken(testAdminToken), WithReconciler(e.rc), WithLogger(logs.Logger()))
		base := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
		for i := range 3 {
			rec := testdb.ProductRecord(fmt.Sprintf("item-%d", i), base.Add(time.Duration(i)*time.Minute), 0)
			e.fake.Put("items", rec)
			if i > 0 {
				e.webhook(t, rec, tds.EventUpdate) // item-0 never delivered
			}
		}
		testdb.StartMirror(t, e.db, e.clock.Now)
		testdb.Drain(t, e.db)

		// A run held open: its first API request waits for gate.
		var (
			holding  = true
			mu       sync.Mutex
			entered  = make(chan struct{}, 1)
			gate     = make(chan struct{})
			openOnce sync.Once
			open     = func() { openOnce.Do(func() { close(gate) }) }
		)
		t.Cleanup(open)
		e.fake.OnRequest(func(*http.Request) {
			mu.Lock()
			hold := holding
			mu.Unlock()
			if hold {
				select {
				case entered <- struct{}{}:
				default:
				}
				<-gate
			}
		})
		a := adminPost(t, h, "/admin/reconcile", `{"mode":"full","entity_types":["product"]}`)
		require.Equal(t, http.StatusAccepted, a.status, a.raw)
		require.Equal(t, true, a.body["success"])
		cancelled := int64(a.body["run_id"].(float64))
		require.Positive(t, cancelled)
		<-entered
		requireError(t, adminPost(t, h, "/admin/reconcile", `{"mode":"full"}`), http.StatusConflict, "already running")

		a = adminPost(t, h, fmt.Sprintf("/admin/sync-runs/%d/cancel", cancelled), "")
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, true, a.body["success"])
		a = adminGet(t, h, fmt.Sprintf("/admin/sync-runs/%d", cancelled))
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, "running", a.body["run"].(map[string]any)["status"], "it stops at its next step")
		require.Equal(t, true, a.body["run"].(map[string]any)["cancel_requested"])
		mu.Lock()
		holding = false
		mu.Unlock()
		open()
		waitRun(t, e.rc, cancelled, tdsreconcile.RunCancelled)
		requireError(t, adminPost(t, h, fmt.Sprintf("/admin/sync-runs/%d/cancel", cancelled), ""), http.StatusNotFound, "not found")
		// Who started and who cancelled is on the log lines.
		requireLogLine(t, &logs, "reconciliation run started", "actor.client_ip=192.0.2.1 actor.token=0")
		requireLogLine(t, &logs, "reconciliation run cancel asked", "actor.client_ip=192.0.2.1 actor.token=0")

		// A failed run: Zoho refuses the listing. (A 400, which the client
		// does not retry: Zoho down, a 503, would be retried with the
		// backoff's real waits, which tdsreconcile's own tests replace.)
		e.fake.Fail(1, http.StatusBadRequest, "")
		a = adminPost(t, h, "/admin/reconcile", `{"mode":"full","entity_types":["product"]}`)
		require.Equal(t, http.StatusAccepted, a.status, a.raw)
		failed := int64(a.body["run_id"].(float64))
		waitRun(t, e.rc, failed, tdsreconcile.RunFailed)

		// A completed dry run, then a completed one.
		a = adminPost(t, h, "/admin/reconcile", `{"mode":"full","entity_types":["product"],"dry_run":true}`)
		require.Equal(t, http.StatusAccepted, a.status, a.raw)
		dry := int64(a.body["run_id"].(float64))
		waitRun(t, e.rc, dry, tdsreconcile.RunCompleted)
		a = adminPost(t, h, "/admin/reconcile", `{"mode":"incremental","entity_types":["product"]}`)
		require.Equal(t, http.StatusAccepted, a.status, a.raw)
		done := int64(a.body["run_id"].(float64))
		waitRun(t, e.rc, done, tdsreconcile.RunCompleted)
		requireError(t, adminPost(t, h, fmt.Sprintf("/admin/sync-runs/%d/cancel", done), ""), http.StatusNotFound, "not found")
		// A drift item is resolved once its repair is applied.
		testdb.Drain(t, e.db)
		require.NoError(t, e.rc.Settle(ctx))

		// One run, with its drift and the documented keys.
		a = adminGet(t, h, fmt.Sprintf("/admin/sync-runs/%d", done))
		require.Equal(t, http.StatusOK, a.status, a.raw)
		run := a.body["run"].(map[string]any)
		for _, k := range runKeys {
			require.Contains(t, run, k, a.raw)
		}
		require.Equal(t, float64(done), run["id"])
		require.Equal(t, "incremental", run["mode"])
		require.Equal(t, "completed", run["status"])
		require.Equal(t, false, run["dry_run"])
		require.Contains(t, run["entity_types"], "product")
		require.NotNil(t, run["finished_at"])
		require.Positive(t, run["api_calls"].(float64))
		counts := run["counts"].(map[string]any)
		require.Equal(t, map[string]any{"missing_local": 1.0, "stale_local": 0.0, "missing_remote": 0.0, "changed": 0.0}, counts)
		require.Equal(t, 1.0, run["repaired"])
		drift := a.body["drift"].([]any)
		require.Len(t, drift, 1, a.raw)
		d := drift[0].(map[string]any)
		require.Equal(t, "product", d["entity_type"])
		require.Equal(t, "item-0", d["entity_id"])
		require.Equal(t, "missing_local", d["kind"])
		require.Equal(t, true, d["resolved"])
		require.NotNil(t, d["inbox_event_id"])
		a = adminGet(t, h, fmt.Sprintf("/admin/sync-runs/%d", dry))
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, true, a.body["run"].(map[string]any)["dry_run"])
		require.Len(t, a.body["drift"], 1)
		require.Nil(t, a.body["drift"].([]any)[0].(map[string]any)["inbox_event_id"], "a dry run repairs nothing")
		a = adminGet(t, h, fmt.Sprintf("/admin/sync-runs/%d", failed))
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, "failed", a.body["run"].(map[string]any)["status"])
		require.NotEmpty(t, a.body["run"].(map[string]any)["error"], a.raw)

		// The list, newest first, two at a time.
		var ids []float64
		path := "/admin/sync-runs?limit=2"
		for pages := 0; ; pages++ {
			require.Less(t, pages, 3)
			a = adminGet(t, h, path)
			require.Equal(t, http.StatusOK, a.status, a.raw)
			for _, r := range a.body["runs"].([]any) {
				ids = append(ids, r.(map[string]any)["id"].(float64))
			}
			next, ok := a.body["next_before_id"]
			if !ok {
				break
			}
			path = fmt.Sprintf("/admin/sync-runs?limit=2&before_id=%d", int64(next.(float64)))
		}
		require.Equal(t, []float64{float64(done), float64(dry), float64(failed), float64(cancelled)}, ids)

		// Refusals.
		requireError(t, adminGet(t, h, "/admin/sync-runs/999999"), http.StatusNotFound, "not found")
		requireError(t, adminPost(t, h, "/admin/sync-runs/999999/cancel", ""), http.StatusNotFound, "not found")
		for _, body := range []string{`{"entity_types":["nope"]}`, `{"mode":"sideways"}`, `{"mode":`, `[1]`} {
			a = adminPost(t, h, "/admin/reconcile", body)
			require.Equal(t, http.StatusBadRequest, a.status, "%s: %s", body, a.raw)
			require.Equal(t, false, a.body["success"])
		}
		routes := [][2]string{{"POST", "/admin/reconcile"}, {"GET", "/admin/sync-runs"},
			{"GET", fmt.Sprintf("/admin/sync-runs/%d", done)}, {"POST", fmt.Sprintf("/admin/sync-runs/%d/cancel", done)},
			{"POST", fmt.Sprintf("/admin/sync-runs/%d/confirm", done)}}
		noRC := newTestHandler(t, tdb, WithAdminToken(testAdminToken))
		for _, r := range routes {
			var body []byte
			if r[0] == "POST" {
				body = []byte(`{}`)
			}
			requireError(t, serve(t, h, r[0], r[1], body), http.StatusUnauthorized, "")
			requireError(t, serve(t, h, r[0], r[1], body, "Authorization", "Bearer wrong-token"), http.StatusUnauthorized, "")
			requireError(t, serve(t, noRC, r[0], r[1], body, bearer...), http.StatusNotImplemented, "not configured")
		}
		runs, err := e.rc.ListRuns(ctx, tds.Page{Limit: 10})
		require.NoError(t, err)
		require.Len(t, runs, 4, "no refused request started a run")
	})
}

// waitRun polls until run id has status st.
func waitRun(t *testing.T, rc *tdsreconcile.Reconciler, id int64, st tdsreconcile.RunStatus) {
	t.Helper()
	var last *tdsreconcile.SyncRun
	require.Eventually(t, func() bool {
		var err error
		last, err = rc.GetRun(context.Background(), id)
		require.NoError(t, err)
		return last.Status == st
	}, 30*time.Second, 5*time.Millisecond, "run %d never became %s; last %+v", id, st, last)
}

// TestAdminReconcilePaused: a run paused at the daily budget shows in the
// admin API as running with its resumes_at, and on the dashboard as paused
// until then; a start meanwhile answers 409, and a cancel ends it at once.
func TestAdminReconcilePaused(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		rc := e.newReconcilerAPI(t, budgetOf(1))
		h := newTestHandler(t, tdb, WithAdminToken(testAdminToken), WithReconciler(rc))
		testdb.PutProducts(e.fake, 2, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Minute)

		a := adminPost(t, h, "/admin/reconcile", `{"mode":"full","entity_types":["product"]}`)
		require.Equal(t, http.StatusAccepted, a.status, a.raw)
		id := int64(a.body["run_id"].(float64))
		require.Eventually(t, func() bool {
			run, err := rc.GetRun(ctx, id)
			require.NoError(t, err)
			return run.ResumesAt != nil
		}, 20*time.Second, 5*time.Millisecond)

		const midnight = "2026-11-21T00:00:00Z" // the test clock's next
		a = adminGet(t, h, fmt.Sprintf("/admin/sync-runs/%d", id))
		require.Equal(t, http.StatusOK, a.status, a.raw)
		run := a.body["run"].(map[string]any)
		require.Equal(t, "running", run["status"])
		require.Equal(t, midnight, run["resumes_at"])
		require.Equal(t, "paused: the daily budget of 1 Zoho API calls is spent; resumes at "+midnight, run["error"])
		a = adminGet(t, h, "/admin/sync-runs")
		require.Equal(t, midnight, a.body["runs"].([]any)[0].(map[string]any)["resumes_at"])
		requireError(t, adminPost(t, h, "/admin/reconcile", `{"mode":"full"}`), http.StatusConflict, "paused")

		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		c := browserClient(t)
		status, _, _ := fetchPage(t, c, "POST", srv.URL+"/ui/login", url.Values{"token": {testAdminToken}})
		require.Equal(t, http.StatusSeeOther, status)
		until := `<span class="badge paused">paused</span> until <time datetime="` + midnight + `"`
		for _, page := range []string{"/ui/", "/ui/reconcile", fmt.Sprintf("/ui/reconcile/%d", id)} {
			status, _, body := fetchPage(t, c, "GET", srv.URL+page, nil)
			require.Equal(t, http.StatusOK, status, page)
			require.Contains(t, body, until, page)
		}

		a = adminPost(t, h, fmt.Sprintf("/admin/sync-runs/%d/cancel", id), "")
		require.Equal(t, http.StatusOK, a.status, a.raw)
		a = adminGet(t, h, fmt.Sprintf("/admin/sync-runs/%d", id))
		run = a.body["run"].(map[string]any)
		require.Equal(t, "cancelled", run["status"], "at once")
		require.NotContains(t, run, "resumes_at")
	})
}
