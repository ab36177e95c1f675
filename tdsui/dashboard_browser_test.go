package tdsui

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	"github.com/tdscore/tds/internal/testdb"
)

var updateScreenshots = flag.Bool("screenshots", false, "write the dashboard's screenshots to docs/screenshots")

// chromiumPath finds Debian's chromium on PATH: the test is skipped
// without it, and fails without it when CI is set.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not on PATH: the dashboard's browser tests cannot run (CI is set)")
		}
		t.Skip("chromium is not on PATH")
	}
	return p
}

// browserTimeout bounds one test's whole browser session.
const browserTimeout = 5 * time.Minute

// browser starts a headless Chromium for the test; it is closed, its
// process waited for, when the test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	// A guard against a hung browser, not a measure of speed: under load
	// (two dialects' browsers, another test run beside) a pass that takes
	// 20 s alone has taken over a minute.
	ctx, cancelTimeout := context.WithTimeout(ctx, browserTimeout)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	return ctx
}

// do runs the steps, failing the test on an error.
func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx, steps...))
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	require.NoError(t, err, sel)
	return strings.TrimSpace(s)
}

func nodes(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
	require.NoError(t, err)
	return n
}

// TestDashboardBrowser drives the dashboard in Chromium, mounted under
// /ops, on the reference server's Handler.
func TestDashboardBrowser(t *testing.T) {
	chromiumPath(t)
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		e := newDashboardEnv(t, tdb)
		e.fake.Put("items", map[string]any{"item_id": "only-in-zoho", "name": "Only in Zoho",
			"last_modified_time": "2026-11-02T10:00:00+0000"})
		e.seed(t, []string{"p1", "p2", "p3", "p4", "bad-1", "bad-2", "bad-3"}, "bad-1", "bad-2", "bad-3")
		e.fireAlert(t)
		ctx := browser(t)
		ui := e.srv.URL + "/ops/ui/"

		// Sign in by keyboard alone: the token field has the focus.
		do(t, ctx, chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.CSS("#token")))
		e.shoot(t, ctx, "login")
		do(t, ctx, chromedp.KeyEvent(testAdminToken+"\r"), chromedp.WaitVisible(chromedp.CSS("#status-pending")))

		// The overview's numbers are the API's.
		stats := adminGet(t, e.h, "/queue/stats").body
		for s, n := range stats["by_status"].(map[string]any) {
			require.Equal(t, strconv.Itoa(int(n.(float64))), text(t, ctx, "#status-"+s), s)
		}
		for p, n := range stats["by_priority"].(map[string]any) {
			require.Equal(t, strconv.Itoa(int(n.(float64))), text(t, ctx, "#priority-"+p), p)
		}
		for et, n := range stats["by_entity"].(map[string]any) {
			require.Equal(t, strconv.Itoa(int(n.(float64))), text(t, ctx, "#entity-"+et), et)
		}
		require.Equal(t, strconv.Itoa(int(stats["blocked"].(float64))), text(t, ctx, "#blocked"))
		require.Contains(t, text(t, ctx, "#firing"), "dead_letters")
		require.Equal(t, 2, nodes(t, ctx, "svg.chart"), "throughput and latency")
		e.shoot(t, ctx, "overview")

		// Filter the events and open one.
		do(t, ctx, chromedp.Click(chromedp.CSS(`a[href="./events"]`)), chromedp.WaitVisible(chromedp.CSS("#events")),
			chromedp.SendKeys(chromedp.CSS(`input[name="entity_id"]`), "p2"), chromedp.Click(chromedp.CSS("#filter")),
			chromedp.WaitVisible(chromedp.CSS(`#events`)))
		require.Eventually(t, func() bool { return nodes(t, ctx, "#events tbody tr") == 1 }, 5*time.Second, 20*time.Millisecond)
		e.shoot(t, ctx, "events")
		do(t, ctx, chromedp.Click(chromedp.CSS("#events tbody a")), chromedp.WaitVisible(chromedp.CSS("#payload")))
		require.Contains(t, text(t, ctx, "#payload"), `"item_id": "p2"`)
		require.Contains(t, text(t, ctx, "#job"), "completed")
		e.shoot(t, ctx, "event")

		// Dead letters: a retry by filter confirms the API's dry-run count first.
		do(t, ctx, chromedp.Navigate(ui+"dead-letters"), chromedp.WaitVisible(chromedp.CSS("#dead-letters")))
		require.Equal(t, 3, nodes(t, ctx, "#dead-letters tbody tr"))
		e.shoot(t, ctx, "dead-letters")
		dry := adminPost(t, e.h, "/admin/dead-letters/retry", `{"entity_type":"product","dry_run":true}`).body["count"].(float64)
		do(t, ctx, chromedp.Navigate(ui+"dead-letters?entity_type=product"), chromedp.Click(chromedp.CSS("#retry-filter")),
			chromedp.WaitVisible(chromedp.CSS("#dry-run-count")))
		require.True(t, strings.HasPrefix(text(t, ctx, "#dry-run-count"), fmt.Sprintf("%d dead letters would be queued again", int(dry))),
			text(t, ctx, "#dry-run-count"))
		e.shoot(t, ctx, "retry-confirm")

		// Retry one, which now syncs, and see it completed.
		jobs := adminGet(t, e.h, "/admin/dead-letters").body["dead_letters"].([]any)
		job := jobs[len(jobs)-1].(map[string]any)
		id, eventID := int64(job["id"].(float64)), int64(job["inbox_event_id"].(float64))
		e.failing.Delete(job["entity_id"])
		do(t, ctx, chromedp.Navigate(ui+"dead-letters"),
			chromedp.Click(chromedp.CSS(fmt.Sprintf("#dl-%d button.retry", id))), chromedp.WaitVisible(chromedp.CSS("#notice")))
		require.Equal(t, fmt.Sprintf("Dead letter %d is queued again.", id), text(t, ctx, "#notice"))
		e.waitIdle(t)
		do(t, ctx, chromedp.Navigate(fmt.Sprintf("%sevents/%d", ui, eventID)), chromedp.WaitVisible(chromedp.CSS("#job")))
		require.Contains(t, text(t, ctx, "#job"), "completed")
		require.Equal(t, 1, nodes(t, ctx, "#attempts tbody tr"), "the failed attempt stays in the history")

		// A discard without a reason is refused by the server, not just the form.
		do(t, ctx, chromedp.Navigate(ui+"dead-letters"), chromedp.WaitVisible(chromedp.CSS("#dead-letters")))
		first := `#dead-letters tbody tr:first-child`
		do(t, ctx, chromedp.Click(chromedp.CSS(first+" summary")),
			chromedp.RemoveAttribute(chromedp.CSS(first+` input[name="reason"]`), "required"),
			chromedp.Click(chromedp.CSS(first+" button.discard")), chromedp.WaitVisible(chromedp.CSS("#error")))
		require.Equal(t, "A reason is required to discard a dead letter.", text(t, ctx, "#error"))
		require.Equal(t, 2, len(adminGet(t, e.h, "/admin/dead-letters").body["dead_letters"].([]any)))

		// A POST without the CSRF token is refused.
		do(t, ctx, chromedp.Navigate(ui+"dead-letters"), chromedp.WaitVisible(chromedp.CSS("#dead-letters")),
			chromedp.SetAttributeValue(chromedp.CSS(first+` form input[name="csrf"]`), "value", ""),
			chromedp.Click(chromedp.CSS(first+" button.retry")), chromedp.WaitVisible(chromedp.CSS("#error")))
		require.Contains(t, text(t, ctx, "#error"), "CSRF token is missing or wrong")
		require.Equal(t, 2, len(adminGet(t, e.h, "/admin/dead-letters").body["dead_letters"].([]any)))

		// Alerts: acknowledge.
		do(t, ctx, chromedp.Navigate(ui+"alerts"), chromedp.WaitVisible(chromedp.CSS(`button[type="submit"]`)))
		e.shoot(t, ctx, "alerts")
		do(t, ctx, chromedp.Click(chromedp.CSS("button.ack")), chromedp.WaitVisible(chromedp.CSS("#notice")))
		require.Contains(t, text(t, ctx, "#notice"), "is acknowledged")

		// Reconciliation: a full dry run finds the item only Zoho has.
		do(t, ctx, chromedp.Navigate(ui+"reconcile"), chromedp.WaitVisible(chromedp.CSS("#run-now")),
			chromedp.SetValue(chromedp.CSS("#mode"), "full"), chromedp.Click(chromedp.CSS("#dry-run")),
			chromedp.Click(chromedp.CSS("#run-now")), chromedp.WaitVisible(chromedp.CSS("#notice")))
		require.Eventually(t, func() bool {
			runs := adminGet(t, e.h, "/admin/sync-runs").body["runs"].([]any)
			return len(runs) == 1 && runs[0].(map[string]any)["status"] != "running"
		}, 10*time.Second, 20*time.Millisecond)
		do(t, ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#runs")))
		e.shoot(t, ctx, "reconcile")
		do(t, ctx, chromedp.Click(chromedp.CSS("#runs tbody a")), chromedp.WaitVisible(chromedp.CSS("#drift")))
		require.Contains(t, text(t, ctx, "#drift"), "only-in-zoho")
		e.shoot(t, ctx, "run")

		// Sign out ends the session: the old cookie, put back, is refused.
		cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{ui}})
		require.NoError(t, err)
		require.Len(t, cookies.Cookies, 1)
		old := cookies.Cookies[0]
		require.True(t, old.HTTPOnly)
		require.Equal(t, "/ops/ui", old.Path)
		do(t, ctx, chromedp.Click(chromedp.CSS("#sign-out")), chromedp.WaitVisible(chromedp.CSS("#token")))
		_, err = chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: old.Name, Value: old.Value, URL: ui})
		require.NoError(t, err)
		do(t, ctx, chromedp.Navigate(ui+"events"), chromedp.WaitVisible(chromedp.CSS("#token")))

		// Mounted at the root too.
		do(t, ctx, chromedp.Navigate(e.srv.URL+"/ui"), chromedp.WaitVisible(chromedp.CSS("#token")),
			chromedp.SendKeys(chromedp.CSS("#token"), testAdminToken+"\r"), chromedp.WaitVisible(chromedp.CSS("#status-pending")))
		loc, err := chromedp.Run(ctx, chromedp.Location())
		require.NoError(t, err)
		require.Equal(t, e.srv.URL+"/ui/", loc)
	})
}

// shoot saves a screenshot of the page at 1280 and at 390 px wide, on
// SQLite's pass (PostgreSQL's would show the same): under
// docs/screenshots with -screenshots, else in a temporary directory.
func (e *dashboardEnv) shoot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if e.tdb.Name != "sqlite" {
		return
	}
	dir := t.TempDir()
	if *updateScreenshots {
		dir = filepath.Join("..", "docs", "screenshots")
	}
	for _, w := range []int64{1280, 390} {
		do(t, ctx, chromedp.EmulateViewport(w, 800))
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, w)), png, 0o644))
	}
	do(t, ctx, chromedp.EmulateViewport(1280, 900))
}

// fireAlert records a firing dead_letters alert, as an evaluation would.
func (e *dashboardEnv) fireAlert(t *testing.T) {
	t.Helper()
	now := time.Now().UTC()
	_, err := e.tdb.DB.NewRaw(`INSERT INTO tds_alerts (rule, fingerprint, labels, state, severity, value, started_at,
firing_at, updated_at) VALUES ('dead_letters', 'fp-dashboard', '{"entity_type":"product"}', 'firing', 'warning', 3, ?, ?, ?)`,
		now.Add(-5*time.Minute), now.Add(-4*time.Minute), now).Exec(context.Background())
	require.NoError(t, err)
}
