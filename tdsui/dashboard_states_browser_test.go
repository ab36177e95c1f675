package tdsui

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testdb"
)

// eval runs a script in the page and returns its value.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	require.NoError(t, err, js)
	return v
}

// linesOf is how many lines of text the element sel takes: its height
// over its line height.
func linesOf(t *testing.T, ctx context.Context, sel string) float64 {
	t.Helper()
	return eval[float64](t, ctx, fmt.Sprintf(`(() => { const el = document.querySelector(%q);
	const lh = parseFloat(getComputedStyle(el).lineHeight); return el.getBoundingClientRect().height / lh; })()`, sel))
}

// clipped lists the elements sel selects whose content runs out of them,
// or that end right of the page's own width (so that nothing but a
// scroll of the whole page would show them); within is a selector of
// containers that scroll sideways, whose cells may lie beyond the page.
func clipped(t *testing.T, ctx context.Context, sel, within string) []string {
	t.Helper()
	return eval[[]string](t, ctx, fmt.Sprintf(`(() => { const out = [];
	document.querySelectorAll(%q).forEach((el) => {
		if (el.scrollWidth > el.clientWidth + 1) out.push("overflows: " + el.textContent.trim());
		const box = el.closest(%q);
		if (box) {
			const s = getComputedStyle(box).overflowX;
			if (box.scrollWidth > box.clientWidth + 1 && s !== "auto" && s !== "scroll") out.push("unscrollable: " + el.textContent.trim());
		} else if (el.getBoundingClientRect().right > window.innerWidth + 1) out.push("off the page: " + el.textContent.trim());
	});
	return out; })()`, sel, within))
}

// TestDashboardBrowserStates drives the pages of issue 22 in Chromium: an
// event's true state (a dead letter is dead-lettered, not processed), a
// job completed after a retry (its outcome, the old error with its
// attempt), the dead letters' job and event, the error-code filter, and
// the layout at 1280 and 390 px (the oldest waiting job on one line,
// the charts' axes, the menu on one line, no error cell cut off).
func TestDashboardBrowserStates(t *testing.T) {
	chromiumPath(t)
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		e := newDashboardEnv(t, tdb)
		long := "bad-" + "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz"
		e.flaky.Store("flaky-1", true)
		e.seed(t, []string{"p1", "p2", "flaky-1", long}, long)
		// One job waiting for its retry, the oldest waiting.
		e.later.Store("later", true)
		body := `{"source":"zoho","event_type":"update","entity_type":"product","entity_id":"later","data":{"item_id":"later","name":"Later","last_modified_time":"2026-11-20T10:00:00+0000"}}`
		require.Equal(t, http.StatusOK, webhook(t, e.hooks, "products", []byte(body)).status)
		require.Eventually(t, func() bool {
			s, err := e.h.queue.Stats(context.Background())
			require.NoError(t, err)
			return s.ByStatus[tds.StatusRetry] == 1
		}, 20*time.Second, 20*time.Millisecond)

		ctx := browser(t)
		ui := e.srv.URL + "/ops/ui/"
		do(t, ctx, chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.CSS("#token")),
			chromedp.SendKeys(chromedp.CSS("#token"), testAdminToken+"\r"), chromedp.WaitVisible(chromedp.CSS("#oldest")))

		// 1280 px: the oldest waiting job on one line; the charts say
		// their values and times.
		require.LessOrEqual(t, linesOf(t, ctx, "#oldest"), 1.2, text(t, ctx, "#oldest"))
		require.Equal(t, 6, nodes(t, ctx, "svg.chart text.y-tick"), "0, half and top on each chart")
		hhmm := regexp.MustCompile(`^\d\d:\d\d$`)
		times := eval[[]string](t, ctx, `[...document.querySelectorAll("svg.chart text.x-tick")].map((e) => e.textContent)`)
		require.Len(t, times, 8, "four times on each chart")
		for _, s := range times {
			require.Regexp(t, hhmm, s)
		}
		require.Zero(t, eval[int](t, ctx, `[...document.querySelectorAll("svg.chart text")].filter((e) => {
			const b = e.getBBox(), v = e.ownerSVGElement.viewBox.baseVal;
			return b.x < v.x - 0.5 || b.x + b.width > v.x + v.width + 0.5; }).length`), "no axis label runs out of its chart")

		// A dead letter's page says so, with its dead-lettered time, not a processed one.
		deadEvent := e.eventOf(t, long)
		do(t, ctx, chromedp.Navigate(fmt.Sprintf("%sevents/%d", ui, deadEvent)), chromedp.WaitVisible(chromedp.CSS("#event-status")))
		require.Equal(t, "dead_letter", text(t, ctx, "#event-status"))
		labels := eval[[]string](t, ctx, `[...document.querySelectorAll("dl.facts dt")].map((e) => e.textContent)`)
		require.Contains(t, labels, "Dead-lettered")
		require.NotContains(t, labels, "Processed")
		require.NotContains(t, labels, "Synced")

		// The events list: a status column, the dead letter filtered by it.
		do(t, ctx, chromedp.Navigate(ui+"events"), chromedp.WaitVisible(chromedp.CSS("#events")),
			chromedp.SetValue(chromedp.CSS("#status-filter"), "dead_letter"), chromedp.Click(chromedp.CSS("#filter")),
			chromedp.WaitVisible(chromedp.CSS(`#status-filter`)))
		require.Eventually(t, func() bool { return nodes(t, ctx, "#events tbody tr") == 1 }, 5*time.Second, 20*time.Millisecond)
		require.Equal(t, "dead_letter", text(t, ctx, "#events tbody td.status"))

		// A job completed by its second attempt: the outcome, and the first
		// attempt's error as that attempt's.
		do(t, ctx, chromedp.Navigate(fmt.Sprintf("%sevents/%d", ui, e.eventOf(t, "flaky-1"))), chromedp.WaitVisible(chromedp.CSS("#history")))
		require.Equal(t, "synced", text(t, ctx, "#job-outcome"))
		steps := eval[[]string](t, ctx, `[...document.querySelectorAll("#history li .wrap")].map((e) => e.textContent)`)
		require.Equal(t, []string{"attempt 1 failed (flaky): retry after 0s: the test fails flaky-1 once", "attempt 2 succeeded: synced"}, steps)
		require.Equal(t, []string{"Id", "Status", "Outcome", "Priority", "Attempt", "Updated"},
			eval[[]string](t, ctx, `[...document.querySelectorAll("#job th")].map((e) => e.textContent)`), "no stale last error")

		// Dead letters: job and event named; the error-code filter offers the codes there.
		do(t, ctx, chromedp.Navigate(ui+"dead-letters"), chromedp.WaitVisible(chromedp.CSS("#dead-letters")))
		require.Equal(t, []string{"", "Job", "Event"}, eval[[]string](t, ctx, `[...document.querySelectorAll("#dead-letters thead th")].slice(0, 3).map((e) => e.textContent)`))
		require.Equal(t, fmt.Sprintf("event %d", deadEvent), text(t, ctx, "#dead-letters tbody td.event"))
		require.Equal(t, []string{"any", "refused (1)"}, eval[[]string](t, ctx, `[...document.querySelectorAll("#error-code option")].map((e) => e.textContent)`))
		require.Equal(t, 1, nodes(t, ctx, "#retry-filter"))

		// 390 px: the menu on one line, no error cell cut off.
		do(t, ctx, chromedp.EmulateViewport(390, 800))
		do(t, ctx, chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.CSS("#oldest")))
		require.LessOrEqual(t, eval[float64](t, ctx, `document.querySelector("header nav").getBoundingClientRect().height`),
			1.2*eval[float64](t, ctx, `document.querySelector("header nav a").getBoundingClientRect().height`), "the menu takes one line")
		require.LessOrEqual(t, linesOf(t, ctx, "#oldest"), 2.2, text(t, ctx, "#oldest"))
		require.LessOrEqual(t, eval[float64](t, ctx, `document.documentElement.scrollWidth`), 390.0, "the overview fits the width")
		do(t, ctx, chromedp.Navigate(fmt.Sprintf("%sevents/%d", ui, deadEvent)), chromedp.WaitVisible(chromedp.CSS("#attempts")))
		require.Empty(t, clipped(t, ctx, "#job td, td.wrap, #history li", ".never"), "the event page's job and errors show whole at 390 px")
		do(t, ctx, chromedp.Navigate(ui+"dead-letters"), chromedp.WaitVisible(chromedp.CSS("#dead-letters")))
		require.Empty(t, clipped(t, ctx, "#dead-letters td.wrap", ".scroll"))

		// No dead letter left: no control to retry them.
		e.failing.Delete(long)
		_, err := e.h.queue.RetryDeadLetters(context.Background(), tds.DeadLetterFilter{}, false)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			s, err := e.h.queue.Stats(context.Background())
			require.NoError(t, err)
			return s.ByStatus[tds.StatusDeadLetter] == 0 && s.ByStatus[tds.StatusPending]+s.ByStatus[tds.StatusProcessing] == 0
		}, 20*time.Second, 20*time.Millisecond)
		do(t, ctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(ui+"dead-letters"), chromedp.WaitVisible(chromedp.CSS("main p.empty")))
		require.Zero(t, nodes(t, ctx, "#retry-filter"))
	})
}
