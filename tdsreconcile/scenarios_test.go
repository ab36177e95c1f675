package tdsreconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
)

// Scenarios of reconciliation against the fake Zoho: the fewest calls of
// an incremental run, rate limits and the daily budget, token expiry, the
// API going down, a webhook racing a repair, dry runs, cancels, and types
// without a version field.

// newReconcilerAPI is newReconciler with the ZohoAPI adjusted by edit.
func (e *reconcileEnv) newReconcilerAPI(t *testing.T, edit func(*ZohoAPI), opts ...Option) *Reconciler {
	t.Helper()
	return e.newReconcilerOn(t, e.db, e.p, edit, opts...)
}

// newReconcilerOn is newReconcilerAPI writing to db through proc.
func (e *reconcileEnv) newReconcilerOn(t *testing.T, db *bun.DB, proc *tds.Processor, edit func(*ZohoAPI), opts ...Option) *Reconciler {
	t.Helper()
	api := ZohoAPI(testdb.ZohoAPI(e.fake.URL()))
	edit(&api)
	base := []Option{WithClock(e.clock.Now), WithLogger(testdb.QuietLogger)}
	rc, err := New(db, proc, api, append(base, opts...)...)
	require.NoError(t, err)
	rc.sleep = e.sleeps.sleep
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

// mirrorRow is a row of a mirror table, its data decoded.
type mirrorRow struct {
	data    map[string]any
	deleted bool
}

// mirrorRows reads the mirror table of typ by entity id.
func (e *reconcileEnv) mirrorRows(t *testing.T, typ string) map[string]mirrorRow {
	t.Helper()
	var rows []struct {
		EntityID  string     `bun:"entity_id"`
		Data      string     `bun:"data"`
		DeletedAt *time.Time `bun:"deleted_at"`
	}
	require.NoError(t, e.db.NewRaw("SELECT entity_id, data, deleted_at FROM ?", bun.Ident(testdb.EntityType(t, typ).MirrorTable)).
		Scan(context.Background(), &rows))
	out := make(map[string]mirrorRow, len(rows))
	for _, r := range rows {
		var data map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.Data), &data))
		out[r.EntityID] = mirrorRow{data: data, deleted: r.DeletedAt != nil}
	}
	return out
}

// mirrorRev is the rev of the live mirror row of typ id (-1: none).
func (e *reconcileEnv) mirrorRev(t *testing.T, typ, id string) int {
	t.Helper()
	row, ok := e.mirrorRows(t, typ)[id]
	if !ok || row.deleted {
		return -1
	}
	return int(row.data["rev"].(float64))
}

// watermarks reads the watermarks of the default source.
func (e *reconcileEnv) watermarks(t *testing.T) map[string]time.Time {
	t.Helper()
	marks, err := testdb.Store(t, e.db).Watermarks(context.Background(), e.db, tds.DefaultSource)
	require.NoError(t, err)
	return marks
}

// takeSleeps empties the log of the client's waits.
func (e *reconcileEnv) takeSleeps() []time.Duration {
	var out []time.Duration
	for {
		select {
		case d := <-e.sleeps.ch:
			out = append(out, d)
		default:
			return out
		}
	}
}

// syncRunEvents counts the inbox events a run ingested.
func (e *reconcileEnv) syncRunEvents(t *testing.T) int {
	t.Helper()
	return testkit.Count(t, e.db, "SELECT COUNT(*) FROM tds_inbox_events WHERE sync_run_id IS NOT NULL")
}

// putProducts puts n products into the fake, product i at base+i*step, and
// delivers their webhooks when deliver is set.
func (e *reconcileEnv) putProducts(t *testing.T, n int, base time.Time, step time.Duration, deliver bool) []string {
	t.Helper()
	ids := make([]string, n)
	evs := make([]*tds.Event, n)
	for i := range n {
		ids[i] = fmt.Sprintf("pro-%04d", i)
		rec := apiRecord("product", ids[i], base.Add(time.Duration(i)*step), 0)
		e.fake.Put("items", rec)
		data, err := json.Marshal(rec)
		require.NoError(t, err)
		evs[i] = &tds.Event{EventType: tds.EventUpdate, EntityType: "product", EntityID: ids[i], Data: data}
	}
	if !deliver {
		return ids
	}
	e.deliverAll(t, evs)
	return ids
}

var productsOnly = []string{"product"}

// TestReconcileIncrementalFewestCalls: after a completed incremental run,
// a second one reads one page of 200 newest first out of 600 records (a
// full listing takes three), stops once past the watermark less the
// lookback, and repairs exactly what changed, the record edited within the
// lookback window included: one list call plus one detail call per
// drifted record, nothing more.
func TestReconcileIncrementalFewestCalls(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		m, err := tds.NewMirrorSyncer()
		require.NoError(t, err)

		// 600 products a minute apart, all delivered.
		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		ids := e.putProducts(t, 600, base, time.Minute, true)
		testdb.StartWorker(t, e.db, e.clock.Now, m)
		e.drain(t)

		first, err := e.rc.Run(ctx, Request{Mode: Incremental, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, first.Status, first.Error)
		require.Equal(t, int64(3), first.Pages, "no watermark yet: every page")
		require.Equal(t, DriftCounts{}, first.Counts)
		mark := base.Add(599 * time.Minute)
		testkit.RequireSameTime(t, mark, e.watermarks(t)["product"])

		// In Zoho, without webhooks: three records updated, two created,
		// one edited with a version inside the lookback window (skew: it
		// is older than the watermark), one edited older than the window.
		later := mark.Add(time.Hour)
		updated := []string{ids[10], ids[20], ids[30]}
		for i, id := range updated {
			e.fake.Put("items", apiRecord("product", id, later.Add(time.Duration(i)*time.Second), 1))
		}
		created := []string{"pro-new-1", "pro-new-2"}
		for i, id := range created {
			e.fake.Put("items", apiRecord("product", id, later.Add(time.Duration(10+i)*time.Second), 1))
		}
		inWindow, outOfWindow := ids[100], ids[200]
		e.fake.Put("items", apiRecord("product", inWindow, mark.Add(-DefaultLookback/2), 1))
		e.fake.Put("items", apiRecord("product", outOfWindow, mark.Add(-2*DefaultLookback), 1))

		before := e.fake.Stats()
		run, err := e.rc.Run(ctx, Request{Mode: Incremental, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, run.Status, run.Error)
		require.Equal(t, DriftCounts{StaleLocal: 4, MissingLocal: 2}, run.Counts)
		require.Equal(t, int64(6), run.Repaired)
		require.Equal(t, int64(1), run.Pages, "one page reaches past the watermark less the lookback")
		after := e.fake.Stats()
		require.Equal(t, 1+6, after.APICalls-before.APICalls, "one list call and one detail call per drifted record")
		require.Equal(t, 1, after.ListCalls-before.ListCalls)
		require.Equal(t, 6, after.DetailCalls-before.DetailCalls)
		require.Equal(t, int64(1+6), run.APICalls)
		require.Equal(t, before.TokenRefreshes, after.TokenRefreshes, "the token is reused")

		// Resolved once the repairs are applied.
		e.settle(t)
		drift, err := e.rc.ListDrift(ctx, run.ID, tds.Page{Limit: 100})
		require.NoError(t, err)
		got := map[string]DriftKind{}
		for _, d := range drift {
			require.True(t, d.Resolved)
			require.NotNil(t, d.InboxEventID)
			got[d.EntityID] = d.Kind
		}
		want := map[string]DriftKind{inWindow: DriftStaleLocal, created[0]: DriftMissingLocal, created[1]: DriftMissingLocal}
		for _, id := range updated {
			want[id] = DriftStaleLocal
		}
		require.Equal(t, want, got)

		e.drain(t)
		for id := range want {
			require.Equal(t, 1, e.mirrorRev(t, "product", id), id)
		}
		// Older than the watermark less the lookback: an incremental run
		// does not read it (a full sweep would).
		require.Equal(t, 0, e.mirrorRev(t, "product", outOfWindow))
		testkit.RequireSameTime(t, later.Add(11*time.Second), e.watermarks(t)["product"])
	})
}

// TestReconcileRateLimited: 429 answers are retried, after Retry-After
// when Zoho sends one and after the jittered backoff otherwise; the run
// completes, and each retry is an API call of the run.
func TestReconcileRateLimited(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		e.startMirror(t)
		e.putProducts(t, 5, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Minute, false)

		// The list call meets three bare 429s; the first detail call two
		// with Retry-After: 7.
		e.fake.Fail(3, http.StatusTooManyRequests, "")
		var n atomic.Int32
		e.fake.OnRequest(func(r *http.Request) {
			if n.Add(1) == 5 {
				e.fake.Fail(2, http.StatusTooManyRequests, "7")
			}
		})
		run, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, run.Status, run.Error)
		require.Equal(t, int64(5), run.Repaired)

		sleeps := e.takeSleeps()
		require.Len(t, sleeps, 5)
		for i, d := range sleeps[:3] {
			nominal := time.Second << i // 1s, 2s, 4s, ±20 %
			require.GreaterOrEqual(t, d, nominal*8/10, "backoff %d", i+1)
			require.LessOrEqual(t, d, nominal*12/10, "backoff %d", i+1)
		}
		require.Equal(t, []time.Duration{7 * time.Second, 7 * time.Second}, sleeps[3:], "Retry-After honoured")

		stats := e.fake.Stats()
		require.Equal(t, 5, stats.Status[http.StatusTooManyRequests])
		require.Equal(t, 1+5+5, stats.APICalls)
		require.Equal(t, int64(stats.APICalls), run.APICalls, "retries count")
		e.drain(t)
		e.requireMirrorEqualsFake(t, "product")
	})
}

// TestReconcileDailyBudget: runs never make more API calls a UTC day than
// the budget, counted over every run of the day: a run that would exceed
// it pauses, naming the budget, no run starts the same day, and the next
// day the paused run resumes where it stood, with a new budget.
func TestReconcileDailyBudget(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		e.startMirror(t)
		const budget, sweep = 18, 15 // a full sweep leaves IncrementalShare of the budget
		rc := e.newReconcilerAPI(t, func(api *ZohoAPI) { api.DailyBudget = budget })

		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		ids := e.putProducts(t, 10, base, time.Minute, false)
		req := Request{Mode: Full, EntityTypes: productsOnly}

		// 1 page + 10 details: within the sweep's share of the budget.
		first, err := rc.Run(ctx, req)
		require.NoError(t, err)
		require.Equal(t, RunCompleted, first.Status, first.Error)
		require.Equal(t, int64(11), first.APICalls)
		e.drain(t)

		// Ten records changed: 11 calls wanted, 4 left, two of which go
		// to 429s: retries count against the budget.
		for i, id := range ids {
			e.fake.Put("items", apiRecord("product", id, base.Add(time.Hour+time.Duration(i)*time.Second), 1))
		}
		e.fake.Fail(2, http.StatusTooManyRequests, "")
		second, err := rc.Run(ctx, req)
		require.ErrorIs(t, err, ErrBudgetExhausted)
		require.Equal(t, RunRunning, second.Status, "paused, not failed")
		midnight := utcDay(e.clock.Now()).Add(24 * time.Hour)
		require.NotNil(t, second.ResumesAt)
		testkit.RequireSameTime(t, midnight, *second.ResumesAt)
		require.True(t, strings.HasPrefix(second.Error, fmt.Sprintf("paused: the %d of the daily budget of %d Zoho API calls a full sweep may spend are spent", sweep, budget)), second.Error)
		require.Equal(t, int64(sweep-11), second.APICalls)
		require.Equal(t, int64(1), second.Repaired, "the page (after two retries) and one detail")
		require.Len(t, e.takeSleeps(), 2)
		require.Equal(t, sweep, e.fake.Stats().APICalls, "the fake saw the sweep's share, not one call more")

		// The same day, no run starts, and no call is made.
		_, err = rc.Run(ctx, req)
		require.ErrorIs(t, err, ErrRunInProgress)
		require.Equal(t, sweep, e.fake.Stats().APICalls)

		// The next UTC day has a new budget: the paused run resumes, and
		// repairs the nine records it had not, without reading its page
		// again.
		e.drain(t)
		e.clock.Advance(24 * time.Hour)
		resumed, err := rc.Run(ctx, req)
		require.NoError(t, err)
		require.Equal(t, second.ID, resumed.ID, "the paused run, resumed")
		require.Equal(t, RunCompleted, resumed.Status, resumed.Error)
		require.Empty(t, resumed.Error)
		require.Nil(t, resumed.ResumesAt)
		require.Equal(t, int64(sweep-11+9), resumed.APICalls)
		require.Equal(t, int64(10), resumed.Repaired)
		require.Equal(t, 1+1, e.fake.Stats().ListCalls)
		require.Equal(t, []int64{sweep, 9}, e.callsPerDay(t, e.clock.Now().Add(-24*time.Hour), 2))
		e.drain(t)
		e.requireMirrorEqualsFake(t, "product")
	})
}

// callsPerDay reads the ledger's API calls of the default source on n UTC
// days from from's.
func (e *reconcileEnv) callsPerDay(t *testing.T, from time.Time, n int) []int64 {
	t.Helper()
	out := make([]int64, n)
	for i := range out {
		all, _, err := testdb.Store(t, e.db).APICallsOn(context.Background(), e.db, tds.DefaultSource, from.Add(time.Duration(i)*24*time.Hour), 0)
		require.NoError(t, err)
		out[i] = all
	}
	return out
}

// budgetOf sets the daily budget to n.
func budgetOf(n int) func(*ZohoAPI) { return func(api *ZohoAPI) { api.DailyBudget = n } }

// driftedSweep puts 415 products into the fake (three list pages) of which
// 22 drifted: 12 never delivered, 5 changed in Zoho afterwards and 5
// deleted there. A full sweep of products takes 3 + 22 = 25 API calls.
func (e *reconcileEnv) driftedSweep(t *testing.T) (calls, drifted int) {
	t.Helper()
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	ids := e.putProducts(t, 408, base, time.Minute, true)
	for i := range 12 {
		e.fake.Put("items", apiRecord("product", fmt.Sprintf("pro-new-%02d", i), base.Add(time.Duration(i)*time.Second), 0))
	}
	e.drain(t)
	for i, id := range ids[:5] {
		e.fake.Put("items", apiRecord("product", id, base.Add(24*time.Hour+time.Duration(i)*time.Second), 1))
	}
	for _, id := range ids[5:10] {
		e.fake.Delete("items", id)
	}
	return driftedSweepCalls, driftedSweepDrifted
}

// What driftedSweep's full run finds: 22 drifted records (12 missing
// locally, 5 stale, 5 deleted in Zoho), read in 3 pages and 22 detail calls.
const (
	driftedSweepDrifted = 22
	driftedSweepCalls   = 3 + driftedSweepDrifted
)

// requireRepairedOnce checks that run repaired drifted entities, each by
// one event.
func (e *reconcileEnv) requireRepairedOnce(t *testing.T, runID int64, drifted int) {
	t.Helper()
	require.Equal(t, drifted, testkit.Count(t, e.db, "SELECT COUNT(*) FROM tds_inbox_events WHERE sync_run_id = ?", runID))
	require.Equal(t, drifted, testkit.Count(t, e.db, `SELECT COUNT(*) FROM (SELECT DISTINCT entity_type, source_entity_id
	FROM tds_inbox_events WHERE sync_run_id = ?) AS x`, runID), "an entity repaired twice")
}

// requireSweptOverThreeDays checks the end of driftedSweep's run runID
// from day1 on, a sweep's share of the daily budget being perDay: perDay
// spent on days 1 and 2, the rest on day 3; once drained, the mirror equals the fake, and each drifted
// entity was repaired once.
func (e *reconcileEnv) requireSweptOverThreeDays(t *testing.T, runID int64, day1 time.Time, perDay int64) {
	t.Helper()
	require.Equal(t, []int64{perDay, perDay, driftedSweepCalls - 2*perDay}, e.callsPerDay(t, day1, 3))
	e.drain(t)
	e.requireMirrorEqualsFake(t, "product")
	e.requireRepairedOnce(t, runID, driftedSweepDrifted)
}

// TestReconcileSweepSpansDays: a full sweep of 25 API calls under a daily
// budget of 10 pauses on day 1 after exactly 10 calls, and is refused the
// same day, by this process and by another one (its own database handle);
// on day 2 the other process resumes it where it stood and it pauses again;
// on day 3 it completes. No page is read twice, each drifted entity is
// repaired once, the mirror equals Zoho, and no day goes over the budget.
func TestReconcileSweepSpansDays(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		e.startMirror(t)
		const budget, sweep = 12, 10 // a full sweep leaves IncrementalShare of the budget
		calls, drifted := e.driftedSweep(t)
		rc := e.newReconcilerAPI(t, budgetOf(budget))
		db2, err := tds.Open(ctx, tdb.URL)
		require.NoError(t, err)
		t.Cleanup(func() { _ = db2.Close() })
		other := e.newReconcilerOn(t, db2, testdb.Processor(t, db2, e.clock.Now), budgetOf(budget))
		req := Request{Mode: Full, EntityTypes: productsOnly}
		day1 := e.clock.Now()

		run, err := rc.Run(ctx, req)
		require.ErrorIs(t, err, ErrBudgetExhausted)
		require.Equal(t, RunRunning, run.Status)
		require.NotNil(t, run.ResumesAt)
		testkit.RequireSameTime(t, utcDay(day1).Add(24*time.Hour), *run.ResumesAt)
		require.Equal(t, int64(sweep), run.APICalls)
		require.Equal(t, int64(3), run.Pages)
		require.Equal(t, int64(sweep-3), run.Repaired)
		require.Equal(t, sweep, e.fake.Stats().APICalls)

		// The same day: refused in both processes, without a call.
		_, err = rc.Start(ctx, req)
		require.ErrorIs(t, err, ErrRunInProgress)
		_, err = other.Run(ctx, req)
		require.ErrorIs(t, err, ErrRunInProgress)
		seen, err := other.GetRun(ctx, run.ID)
		require.NoError(t, err)
		require.Equal(t, run.ResumesAt, seen.ResumesAt, "the other process sees the pause")
		require.Equal(t, sweep, e.fake.Stats().APICalls)

		// Day 2, in the other process.
		e.clock.Advance(24 * time.Hour)
		again, err := other.Run(ctx, Request{Mode: Incremental})
		require.ErrorIs(t, err, ErrBudgetExhausted)
		require.Equal(t, run.ID, again.ID, "the paused run resumed, whatever was asked")
		require.Equal(t, RunRunning, again.Status)
		testkit.RequireSameTime(t, utcDay(day1).Add(48*time.Hour), *again.ResumesAt)
		require.Equal(t, int64(2*sweep), again.APICalls)
		require.Equal(t, int64(3), again.Pages)

		// Day 3: the rest.
		e.clock.Advance(24 * time.Hour)
		done, err := rc.Run(ctx, req)
		require.NoError(t, err)
		require.Equal(t, run.ID, done.ID)
		require.Equal(t, RunCompleted, done.Status, done.Error)
		require.Empty(t, done.Error)
		require.Nil(t, done.ResumesAt)
		require.Equal(t, int64(calls), done.APICalls)
		require.Equal(t, int64(3), done.Pages)
		require.Equal(t, int64(drifted), done.Repaired)
		require.Equal(t, DriftCounts{MissingLocal: 12, StaleLocal: 5, MissingRemote: 5}, done.Counts)

		stats := e.fake.Stats()
		require.Equal(t, 3, stats.ListCalls, "no page read twice")
		require.Equal(t, drifted, stats.DetailCalls, "no record fetched twice")
		require.Equal(t, calls, stats.APICalls)
		runs, err := rc.ListRuns(ctx, tds.Page{Limit: 10})
		require.NoError(t, err)
		require.Len(t, runs, 1, "one run, resumed twice")
		e.requireSweptOverThreeDays(t, run.ID, day1, sweep)
	})
}

// TestReconcileCancelPaused: a run paused in the middle of its listing is
// cancelled at once, its staged listing dropped. A run started when the
// day's budget is spent (here an incremental dry run) pauses before its
// first call, and resumes day after day until it completes.
func TestReconcileCancelPaused(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		e.putProducts(t, 420, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Second, false)
		rc := e.newReconcilerAPI(t, budgetOf(2))
		day1 := e.clock.Now()

		sweep, err := rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.ErrorIs(t, err, ErrBudgetExhausted)
		require.NotNil(t, sweep.ResumesAt)
		require.Equal(t, int64(2), sweep.Pages, "paused before page 3")
		require.Equal(t, 400, testkit.Count(t, e.db, "SELECT COUNT(*) FROM tds_sync_remote"))

		require.NoError(t, rc.Cancel(ctx, sweep.ID))
		cancelled, err := rc.GetRun(ctx, sweep.ID)
		require.NoError(t, err)
		require.Equal(t, RunCancelled, cancelled.Status, "at once")
		require.NotNil(t, cancelled.FinishedAt)
		require.Nil(t, cancelled.ResumesAt)
		require.Zero(t, testkit.Count(t, e.db, "SELECT COUNT(*) FROM tds_sync_remote"), "the staged listing is dropped")
		require.ErrorIs(t, rc.Cancel(ctx, sweep.ID), ErrRunNotFound)

		req := Request{Mode: Incremental, EntityTypes: productsOnly, DryRun: true}
		dry, err := rc.Run(ctx, req)
		require.ErrorIs(t, err, ErrBudgetExhausted)
		require.NotEqual(t, sweep.ID, dry.ID)
		require.Equal(t, RunRunning, dry.Status)
		require.NotNil(t, dry.ResumesAt)
		require.Zero(t, dry.APICalls, "no call past the budget")
		require.Equal(t, 2, e.fake.Stats().APICalls)

		e.clock.Advance(24 * time.Hour)
		dry, err = rc.Run(ctx, req)
		require.ErrorIs(t, err, ErrBudgetExhausted)
		require.Equal(t, int64(2), dry.Pages)
		e.clock.Advance(24 * time.Hour)
		dry, err = rc.Run(ctx, req)
		require.NoError(t, err)
		require.Equal(t, RunCompleted, dry.Status, dry.Error)
		require.Equal(t, int64(3), dry.Pages)
		require.Equal(t, int64(3), dry.APICalls)
		require.Equal(t, int64(420), dry.Counts.MissingLocal)
		require.Zero(t, dry.Repaired, "a dry run")
		require.Equal(t, 2+3, e.fake.Stats().ListCalls)
		require.Equal(t, []int64{2, 2, 1}, e.callsPerDay(t, day1, 3))
	})
}

// TestReconcileSourcesRunApart: a run paused at one source's budget holds
// off that source's runs only; another organisation (another source, with
// a budget of its own) runs beside it and completes.
func TestReconcileSourcesRunApart(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		e.putProducts(t, 5, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Second, false)
		req := Request{Mode: Full, EntityTypes: productsOnly}

		paused, err := e.newReconcilerAPI(t, budgetOf(2)).Run(ctx, req)
		require.ErrorIs(t, err, ErrBudgetExhausted)
		require.NotNil(t, paused.ResumesAt)

		eu := e.newReconcilerAPI(t, budgetOf(7), WithSource("zoho-eu")) // a sweep may spend 6
		run, err := eu.Run(ctx, req)
		require.NoError(t, err)
		require.Equal(t, RunCompleted, run.Status, run.Error)
		require.Equal(t, "zoho-eu", run.Source)
		require.Equal(t, int64(6), run.APICalls, "one page and five details: a sweep's share of its own budget, whole")
		require.Equal(t, int64(5), run.Repaired)

		_, err = e.newReconcilerAPI(t, budgetOf(2)).Start(ctx, req)
		require.ErrorIs(t, err, ErrRunInProgress, "the paused source still holds its own runs off")
		still, err := eu.GetRun(ctx, paused.ID)
		require.NoError(t, err)
		require.Equal(t, RunRunning, still.Status)
		require.Equal(t, paused.ResumesAt, still.ResumesAt)
	})
}

// TestReconcileIncrementalBesidePausedSweep: a full sweep too big for the
// day's budget pauses at its share of it (IncrementalShare is left), and
// the same day an incremental run goes on beside it: it repairs a record
// changed in Zoho within the budget's rest, while another full sweep is
// still refused and the paused one keeps its cursor and its resume time.
func TestReconcileIncrementalBesidePausedSweep(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		e.startMirror(t)
		const budget, sweepShare = 20, 16
		rc := e.newReconcilerAPI(t, budgetOf(budget))
		now := e.clock.Now()

		// Five delivered records, and a first incremental run to set the
		// watermark: one list call.
		ids := e.putProducts(t, 5, now.Add(-time.Hour), time.Second, true)
		e.drain(t)
		first, err := rc.Run(ctx, Request{Mode: Incremental, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, first.Status, first.Error)
		require.Equal(t, int64(1), first.APICalls)

		// 400 old records webhooks never brought: the sweep lists three
		// pages and pauses repairing them, at its share of the budget.
		for i := range 400 {
			e.fake.Put("items", apiRecord("product", fmt.Sprintf("old-%04d", i), now.Add(-30*24*time.Hour+time.Duration(i)*time.Second), 0))
		}
		sweep, err := rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.ErrorIs(t, err, ErrBudgetExhausted)
		require.Equal(t, RunRunning, sweep.Status)
		require.NotNil(t, sweep.ResumesAt)
		require.Equal(t, int64(sweepShare-1), sweep.APICalls, "the day's calls reach the sweep's share")
		require.Equal(t, sweepShare, e.fake.Stats().APICalls)

		// A record changed in Zoho: an incremental run reads one page and
		// the record, beside the paused sweep, within the rest.
		e.fake.Put("items", apiRecord("product", ids[2], now.Add(time.Minute), 1))
		inc, err := rc.Run(ctx, Request{Mode: Incremental, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.NotEqual(t, sweep.ID, inc.ID)
		require.Equal(t, RunCompleted, inc.Status, inc.Error)
		require.Equal(t, int64(2), inc.APICalls)
		require.Equal(t, int64(1), inc.Repaired)
		require.Equal(t, []int64{sweepShare + 2}, e.callsPerDay(t, now, 1), "within the budget")
		e.drain(t)
		require.Equal(t, 1, testkit.Count(t, e.db, "SELECT COUNT(*) FROM tds_inbox_events WHERE source_entity_id = ? AND sync_run_id = ?", ids[2], inc.ID))

		_, err = rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.ErrorIs(t, err, ErrRunInProgress, "one sweep at a time")
		still, err := rc.GetRun(ctx, sweep.ID)
		require.NoError(t, err)
		require.Equal(t, RunRunning, still.Status)
		require.Equal(t, sweep.ResumesAt, still.ResumesAt)
		require.Equal(t, sweep.Pages, still.Pages)
	})
}

// TestReconcileScheduleResumesPaused: the scheduled weekly sweep pauses at
// the budget; the schedule (which the housekeeping leader calls) leaves it
// paused the same day, resumes it each following day although no run is
// due, and starts no other run meanwhile.
func TestReconcileScheduleResumesPaused(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		e.startMirror(t)
		const budget, sweep = 12, 10 // a full sweep leaves IncrementalShare of the budget
		calls, _ := e.driftedSweep(t)
		// A registry of products alone: the schedule's runs take every type.
		products, err := tds.NewRegistry(testdb.EntityType(t, "product"))
		require.NoError(t, err)
		rc := e.newReconcilerOn(t, e.db, testdb.Processor(t, e.db, e.clock.Now, tds.WithRegistry(products)), budgetOf(budget),
			WithSchedule(0, 7*24*time.Hour))
		day1 := e.clock.Now()

		runs := func() []SyncRun {
			rs, err := rc.ListRuns(ctx, tds.Page{Limit: 10})
			require.NoError(t, err)
			return rs
		}
		// settled waits for the one run to pause after n calls, or to
		// complete.
		settled := func(n int64) SyncRun {
			t.Helper()
			require.Eventually(t, func() bool {
				rs := runs()
				return len(rs) == 1 && rs[0].APICalls == n && (rs[0].ResumesAt != nil || rs[0].Status == RunCompleted)
			}, 60*time.Second, 5*time.Millisecond)
			return runs()[0]
		}
		require.NoError(t, rc.Task().Run(ctx))
		run := settled(sweep)
		require.Equal(t, Full, run.Mode)
		require.Equal(t, RunRunning, run.Status)
		require.NoError(t, rc.Task().Run(ctx))
		require.Equal(t, run, runs()[0], "left paused the same day")

		e.clock.Advance(24 * time.Hour)
		require.NoError(t, rc.Task().Run(ctx))
		run = settled(2 * sweep)
		require.Len(t, runs(), 1)
		testkit.RequireSameTime(t, utcDay(day1).Add(48*time.Hour), *run.ResumesAt)

		e.clock.Advance(24 * time.Hour)
		require.NoError(t, rc.Task().Run(ctx))
		run = settled(int64(calls))
		require.Equal(t, RunCompleted, run.Status, run.Error)
		require.NoError(t, rc.Task().Run(ctx))
		require.Len(t, runs(), 1, "no run due: the week has not passed")
		e.requireSweptOverThreeDays(t, run.ID, day1, sweep)
	})
}

// TestReconcileTokenExpiresMidRun: an access token revoked in the middle
// of a run costs one refresh and one repeated call; the run completes.
func TestReconcileTokenExpiresMidRun(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		e.startMirror(t)
		e.putProducts(t, 5, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Minute, false)

		var n atomic.Int32
		e.fake.OnRequest(func(r *http.Request) {
			if n.Add(1) == 3 { // the second detail call
				e.fake.ExpireTokens()
			}
		})
		run, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, run.Status, run.Error)
		require.Equal(t, int64(5), run.Repaired)
		stats := e.fake.Stats()
		require.Equal(t, 2, stats.TokenRefreshes, "the first token, and one refresh")
		require.Equal(t, 1, stats.Status[http.StatusUnauthorized])
		require.Equal(t, 1+5+1, stats.APICalls)
		require.Equal(t, int64(stats.APICalls), run.APICalls)
		require.Empty(t, e.takeSleeps(), "a refresh is not a retry")
		e.drain(t)
		e.requireMirrorEqualsFake(t, "product")
	})
}

// TestReconcileAPIDown: Zoho going down in the middle of an incremental
// run fails it with Zoho's error kept, and leaves the watermark where it
// was; once Zoho is back, the next incremental run repairs everything
// that changed since the last completed one.
func TestReconcileAPIDown(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		e.startMirror(t)
		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		ids := e.putProducts(t, 8, base, time.Minute, true)
		e.drain(t)
		req := Request{Mode: Incremental, EntityTypes: productsOnly}
		first, err := e.rc.Run(ctx, req)
		require.NoError(t, err)
		require.Equal(t, RunCompleted, first.Status, first.Error)
		mark := e.watermarks(t)["product"]
		testkit.RequireSameTime(t, base.Add(7*time.Minute), mark)

		later := base.Add(time.Hour)
		for i, id := range ids[:3] {
			e.fake.Put("items", apiRecord("product", id, later.Add(time.Duration(i)*time.Minute), 1))
		}
		// Zoho goes down at the run's second detail call.
		var n atomic.Int32
		e.fake.OnRequest(func(r *http.Request) {
			if n.Add(1) == 3 {
				e.fake.SetDown(true)
			}
		})
		failed, err := e.rc.Run(ctx, req)
		require.NoError(t, err)
		require.Equal(t, RunFailed, failed.Status)
		require.Contains(t, failed.Error, "503")
		require.JSONEq(t, `{"code":503,"message":"Service temporarily unavailable."}`, string(failed.APIError))
		require.Equal(t, int64(1), failed.Repaired, "the first repair was made")
		require.Len(t, e.takeSleeps(), 5, "the failing call was retried")
		testkit.RequireSameTime(t, mark, e.watermarks(t)["product"], "a failed run does not move the watermark")

		// While Zoho is down, another record changes: the gap.
		e.fake.OnRequest(nil)
		e.fake.Put("items", apiRecord("product", ids[5], later.Add(time.Hour), 1))
		e.fake.SetDown(false)
		e.drain(t)

		again, err := e.rc.Run(ctx, req)
		require.NoError(t, err)
		require.Equal(t, RunCompleted, again.Status, again.Error)
		require.Equal(t, DriftCounts{StaleLocal: 3}, again.Counts, "the two left and the gap")
		require.Equal(t, int64(3), again.Repaired)
		e.drain(t)
		e.requireMirrorEqualsFake(t, "product")
		testkit.RequireSameTime(t, later.Add(time.Hour), e.watermarks(t)["product"])
	})
}

// TestReconcileNewerWebhookWins: a webhook newer than the record a repair
// fetched wins, whichever reaches the inbox first: the stale guard skips
// the older version.
func TestReconcileNewerWebhookWins(t *testing.T) {
	for _, tc := range []struct {
		name string
		// webhookFirst: the webhook arrives during the detail call, before
		// the repair is ingested, with the worker running; otherwise after
		// the run, both waiting in the queue, repair first.
		webhookFirst bool
	}{{"webhook during the repair", true}, {"webhook after the repair", false}} {
		t.Run(tc.name, func(t *testing.T) {
			testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
				ctx := context.Background()
				e := newReconcileEnv(t, tdb)
				m, err := tds.NewMirrorSyncer()
				require.NoError(t, err)
				stop := testdb.StartWorker(t, e.db, e.clock.Now, m)
				base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
				ids := e.putProducts(t, 3, base, time.Minute, true)
				e.drain(t)
				x := ids[1]
				// Zoho's record the run fetches, and the newer webhook.
				e.fake.Put("items", apiRecord("product", x, base.Add(time.Hour), 1))
				newer := apiRecord("product", x, base.Add(2*time.Hour), 2)

				var (
					once   sync.Once
					hookEv = make(chan error, 1)
				)
				if tc.webhookFirst {
					e.fake.OnRequest(func(r *http.Request) {
						if strings.HasSuffix(r.URL.Path, "/items/"+x) {
							once.Do(func() {
								data, _ := json.Marshal(newer)
								_, err := e.p.Process(context.Background(),
									&tds.Event{EventType: tds.EventUpdate, EntityType: "product", EntityID: x, Data: data})
								hookEv <- err
							})
						}
					})
				} else {
					stop()
				}
				run, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
				require.NoError(t, err)
				require.Equal(t, RunCompleted, run.Status, run.Error)
				require.Equal(t, DriftCounts{StaleLocal: 1}, run.Counts)
				require.Equal(t, int64(1), run.Repaired)
				if tc.webhookFirst {
					require.NoError(t, <-hookEv)
				} else {
					e.webhook(t, "product", newer, tds.EventUpdate)
					testdb.StartWorker(t, e.db, e.clock.Now, m)
				}
				e.drain(t)
				require.Equal(t, 2, e.mirrorRev(t, "product", x), "the webhook's version")
				applied, err := testdb.Store(t, e.db).AppliedOf(ctx, e.db, tds.DefaultSource, "product", []string{x})
				require.NoError(t, err)
				require.Len(t, applied, 1)
				testkit.RequireSameTime(t, base.Add(2*time.Hour), applied[0].Version)
			})
		})
	}
}

// TestReconcileDryRun: a dry run records the drift, confirms the records
// missing from the listing (and nothing else), and changes nothing: no
// event ingested, the mirror and the watermark as they were.
func TestReconcileDryRun(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		e.startMirror(t)
		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		ids := e.putProducts(t, 10, base, time.Minute, true)
		e.drain(t)
		first, err := e.rc.Run(ctx, Request{Mode: Incremental, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, first.Status, first.Error)
		marks := e.watermarks(t)

		later := base.Add(time.Hour)
		for i, id := range ids[:3] {
			e.fake.Put("items", apiRecord("product", id, later.Add(time.Duration(i)*time.Second), 1))
		}
		e.fake.Put("items", apiRecord("product", "pro-new", later.Add(time.Minute), 0))
		e.fake.Delete("items", ids[8])
		e.fake.Delete("items", ids[9])
		mirror := e.mirrorRows(t, "product")
		before := e.fake.Stats()

		full, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly, DryRun: true})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, full.Status, full.Error)
		require.True(t, full.DryRun)
		require.Equal(t, DriftCounts{StaleLocal: 3, MissingLocal: 1, MissingRemote: 2}, full.Counts)
		require.Zero(t, full.Repaired)
		require.Equal(t, 1+2, e.fake.Stats().APICalls-before.APICalls, "the page, and a confirmation per missing record")
		drift, err := e.rc.ListDrift(ctx, full.ID, tds.Page{Limit: 100})
		require.NoError(t, err)
		require.Len(t, drift, 6)
		for _, d := range drift {
			require.Nil(t, d.InboxEventID, "%s", d.EntityID)
			require.False(t, d.Resolved, "nothing repaired: %s %s", d.EntityID, d.Kind)
			require.Equal(t, ReasonDryRun, d.Reason, "%s %s", d.EntityID, d.Kind)
			require.False(t, d.PendingDelete, "a dry run holds no delete")
		}

		inc, err := e.rc.Run(ctx, Request{Mode: Incremental, EntityTypes: productsOnly, DryRun: true})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, inc.Status, inc.Error)
		require.Equal(t, DriftCounts{StaleLocal: 3, MissingLocal: 1}, inc.Counts)
		require.Zero(t, inc.Repaired)

		require.Zero(t, e.syncRunEvents(t), "no event ingested")
		e.drain(t)
		require.Equal(t, mirror, e.mirrorRows(t, "product"), "the mirror as it was")
		require.Equal(t, len(marks), len(e.watermarks(t)))
		testkit.RequireSameTime(t, marks["product"], e.watermarks(t)["product"], "the watermark as it was")
	})
}

// TestReconcileCancel: a run started in the background and cancelled
// while it lists stops after the page it is reading, as cancelled.
func TestReconcileCancel(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		e.putProducts(t, 600, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Second, false)

		ids := make(chan int64, 1)
		cancelled := make(chan error, 1)
		var once sync.Once
		e.fake.OnRequest(func(r *http.Request) {
			if r.URL.Query().Get("page") != "1" {
				return
			}
			once.Do(func() {
				select {
				case id := <-ids:
					cancelled <- e.rc.Cancel(context.Background(), id)
				case <-time.After(20 * time.Second): // Start failed: do not hang the fake
					cancelled <- fmt.Errorf("no run id")
				}
			})
		})
		id, err := e.rc.Start(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		ids <- id
		require.NoError(t, <-cancelled)

		var run *SyncRun
		require.Eventually(t, func() bool {
			run, err = e.rc.GetRun(ctx, id)
			require.NoError(t, err)
			return run.Status != RunRunning
		}, 20*time.Second, 5*time.Millisecond)
		require.Equal(t, RunCancelled, run.Status, run.Error)
		require.True(t, run.CancelRequested)
		require.NotNil(t, run.FinishedAt)
		require.Equal(t, int64(1), run.Pages, "stopped after the page being read")
		require.Equal(t, 1, e.fake.Stats().APICalls)
		require.Zero(t, testkit.Count(t, e.db, "SELECT COUNT(*) FROM tds_sync_remote"), "the staged listing is dropped")
		require.Zero(t, testkit.Count(t, e.db, "SELECT COUNT(*) FROM tds_sync_drift"))
		require.ErrorIs(t, e.rc.Cancel(ctx, id), ErrRunNotFound, "no longer running")
	})
}

// TestReconcileWithoutVersionField: price lists carry no version; a full
// sweep compares the list fields with what was applied, finds a changed
// one, repairs it, and then finds nothing.
func TestReconcileWithoutVersionField(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		e.startMirror(t)
		book := func(id, name string, items int) map[string]any {
			rec := map[string]any{"pricebook_id": id, "name": name, "currency_code": "EUR", "status": "active"}
			var list []any
			for i := range items { // nested: only the detail has them
				list = append(list, map[string]any{"item_id": fmt.Sprintf("i-%d", i), "pricebook_rate": 10 + i})
			}
			rec["pricebook_items"] = list
			return rec
		}
		for i := range 4 {
			rec := book(fmt.Sprintf("pb-%d", i), fmt.Sprintf("Book %d", i), 2)
			e.fake.Put("pricebooks", rec)
			e.webhook(t, "price_list", rec, tds.EventUpdate)
		}
		e.drain(t)
		req := Request{Mode: Full, EntityTypes: []string{"price_list"}}
		clean, err := e.rc.Run(ctx, req)
		require.NoError(t, err)
		require.Equal(t, RunCompleted, clean.Status, clean.Error)
		require.Equal(t, DriftCounts{}, clean.Counts, "as delivered")

		changed := book("pb-2", "Book 2, renamed", 3)
		e.fake.Put("pricebooks", changed)
		e.clock.Advance(time.Minute) // the repair's version is when it is received
		run, err := e.rc.Run(ctx, req)
		require.NoError(t, err)
		require.Equal(t, RunCompleted, run.Status, run.Error)
		require.Equal(t, DriftCounts{Changed: 1}, run.Counts)
		require.Equal(t, int64(1), run.Repaired)
		require.Equal(t, int64(1+1), run.APICalls)
		e.settle(t)
		drift, err := e.rc.ListDrift(ctx, run.ID, tds.Page{Limit: 10})
		require.NoError(t, err)
		require.Len(t, drift, 1)
		require.Equal(t, "pb-2", drift[0].EntityID)
		require.Equal(t, DriftChanged, drift[0].Kind)
		require.True(t, drift[0].Resolved)

		e.drain(t)
		rows := e.mirrorRows(t, "price_list")
		require.Len(t, rows, 4)
		require.Equal(t, "Book 2, renamed", rows["pb-2"].data["name"])
		require.Len(t, rows["pb-2"].data["pricebook_items"], 3, "the detail, not the list record")

		again, err := e.rc.Run(ctx, req)
		require.NoError(t, err)
		require.Equal(t, RunCompleted, again.Status, again.Error)
		require.Equal(t, DriftCounts{}, again.Counts)
		require.Equal(t, int64(1), again.APICalls, "the page only")
	})
}

// TestReconcileConfirmationCap: a webhook-key holder who sends updates of
// 50 ids Zoho never had cannot make a full sweep spend the day's budget
// confirming them: with a budget of 200 a run confirms at most
// MinConfirmations (20) of them, after it repaired what the listing showed
// drifted, and completes saying what it left; the next sweep takes the
// next share. Neither pauses.
func TestReconcileConfirmationCap(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		e.startMirror(t)
		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		e.putProducts(t, 10, base, time.Minute, true)
		const fakes = 50
		for i := range fakes {
			e.webhook(t, "product", apiRecord("product", fmt.Sprintf("fake-%03d", i), base, 0), tds.EventUpdate)
		}
		for i := range 3 { // in Zoho, never delivered: repaired first
			e.fake.Put("items", apiRecord("product", fmt.Sprintf("pro-new-%d", i), base, 0))
		}
		e.drain(t)
		rc := e.newReconcilerAPI(t, budgetOf(200), WithMaxDeletes(fakes)) // the cap, not the deletion guard, is tested here
		before := e.fake.Stats()

		run, err := rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, run.Status, run.Error)
		require.Equal(t, DriftCounts{MissingLocal: 3, MissingRemote: fakes}, run.Counts)
		require.Equal(t, 1+3+MinConfirmations, e.fake.Stats().APICalls-before.APICalls,
			"one page, three repairs, and the capped confirmations")
		require.Equal(t, int64(3+MinConfirmations), run.Repaired)
		require.Contains(t, run.Error, fmt.Sprintf("%d records missing from the listing left unconfirmed", fakes-MinConfirmations))
		e.drain(t) // the repairs applied, what is open is what the cap left
		require.NoError(t, rc.Settle(ctx))
		drift, err := rc.ListDrift(ctx, run.ID, tds.Page{Limit: 100})
		require.NoError(t, err)
		unresolved := 0
		for _, d := range drift {
			if !d.Resolved {
				unresolved++
				require.Equal(t, DriftMissingRemote, d.Kind)
			}
		}
		require.Equal(t, fakes-MinConfirmations, unresolved, "left as drift for the next run")

		e.drain(t)
		next, err := rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, next.Status, next.Error)
		require.Equal(t, DriftCounts{MissingRemote: fakes - MinConfirmations}, next.Counts)
		require.Equal(t, int64(MinConfirmations), next.Repaired)
	})
}
