package tdsalert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/alert"
	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/verify"
)

type alertEnv struct {
	*workerEnv
	a *Alerter
}

func newAlertEnv(t *testing.T, tdb *testdb.DB, opts ...Option) *alertEnv {
	t.Helper()
	e := &alertEnv{workerEnv: newWorkerEnv(t, tdb)}
	e.a = e.alerter(t, tdb.DB, opts...)
	return e
}

// alerter returns an Alerter on db with the env's clock, closed at the
// end of the test.
func (e *alertEnv) alerter(t *testing.T, db *bun.DB, opts ...Option) *Alerter {
	t.Helper()
	base := []Option{WithClock(e.clock.Now), WithLogger(testdb.QuietLogger)}
	a, err := New(db, append(base, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

// state evaluates once and returns the state of rule's newest alert ("" when none).
func (e *alertEnv) state(t *testing.T, rule string) string {
	t.Helper()
	require.NoError(t, e.a.Evaluate(t.Context()))
	alerts, err := e.a.Alerts(t.Context(), "")
	require.NoError(t, err)
	for _, a := range alerts {
		if a.Rule == rule {
			return a.State
		}
	}
	return ""
}

// runJobs runs a Worker with s until every job in ids has status st.
func (e *alertEnv) runJobs(t *testing.T, s tds.Syncer, st tds.Status, ids ...int64) {
	t.Helper()
	stop := testdb.StartWorker(t, e.db, e.clock.Now, s)
	for _, id := range ids {
		e.waitStatus(t, id, st)
	}
	stop()
}

var failing = tds.SyncFunc(func(context.Context, bun.Tx, *tds.SyncJob) error { return tds.Permanent(errors.New("no")) })
var succeeding = tds.SyncFunc(func(context.Context, bun.Tx, *tds.SyncJob) error { return nil })

// insertRun inserts a reconciliation run of the default source with
// status, finished at finished, and drift drift rows, none resolved; it
// returns the run's id.
func insertRun(t *testing.T, db *bun.DB, status string, finished time.Time, repaired int64, drift int) int64 {
	t.Helper()
	r := &store.Run{
		Source: tds.DefaultSource, Mode: "incremental", EntityTypes: json.RawMessage(`["product"]`), Status: status,
		StartedAt: finished.Add(-time.Minute), FinishedAt: &finished, Cursor: json.RawMessage(`{}`), Repaired: repaired,
	}
	_, err := db.NewInsert().Model(r).ExcludeColumn("id").Returning("id").Exec(t.Context())
	require.NoError(t, err)
	st, err := store.For(db)
	require.NoError(t, err)
	rows := make([]store.Drift, drift)
	for i := range rows {
		rows[i] = store.Drift{RunID: r.ID, EntityType: "product", EntityID: fmt.Sprintf("p%d", i), Kind: "missing_local", DetectedAt: finished}
	}
	require.NoError(t, st.AddDrift(t.Context(), db, rows))
	return r.ID
}

// runNeedsConfirmation is the status of a run waiting for an operator to
// confirm its deletes.
const runNeedsConfirmation = "needs_confirmation"

// resolveDrift marks n unresolved drift rows (of any run) resolved, as
// repairs applied would.
func resolveDrift(t *testing.T, db *bun.DB, n int64) {
	t.Helper()
	res, err := db.NewUpdate().Model((*store.Drift)(nil)).Set("resolved = ?", true).
		Where("id IN (?)", db.NewSelect().Model((*store.Drift)(nil)).Column("id").
			Where("NOT resolved").Order("id").Limit(n)).Exec(t.Context())
	require.NoError(t, err)
	got, err := res.RowsAffected()
	require.NoError(t, err)
	require.EqualValues(t, n, got)
}

// deadLetters returns the ids of the dead letters.
func (e *alertEnv) deadLetters(t *testing.T) []int64 {
	t.Helper()
	jobs, err := e.q.ListDeadLetters(t.Context(), tds.DeadLetterFilter{})
	require.NoError(t, err)
	var ids []int64
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	return ids
}

// TestAlertRulesFireAndResolve drives each built-in rule through firing
// and resolution with a test clock, on both dialects.
func TestAlertRulesFireAndResolve(t *testing.T) {
	cases := []struct {
		rule, fields string
		fire         func(t *testing.T, e *alertEnv)
		resolve      func(t *testing.T, e *alertEnv)
	}{
		{alert.RuleQueueOldestPending, "threshold: 300s, for: 60s",
			func(t *testing.T, e *alertEnv) {
				e.ingest(t, "1", "a") // no worker: it waits
				require.Equal(t, "", e.state(t, alert.RuleQueueOldestPending))
				e.clock.Advance(6 * time.Minute)
				require.Equal(t, StatePending, e.state(t, alert.RuleQueueOldestPending))
				e.clock.Advance(time.Minute)
			},
			func(t *testing.T, e *alertEnv) {
				var ids []int64
				jobs, err := e.q.ListPending(t.Context(), 10)
				require.NoError(t, err)
				for _, j := range jobs {
					ids = append(ids, j.ID)
				}
				e.runJobs(t, succeeding, tds.StatusCompleted, ids...)
			}},
		{alert.RuleDeadLetters, "",
			func(t *testing.T, e *alertEnv) {
				e.runJobs(t, failing, tds.StatusDeadLetter, e.ingest(t, "1", "a"))
			},
			func(t *testing.T, e *alertEnv) {
				for _, id := range e.deadLetters(t) {
					require.NoError(t, e.q.DiscardDeadLetter(t.Context(), id, "test"))
				}
			}},
		{alert.RuleSyncFailureRatio, "min_count: 2, threshold: 0.4",
			func(t *testing.T, e *alertEnv) {
				e.runJobs(t, succeeding, tds.StatusCompleted, e.ingest(t, "1", "a"))
				e.runJobs(t, failing, tds.StatusDeadLetter, e.ingest(t, "2", "b"))
				require.Equal(t, "", e.state(t, alert.RuleSyncFailureRatio), "one failure is under min_count")
				e.runJobs(t, failing, tds.StatusDeadLetter, e.ingest(t, "3", "c"))
			},
			func(t *testing.T, e *alertEnv) { e.clock.Advance(6 * time.Minute) }},
		{alert.RuleAuthFailures, "threshold: 2",
			func(t *testing.T, e *alertEnv) {
				h := testdb.Handler(t, e.db, tds.WithWebhookKeys(testdb.WebhookKey), tds.WithClock(e.clock.Now),
					tds.WithWebhookObserver(e.a.ObserveWebhook))
				for range 3 {
					req := httptest.NewRequest(http.MethodPost, "/webhooks/products", strings.NewReader(`{}`))
					req.Header.Set("X-Webhook-Key", "wrong")
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					require.Equal(t, http.StatusUnauthorized, rec.Code)
				}
			},
			func(t *testing.T, e *alertEnv) { e.clock.Advance(6 * time.Minute) }},
		{alert.RuleSourceSilent, "threshold: 1h",
			func(t *testing.T, e *alertEnv) {
				e.ingest(t, "1", "a")
				require.Equal(t, "", e.state(t, alert.RuleSourceSilent))
				e.clock.Advance(2 * time.Hour)
			},
			func(t *testing.T, e *alertEnv) { e.ingest(t, "2", "b") }},
		{alert.RuleReconcileStale, "",
			func(t *testing.T, e *alertEnv) {
				// Reconciliation scheduled every hour.
				e.a = e.alerter(t, e.db, WithRules(testdb.OnlyRule(alert.RuleReconcileStale, "")), WithReconcileInterval(time.Hour))
				require.Equal(t, "", e.state(t, alert.RuleReconcileStale))
				e.clock.Advance(2*time.Hour + time.Second)
			},
			func(t *testing.T, e *alertEnv) { insertRun(t, e.db, store.RunCompleted, e.clock.Now(), 0, 0) }},
		{alert.RuleDrift, "",
			func(t *testing.T, e *alertEnv) { insertRun(t, e.db, store.RunCompleted, e.clock.Now(), 11, 11) },
			func(t *testing.T, e *alertEnv) { resolveDrift(t, e.db, 11) }},
		{alert.RuleReconcileNeedsConfirmation, "",
			func(t *testing.T, e *alertEnv) { insertRun(t, e.db, runNeedsConfirmation, e.clock.Now(), 0, 50) },
			func(t *testing.T, e *alertEnv) {
				_, err := e.db.NewUpdate().Model((*store.Run)(nil)).Set("status = ?", store.RunCompleted).
					Where("status = ?", runNeedsConfirmation).Exec(t.Context())
				require.NoError(t, err)
			}},
		{alert.RuleZohoRateLimited, "",
			func(t *testing.T, e *alertEnv) {
				h := e.a.ReconcileHooks()
				h.APIResponse("GET /items", http.StatusOK, 0)
				h.APIResponse("GET /items", http.StatusTooManyRequests, 0)
			},
			func(t *testing.T, e *alertEnv) { e.clock.Advance(16 * time.Minute) }},
		{alert.RuleZohoDailyWebhooks, "threshold: 1",
			func(t *testing.T, e *alertEnv) {
				e.ingest(t, "1", "a")
				require.Equal(t, "", e.state(t, alert.RuleZohoDailyWebhooks))
				e.ingest(t, "2", "b")
			},
			func(t *testing.T, e *alertEnv) { e.clock.Advance(24 * time.Hour) }},
		{alert.RuleZohoAuth, "",
			func(t *testing.T, e *alertEnv) {
				h := e.a.ReconcileHooks()
				h.TokenRefresh(nil)
				require.Equal(t, "", e.state(t, alert.RuleZohoAuth))
				h.TokenRefresh(errors.New("invalid_code"))
			},
			func(t *testing.T, e *alertEnv) { e.clock.Advance(16 * time.Minute) }},
	}
	require.Len(t, cases, len(alert.DefaultRules()), "every built-in rule has a scenario")
	for _, tc := range cases {
		t.Run(tc.rule, func(t *testing.T) {
			t.Parallel()
			testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
				e := newAlertEnv(t, tdb, WithRules(testdb.OnlyRule(tc.rule, tc.fields)))
				tc.fire(t, e)
				require.Equal(t, StateFiring, e.state(t, tc.rule))
				tc.resolve(t, e)
				require.Equal(t, StateResolved, e.state(t, tc.rule))
				firing, err := e.a.Alerts(t.Context(), StateFiring)
				require.NoError(t, err)
				require.Empty(t, firing)
			})
		})
	}
}

// receiver records the Alertmanager payloads it is sent.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	msgs []alert.WebhookMessage
	got  chan struct{}
	t    *testing.T
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{got: make(chan struct{}, 100), t: t}
	key, err := verify.DecodeStandardSecret(testAlertSecret)
	require.NoError(t, err)
	v := verify.NewStandard([][]byte{key}, 5*time.Minute)
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := v.Verify(req.Header, url.Values{}, body, time.Now()); err != nil {
			t.Errorf("bad signature: %v", err)
		}
		var m alert.WebhookMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("bad payload: %v", err)
		}
		r.mu.Lock()
		if testing.Verbose() {
			t.Logf("received %s %s", m.Status, body)
		}
		r.msgs = append(r.msgs, m)
		r.mu.Unlock()
		r.got <- struct{}{}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) next(t *testing.T) alert.WebhookMessage {
	t.Helper()
	select {
	case <-r.got:
	case <-time.After(20 * time.Second):
		t.Fatal("no notification")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs[len(r.msgs)-1]
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func TestAlertWebhookFiringThenResolved(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		rcv := newReceiver(t)
		e := newAlertEnv(t, tdb, WithRules(testdb.OnlyRule(alert.RuleZohoDailyWebhooks, "threshold: 0")),
			WithWebhook(rcv.URL, testAlertSecret))
		e.ingest(t, "1", "a")
		require.NoError(t, e.a.Evaluate(t.Context()))
		m := rcv.next(t)
		require.Equal(t, "4", m.Version)
		require.Equal(t, "firing", m.Status)
		require.Len(t, m.Alerts, 1)
		require.Equal(t, alert.RuleZohoDailyWebhooks, m.Alerts[0].Labels["alertname"])
		require.NotEmpty(t, m.Alerts[0].Fingerprint)

		e.clock.Advance(24 * time.Hour)
		require.NoError(t, e.a.Evaluate(t.Context()))
		m = rcv.next(t)
		require.Equal(t, "resolved", m.Status)
		require.Equal(t, "resolved", m.Alerts[0].Status)
	})
}

func TestAlertTwoAlertersSendOneNotification(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		rcv := newReceiver(t)
		e := newAlertEnv(t, tdb, WithRules(testdb.OnlyRule(alert.RuleZohoDailyWebhooks, "threshold: 0")),
			WithWebhook(rcv.URL, testAlertSecret))
		db2, err := tds.Open(t.Context(), tdb.URL)
		require.NoError(t, err)
		t.Cleanup(func() { _ = db2.Close() })
		a2 := e.alerter(t, db2, WithRules(testdb.OnlyRule(alert.RuleZohoDailyWebhooks, "threshold: 0")),
			WithWebhook(rcv.URL, testAlertSecret))
		e.ingest(t, "1", "a")

		start := make(chan struct{})
		errs := make(chan error, 2)
		for _, a := range []*Alerter{e.a, a2} {
			go func() {
				<-start
				errs <- a.Evaluate(context.Background())
			}()
		}
		close(start)
		for range 2 {
			if err := <-errs; err != nil && !errors.Is(err, tds.ErrDatabaseUnavailable) {
				require.NoError(t, err)
			}
		}
		// Close waits for every queued delivery.
		require.NoError(t, e.a.Close(t.Context()))
		require.NoError(t, a2.Close(t.Context()))
		require.Equal(t, 1, rcv.count())
		firing, err := e.a.Alerts(t.Context(), StateFiring)
		require.NoError(t, err)
		require.Len(t, firing, 1)
	})
}

func TestAlertRestartDoesNotResendBeforeRepeat(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		rcv := newReceiver(t)
		// A reader is read once: each Alerter gets its own.
		opts := func() []Option {
			return []Option{WithRules(testdb.OnlyRule(alert.RuleZohoDailyWebhooks, "threshold: 0")),
				WithWebhook(rcv.URL, testAlertSecret), WithRepeat(4 * time.Hour)}
		}
		e := newAlertEnv(t, tdb, opts()...)
		e.clock.Advance(-9 * time.Hour) // 01:00, so that the day lasts
		e.ingest(t, "1", "a")
		require.NoError(t, e.a.Evaluate(t.Context()))
		require.NoError(t, e.a.Close(t.Context()))
		require.Equal(t, 1, rcv.count())

		// A new process, an hour later: the alert is firing and was sent.
		e.clock.Advance(time.Hour)
		a2 := e.alerter(t, tdb.DB, opts()...)
		require.NoError(t, a2.Evaluate(t.Context()))
		e.clock.Advance(2 * time.Hour)
		require.NoError(t, a2.Evaluate(t.Context()))
		require.NoError(t, a2.Close(t.Context()))
		require.Equal(t, 1, rcv.count())

		// Past the repeat interval it is sent again.
		a3 := e.alerter(t, tdb.DB, opts()...)
		e.clock.Advance(time.Hour)
		require.NoError(t, a3.Evaluate(t.Context()))
		require.NoError(t, a3.Close(t.Context()))
		require.Equal(t, 2, rcv.count())
	})
}

func TestAlertSlowNotifierDelaysNothing(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		release := make(chan struct{})
		stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(stuck.Close)
		t.Cleanup(func() { close(release) })
		slack := make(chan struct{}, 10)
		fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { slack <- struct{}{} }))
		t.Cleanup(fast.Close)

		e := newAlertEnv(t, tdb, WithRules(testdb.OnlyRule(alert.RuleZohoDailyWebhooks, "threshold: 0")),
			WithWebhook(stuck.URL, ""), WithSlack(fast.URL), WithNotifyTimeout(time.Hour))
		e.ingest(t, "1", "a")
		begin := time.Now()
		require.NoError(t, e.a.Evaluate(t.Context()))
		e.clock.Advance(24 * time.Hour)
		require.NoError(t, e.a.Evaluate(t.Context()))
		require.Less(t, time.Since(begin), 5*time.Second, "evaluations wait for no receiver")
		for range 2 { // firing, then resolved, through the other notifier
			select {
			case <-slack:
			case <-time.After(20 * time.Second):
				t.Fatal("the Slack notifier was held up by the stuck webhook")
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, e.a.Close(ctx), context.DeadlineExceeded)
	})
}

// TestAlertWorkerLeaderEvaluates: a Worker given the Alerter's Task
// evaluates the rules in its housekeeping, without anyone calling Evaluate.
func TestAlertWorkerLeaderEvaluates(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		e := newAlertEnv(t, tdb, WithRules(testdb.OnlyRule(alert.RuleZohoDailyWebhooks, "threshold: 0")),
			WithEvalInterval(10*time.Millisecond))
		e.ingest(t, "1", "a")
		testdb.StartWorker(t, e.db, e.clock.Now, succeeding, tds.WithLeaderTask(e.a.Task()))
		require.Eventually(t, func() bool {
			firing, err := e.a.Alerts(t.Context(), StateFiring)
			require.NoError(t, err)
			return len(firing) == 1
		}, 20*time.Second, 5*time.Millisecond)
	})
}
