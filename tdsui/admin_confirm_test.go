package tdsui

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/tdsreconcile"
)

// liveProducts are the ids of the products mirrored and not deleted.
func liveProducts(t *testing.T, db *bun.DB) []string {
	t.Helper()
	var ids []string
	require.NoError(t, db.NewRaw("SELECT entity_id FROM ? WHERE deleted_at IS NULL ORDER BY entity_id",
		bun.Ident(testdb.EntityType(t, "product").MirrorTable)).Scan(context.Background(), &ids))
	return ids
}

// TestAdminConfirmHeldDeletes is issue 22's deletion guard end to end: 60
// products mirrored, a fake Zoho that lists 10 of them (a wrong
// organisation would list none). The first full sweep deletes nothing:
// it ends needs_confirmation with its 50 deletes held as drift. Two
// confirmations at once through the admin API: one applies exactly those
// 50 deletes, without asking Zoho again, the other answers 409, as does
// any later one; the confirmation is logged with its actor and counts and
// recorded on the run.
func TestAdminConfirmHeldDeletes(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		var logs testkit.LogBuffer
		h := newTestHandler(t, tdb, WithAdminToken(testAdminToken), WithReconciler(e.rc), WithLogger(logs.Logger()))
		base := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
		var all, gone []string
		for i := range 60 {
			id := fmt.Sprintf("item-%02d", i)
			rec := testdb.ProductRecord(id, base.Add(time.Duration(i)*time.Minute), 0)
			e.webhook(t, rec, tds.EventUpdate)
			all = append(all, id)
			if i%6 == 0 {
				e.fake.Put("items", rec)
			} else {
				gone = append(gone, id)
			}
		}
		require.Len(t, gone, 50)
		testdb.StartMirror(t, e.db, e.clock.Now)
		testdb.Drain(t, e.db)
		require.Equal(t, all, liveProducts(t, e.db))

		a := adminPost(t, h, "/admin/reconcile", `{"mode":"full","entity_types":["product"]}`)
		require.Equal(t, http.StatusAccepted, a.status, a.raw)
		id := int64(a.body["run_id"].(float64))
		waitRun(t, e.rc, id, tdsreconcile.RunNeedsConfirmation)
		testdb.Drain(t, e.db)
		require.Equal(t, all, liveProducts(t, e.db), "nothing deleted")

		a = adminGet(t, h, fmt.Sprintf("/admin/sync-runs/%d?limit=100", id))
		require.Equal(t, http.StatusOK, a.status, a.raw)
		run := a.body["run"].(map[string]any)
		require.Equal(t, "needs_confirmation", run["status"])
		require.Equal(t, float64(50), run["pending_deletes"])
		require.Equal(t, float64(0), run["deletes"])
		require.Contains(t, run["error"], "the source no longer lists 50 product records (threshold 10)")
		drift := a.body["drift"].([]any)
		require.Len(t, drift, 50)
		var held []string
		for _, d := range drift {
			d := d.(map[string]any)
			require.Equal(t, "missing_remote", d["kind"])
			require.Equal(t, true, d["pending_delete"])
			require.Equal(t, false, d["resolved"])
			require.Equal(t, tdsreconcile.ReasonPendingDelete, d["reason"])
			require.Nil(t, d["inbox_event_id"])
			held = append(held, d["entity_id"].(string))
		}
		sort.Strings(held)
		require.Equal(t, gone, held)

		// Confirming asks Zoho nothing.
		apiCalls := e.fake.Stats().APICalls
		answers := make(chan answer, 2)
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() { answers <- adminPost(t, h, fmt.Sprintf("/admin/sync-runs/%d/confirm", id), "") })
		}
		wg.Wait()
		close(answers)
		var ok, conflict int
		for a := range answers {
			switch a.status {
			case http.StatusOK:
				ok++
				require.Equal(t, float64(50), a.body["deleted"], a.raw)
				require.Equal(t, float64(0), a.body["skipped"], a.raw)
			case http.StatusConflict:
				conflict++
				requireError(t, a, http.StatusConflict, "not waiting for a confirmation")
			default:
				t.Fatalf("confirm: %d %s", a.status, a.raw)
			}
		}
		require.Equal(t, [2]int{1, 1}, [2]int{ok, conflict}, "one confirmation applies, the other is refused")
		requireError(t, adminPost(t, h, fmt.Sprintf("/admin/sync-runs/%d/confirm", id), ""), http.StatusConflict, "not waiting")
		require.Equal(t, apiCalls, e.fake.Stats().APICalls, "no request to Zoho")

		testdb.Drain(t, e.db)
		live := liveProducts(t, e.db)
		require.Len(t, live, 10)
		for _, id := range live {
			require.NotContains(t, gone, id)
		}
		require.NoError(t, e.rc.Settle(ctx))
		a = adminGet(t, h, fmt.Sprintf("/admin/sync-runs/%d?limit=100", id))
		run = a.body["run"].(map[string]any)
		require.Equal(t, "completed", run["status"])
		require.Equal(t, float64(50), run["deletes"])
		require.Equal(t, float64(0), run["pending_deletes"])
		require.Equal(t, "client_ip=192.0.2.1 token=0", run["confirmed_by"])
		require.NotEmpty(t, run["confirmed_at"])
		for _, d := range a.body["drift"].([]any) {
			d := d.(map[string]any)
			require.Equal(t, true, d["resolved"], "applied: %v", d)
			require.Equal(t, false, d["pending_delete"])
		}
		requireLogLine(t, &logs, "reconciliation deletes confirmed",
			fmt.Sprintf("run_id=%d deleted=50 skipped=0 already_deleted=0 actor.client_ip=192.0.2.1 actor.token=0", id))

		// Refusals: a run that never held a delete, an unknown run, a
		// malformed id.
		a = adminPost(t, h, "/admin/reconcile", `{"mode":"full","entity_types":["product"]}`)
		require.Equal(t, http.StatusAccepted, a.status, a.raw)
		clean := int64(a.body["run_id"].(float64))
		waitRun(t, e.rc, clean, tdsreconcile.RunCompleted)
		requireError(t, adminPost(t, h, fmt.Sprintf("/admin/sync-runs/%d/confirm", clean), ""), http.StatusConflict, "not waiting")
		requireError(t, adminPost(t, h, "/admin/sync-runs/99999/confirm", ""), http.StatusNotFound, "not found")
		require.Equal(t, http.StatusBadRequest, adminPost(t, h, "/admin/sync-runs/x/confirm", "").status)
		require.Equal(t, http.StatusUnauthorized, serve(t, h, "POST", fmt.Sprintf("/admin/sync-runs/%d/confirm", id), nil,
			"Content-Type", "application/json").status)
	})
}

// TestDashboardConfirmHeldDeletes: the run page of a run holding deletes
// says so and offers the button, which applies them through the admin
// API's code path (the same log line); it needs the session's CSRF token,
// and a second press is refused with 409.
func TestDashboardConfirmHeldDeletes(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		e := newDashboardEnv(t, tdb)
		ids := make([]string, 12)
		for i := range ids {
			ids[i] = fmt.Sprintf("held-%02d", i)
		}
		e.seed(t, ids) // none of them in Zoho: 12 deletes, over the default 10
		a := adminPost(t, e.h, "/admin/reconcile", `{"mode":"full","entity_types":["product"]}`)
		require.Equal(t, http.StatusAccepted, a.status, a.raw)
		id := int64(a.body["run_id"].(float64))
		waitRun(t, e.h.reconciler, id, tdsreconcile.RunNeedsConfirmation)

		c, root := e.signedIn(t)
		body := page(t, c, fmt.Sprintf("%sreconcile/%d", root, id))
		require.Contains(t, body, "12 deletes wait for your confirmation")
		require.Contains(t, body, "<dt>Why it waits</dt><dd>deletes held for confirmation: the source no longer lists 12 product records (threshold 10)")
		require.Contains(t, body, `id="confirm-deletes"`)
		require.Contains(t, body, tdsreconcile.ReasonPendingDelete)
		m := csrfField.FindStringSubmatch(body)
		require.NotNil(t, m)
		action := fmt.Sprintf("%sreconcile/%d/confirm", root, id)

		status, _, _ := fetchPage(t, c, "POST", action, url.Values{"csrf": {"wrong"}})
		require.Equal(t, http.StatusForbidden, status, "without the session's CSRF token")
		run, err := e.h.reconciler.GetRun(context.Background(), id)
		require.NoError(t, err)
		require.Equal(t, tdsreconcile.RunNeedsConfirmation, run.Status)

		status, header, _ := fetchPage(t, c, "POST", action, url.Values{"csrf": {m[1]}})
		require.Equal(t, http.StatusSeeOther, status)
		from, err := url.Parse(action)
		require.NoError(t, err)
		to, err := from.Parse(header.Get("Location"))
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("%sreconcile/%d?done=confirmed&n=12", root, id), to.String())
		body = page(t, c, to.String())
		require.Contains(t, body, "12 held deletes are applied")
		require.NotContains(t, body, `id="confirm-deletes"`)
		require.Regexp(t, `id="confirmed">by client_ip=\S+ session=[0-9a-f]+,`, body)

		status, _, body = fetchPage(t, c, "POST", action, url.Values{"csrf": {m[1]}})
		require.Equal(t, http.StatusConflict, status)
		require.True(t, strings.Contains(body, "not waiting for a confirmation"), body)

		e.waitIdle(t)
		for _, id := range ids {
			require.NotContains(t, liveProducts(t, e.tdb.DB), id)
		}
	})
}
