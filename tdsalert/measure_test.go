package tdsalert

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/alert"
	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/internal/testdb"
)

// only returns rule's alerts, newest first.
func (e *alertEnv) only(t *testing.T, rule string) []Alert {
	t.Helper()
	all, err := e.a.Alerts(t.Context(), "")
	require.NoError(t, err)
	var out []Alert
	for _, a := range all {
		if a.Rule == rule {
			out = append(out, a)
		}
	}
	return out
}

// TestAlertDeadLettersFireWhileTheyWait: dead_letters lasts as long as
// a dead letter waits for an operator, however many evaluations pass,
// and resolves once it is retried (issue 22: it resolved 15 s after
// firing while the dead letters were still there).
func TestAlertDeadLettersFireWhileTheyWait(t *testing.T) {
	t.Parallel()
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		e := newAlertEnv(t, tdb, WithRules(testdb.OnlyRule(alert.RuleDeadLetters, "")))
		e.runJobs(t, failing, tds.StatusDeadLetter, e.ingest(t, "1", "a"), e.ingest(t, "2", "b"))
		require.Equal(t, StateFiring, e.state(t, alert.RuleDeadLetters))
		for _, d := range []time.Duration{15 * time.Second, time.Minute, 24 * time.Hour} {
			e.clock.Advance(d)
			require.Equal(t, StateFiring, e.state(t, alert.RuleDeadLetters), "after %s more", d)
		}
		dead := e.deadLetters(t)
		require.Len(t, dead, 2)
		_, err := e.q.RetryDeadLetter(t.Context(), dead[0])
		require.NoError(t, err)
		require.Equal(t, StateFiring, e.state(t, alert.RuleDeadLetters), "one dead letter still waits")
		got := e.only(t, alert.RuleDeadLetters)
		require.Len(t, got, 1)
		require.Equal(t, 1.0, got[0].Value)
		require.Equal(t, 2.0, *got[0].FiredValue)
		require.Equal(t, 2.0, *got[0].PeakValue)

		require.NoError(t, e.q.DiscardDeadLetter(t.Context(), dead[1], "obsolete"))
		require.Equal(t, StateResolved, e.state(t, alert.RuleDeadLetters))
	})
}

// TestAlertFailureRatioNotOnRecovery: failures under the minimum do not
// fire when a retry succeeds afterwards (issue 22: successes lifted the
// attempt count over the minimum and the alert fired on recovery); the
// minimum counts failures.
func TestAlertFailureRatioNotOnRecovery(t *testing.T) {
	t.Parallel()
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		e := newAlertEnv(t, tdb, WithRules(testdb.OnlyRule(alert.RuleSyncFailureRatio, "min_count: 3, threshold: 0.1")))
		e.runJobs(t, failing, tds.StatusDeadLetter, e.ingest(t, "1", "a"), e.ingest(t, "2", "b"))
		require.Equal(t, "", e.state(t, alert.RuleSyncFailureRatio), "two failures are under the minimum")
		// The recovery: a retried dead letter syncs.
		for _, id := range e.deadLetters(t) {
			_, err := e.q.RetryDeadLetter(t.Context(), id)
			require.NoError(t, err)
			e.runJobs(t, succeeding, tds.StatusCompleted, id)
		}
		require.Equal(t, "", e.state(t, alert.RuleSyncFailureRatio), "successes lift no sample over the minimum")

		e.runJobs(t, failing, tds.StatusDeadLetter, e.ingest(t, "3", "c"))
		require.Equal(t, StateFiring, e.state(t, alert.RuleSyncFailureRatio), "three failures of five attempts")
	})
}

// TestAlertDriftLastsWhileUnresolved: a run that found 34 differences
// fires drift, which lasts while any of them is unresolved, keeping the
// value it fired at and its peak, and resolves once the last is repaired
// without waiting for another run (issue 22: the stored value was the
// one at resolution, 3 instead of 34).
func TestAlertDriftLastsWhileUnresolved(t *testing.T) {
	t.Parallel()
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		e := newAlertEnv(t, tdb, WithRules(testdb.OnlyRule(alert.RuleDrift, "")))
		insertRun(t, e.db, store.RunCompleted, e.clock.Now(), 34, 34)
		require.Equal(t, StateFiring, e.state(t, alert.RuleDrift))

		resolveDrift(t, e.db, 31)
		e.clock.Advance(time.Hour)
		require.Equal(t, StateFiring, e.state(t, alert.RuleDrift), "3 differences are unresolved")
		got := e.only(t, alert.RuleDrift)[0]
		require.Equal(t, 3.0, got.Value)
		require.Equal(t, 34.0, *got.FiredValue)
		require.Equal(t, 34.0, *got.PeakValue)

		// A dry run finding more changes nothing.
		e.clock.Advance(time.Minute)
		dry := insertRun(t, e.db, store.RunCompleted, e.clock.Now(), 0, 50)
		_, err := e.db.NewUpdate().Model((*store.Run)(nil)).Set("dry_run = ?", true).Where("id = ?", dry).Exec(t.Context())
		require.NoError(t, err)
		resolveDrift(t, e.db, 2)
		require.Equal(t, StateFiring, e.state(t, alert.RuleDrift), "1 difference is unresolved")

		// The last repair ends it; no run finished since.
		_, err = e.db.NewUpdate().Model((*store.Drift)(nil)).Set("resolved = ?", true).Where("run_id <> ?", dry).Exec(t.Context())
		require.NoError(t, err)
		e.clock.Advance(time.Minute)
		require.Equal(t, StateResolved, e.state(t, alert.RuleDrift))
		got = e.only(t, alert.RuleDrift)[0]
		require.Equal(t, 0.0, got.Value, "the value that resolved it")
		require.Equal(t, 34.0, *got.FiredValue)
		require.Equal(t, 34.0, *got.PeakValue)
		require.Equal(t, e.clock.Now(), *got.ResolvedAt)

		// A run under the threshold starts nothing, however long its drift waits.
		e.clock.Advance(time.Minute)
		insertRun(t, e.db, store.RunCompleted, e.clock.Now(), 0, 5)
		require.Equal(t, StateResolved, e.state(t, alert.RuleDrift))
		require.Len(t, e.only(t, alert.RuleDrift), 1)
	})
}

// TestAlertNeedsConfirmation: one alert per run that waits for an
// operator to confirm its deletes, labelled with the run, whose
// notification says where to confirm it; it ends with the wait.
func TestAlertNeedsConfirmation(t *testing.T) {
	t.Parallel()
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		rcv := newReceiver(t)
		e := newAlertEnv(t, tdb, WithRules(testdb.OnlyRule(alert.RuleReconcileNeedsConfirmation, "")),
			WithWebhook(rcv.URL, testAlertSecret))
		insertRun(t, e.db, store.RunCompleted, e.clock.Now(), 0, 0)
		run := insertRun(t, e.db, runNeedsConfirmation, e.clock.Now(), 0, 50)
		id := strconv.FormatInt(run, 10)
		require.Equal(t, StateFiring, e.state(t, alert.RuleReconcileNeedsConfirmation))
		got := e.only(t, alert.RuleReconcileNeedsConfirmation)
		require.Len(t, got, 1)
		require.Equal(t, map[string]string{"run_id": id}, got[0].Labels)
		m := rcv.next(t)
		require.Equal(t, "firing", m.Status)
		require.Contains(t, m.Alerts[0].Annotations["description"], "A reconciliation run waits for an operator to confirm its deletes")
		require.Contains(t, m.Alerts[0].Annotations["description"], "/ui/reconcile/"+id)

		_, err := e.db.NewUpdate().Model((*store.Run)(nil)).Set("status = ?", store.RunCompleted).Where("id = ?", run).Exec(t.Context())
		require.NoError(t, err)
		require.Equal(t, StateResolved, e.state(t, alert.RuleReconcileNeedsConfirmation))
		require.Equal(t, "resolved", rcv.next(t).Status)
	})
}

// TestAlertLastNotifiedOnlyWhenSent: last_notified_at says a receiver
// accepted a notification; without a receiver, or with one that refuses,
// it stays empty (issue 22: it was set with no receiver configured).
func TestAlertLastNotifiedOnlyWhenSent(t *testing.T) {
	t.Parallel()
	rules := func() Option { return WithRules(testdb.OnlyRule(alert.RuleZohoDailyWebhooks, "threshold: 0")) }
	fire := func(t *testing.T, e *alertEnv) {
		t.Helper()
		e.ingest(t, "1", "a")
		require.Equal(t, StateFiring, e.state(t, alert.RuleZohoDailyWebhooks))
	}
	t.Run("no receiver", func(t *testing.T) {
		t.Parallel()
		testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
			e := newAlertEnv(t, tdb, rules())
			fire(t, e)
			require.NoError(t, e.a.Close(t.Context()))
			require.Nil(t, e.only(t, alert.RuleZohoDailyWebhooks)[0].LastNotifiedAt)
		})
	})
	t.Run("a receiver that refuses", func(t *testing.T) {
		t.Parallel()
		testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
			asked := make(chan struct{}, 10)
			refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				asked <- struct{}{}
				w.WriteHeader(http.StatusServiceUnavailable)
			}))
			t.Cleanup(refuse.Close)
			e := newAlertEnv(t, tdb, rules(), WithWebhook(refuse.URL, testAlertSecret))
			fire(t, e)
			select {
			case <-asked:
			case <-time.After(20 * time.Second):
				t.Fatal("the receiver was never asked")
			}
			// Closing at once gives up the retries: the delivery failed.
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			require.ErrorIs(t, e.a.Close(ctx), context.Canceled)
			require.Nil(t, e.only(t, alert.RuleZohoDailyWebhooks)[0].LastNotifiedAt)
		})
	})
	t.Run("a receiver that accepts", func(t *testing.T) {
		t.Parallel()
		testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
			rcv := newReceiver(t)
			e := newAlertEnv(t, tdb, rules(), WithWebhook(rcv.URL, testAlertSecret))
			fire(t, e)
			require.NoError(t, e.a.Close(t.Context())) // waits for the delivery
			require.Equal(t, 1, rcv.count())
			got := e.only(t, alert.RuleZohoDailyWebhooks)[0].LastNotifiedAt
			require.NotNil(t, got)
			require.Equal(t, e.clock.Now(), *got)
		})
	})
}
