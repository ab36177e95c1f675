package store_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
)

func TestMetricCounts(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		empty, err := st.MetricCounts(s.ctx, db, "zoho", t0)
		require.NoError(t, err)
		require.Equal(t, &store.MetricCounts{Jobs: []store.StatusCount{}, DeadLetters: []store.EntityCount{}}, empty)

		order := store.Entity{Source: "zoho", EntityType: "order", EntityID: "o"}
		s.queue(ent("a"), 5, 3)
		s.queue(ent("a"), 5, 3) // blocked
		pr := s.queue(ent("b"), 2, 3)
		early := s.event(order)
		early.ReceivedAt = t0.Add(-time.Hour)
		rt := s.queueEvent(early, 5, 3)
		cm := s.queue(ent("c"), 5, 3)
		dl := s.queue(ent("d"), 5, 3)
		s.queue(store.Entity{Source: "erp", EntityType: "product", EntityID: "e"}, 5, 3)
		s.fail(s.claimJob(rt.ID, "w", t0), "w", false, "E", t0.Add(time.Hour))
		s.deadLetter(dl.ID, "E", t0)
		s.completeJob(cm.ID, t0.Add(time.Minute))
		s.claimJob(pr.ID, "w", t0.Add(time.Minute))

		c, err := st.MetricCounts(s.ctx, db, "zoho", t0)
		require.NoError(t, err)
		slices.SortFunc(c.Jobs, func(x, y store.StatusCount) int {
			return strings.Compare(fmt.Sprint(x.Status, x.Priority), fmt.Sprint(y.Status, y.Priority))
		})
		require.Equal(t, []store.StatusCount{
			{Status: store.StatusDeadLetter, Priority: 5, N: 1},
			{Status: store.StatusPending, Priority: 5, N: 3},
			{Status: store.StatusProcessing, Priority: 2, N: 1},
			{Status: store.StatusRetry, Priority: 5, N: 1},
		}, c.Jobs)
		require.Equal(t, []store.EntityCount{{EntityType: "product", N: 1}}, c.DeadLetters)
		require.Equal(t, int64(1), c.Blocked)
		sameTime(t, t0.Add(-time.Hour), c.OldestWaiting)
		require.Equal(t, int64(5), c.SourceSince, "zoho's events since t0: not the earlier one, nor erp's")
		require.Zero(t, c.APICallsToday)
		require.Zero(t, c.PausedRuns)

		// The budget's ledger and a paused run: the source's, on t0's day.
		r, err := newRun(t, db, st, "w", t0, t0.Add(time.Minute))
		require.NoError(t, err)
		yesterday := store.DayCalls{Day: t0.Add(-24 * time.Hour), Calls: 50}
		today := store.DayCalls{Day: t0, Calls: 7}
		_, err = st.PauseRun(s.ctx, db, r.ID, "w", store.Progress{APICalls: 57, Calls: []store.DayCalls{yesterday, today}},
			t0.Add(24*time.Hour), "paused")
		require.NoError(t, err)
		c, err = st.MetricCounts(s.ctx, db, "zoho", t0)
		require.NoError(t, err)
		require.Equal(t, int64(7), c.APICallsToday, "today's calls only")
		require.Equal(t, int64(1), c.PausedRuns)
		other, err := st.MetricCounts(s.ctx, db, "erp", t0)
		require.NoError(t, err)
		require.Zero(t, other.APICallsToday, "another source's budget")
		require.Zero(t, other.PausedRuns)
	})
}
