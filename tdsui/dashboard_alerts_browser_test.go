package tdsui

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds/internal/alert"
	"github.com/tdscore/tds/internal/testdb"
)

// TestDashboardBrowserAlertRecord drives the alerts page in Chromium
// through a dead_letters alert's life (issue 22: the record tells what
// happened): it fires at one dead letter, peaks at two, stays firing
// while they wait, and resolves once they are discarded; the resolved
// list shows the time it resolved, the value it fired at and its peak,
// as the API has them.
func TestDashboardBrowserAlertRecord(t *testing.T) {
	chromiumPath(t)
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		e := newDashboardEnv(t, tdb)
		a := e.h.alerter
		dead := func() []any { return adminGet(t, e.h, "/admin/dead-letters").body["dead_letters"].([]any) }
		e.seed(t, []string{"p1", "bad-1"}, "bad-1")
		require.NoError(t, a.Evaluate(t.Context()))
		e.seed(t, []string{"bad-2"}, "bad-2")
		require.NoError(t, a.Evaluate(t.Context()))
		require.NoError(t, a.Evaluate(t.Context()))
		firing := adminGet(t, e.h, "/admin/alerts?state=firing").body["alerts"].([]any)
		require.Len(t, firing, 1, "the dead letters still wait: the alert still fires; all alerts: %v; dead letters: %v",
			adminGet(t, e.h, "/admin/alerts").body, dead())

		ctx := browser(t)
		ui := e.srv.URL + "/ops/ui/"
		do(t, ctx, chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.CSS("#token")),
			chromedp.SendKeys(chromedp.CSS("#token"), testAdminToken+"\r"), chromedp.WaitVisible(chromedp.CSS("#status-pending")),
			chromedp.Navigate(ui+"alerts"), chromedp.WaitVisible(chromedp.CSS("#open-alerts")))
		row := fmt.Sprintf("#alert-%d", int64(firing[0].(map[string]any)["id"].(float64)))
		require.Contains(t, text(t, ctx, row), alert.RuleDeadLetters)
		require.Equal(t, "1", text(t, ctx, row+" .fired-value"))
		require.Equal(t, "2", text(t, ctx, row+" .peak-value"))

		for _, j := range dead() {
			id := int64(j.(map[string]any)["id"].(float64))
			adminPost(t, e.h, fmt.Sprintf("/admin/dead-letters/%d/discard", id), `{"reason":"obsolete"}`)
		}
		require.Empty(t, dead())
		require.NoError(t, a.Evaluate(t.Context()))
		resolved := adminGet(t, e.h, "/admin/alerts?state=resolved").body["alerts"].([]any)
		require.Len(t, resolved, 1)
		api := resolved[0].(map[string]any)
		at, err := time.Parse(time.RFC3339Nano, api["resolved_at"].(string))
		require.NoError(t, err)

		do(t, ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#resolved-alerts")))
		require.Equal(t, "No alert is firing.", text(t, ctx, "#no-firing"))
		// The page shows times in the browser's zone; the datetime is the instant.
		require.Contains(t, text(t, ctx, "#resolved-alerts "+row+" .resolved-at"), at.Format(":04:05"))
		shown := eval[string](t, ctx, fmt.Sprintf(`document.querySelector(%q).getAttribute("datetime")`,
			"#resolved-alerts "+row+" .resolved-at time"))
		got, err := time.Parse(time.RFC3339Nano, shown)
		require.NoError(t, err)
		require.True(t, got.Equal(at), "the page shows %s, the API %s", got, at)
		require.Equal(t, "1", text(t, ctx, "#resolved-alerts "+row+" .fired-value"))
		require.Equal(t, "2", text(t, ctx, "#resolved-alerts "+row+" .peak-value"))
		require.Equal(t, api["firing_at"] != nil, text(t, ctx, "#resolved-alerts "+row+" .firing-at") != "—")

		// At 390 px each alert is one block whose cells say what they are.
		do(t, ctx, chromedp.EmulateViewport(390, 800))
		require.Equal(t, "Resolved", eval[string](t, ctx, fmt.Sprintf(
			`getComputedStyle(document.querySelector(%q), "::before").content.replaceAll('"', '')`, "#resolved-alerts "+row+" .resolved-at")))
		require.Empty(t, clipped(t, ctx, "#resolved-alerts td", ".scroll"))
		e.shoot(t, ctx, "alerts-resolved")
	})
}
