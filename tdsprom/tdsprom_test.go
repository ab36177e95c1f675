package tdsprom

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/tdsreconcile"
	"github.com/tdscore/tds/tdstest"
)

// histogramCount is the sample count of the histogram name with labels.
func histogramCount(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) uint64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if len(got) == len(labels) {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

// TestMetricsAfterWorkload runs a known workload through a Handler, a
// Worker and a Reconciler sharing one registry, and checks every metric.
func TestMetricsAfterWorkload(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		reg := prometheus.NewRegistry()
		m, err := New(reg)
		require.NoError(t, err)
		e := newReconcileEnv(t, tdb, tdsreconcile.WithHooks(m.ReconcileHooks()))
		require.NoError(t, m.WatchDatabase(e.db, WithClock(e.clock.Now), WithLogger(testdb.QuietLogger)))
		h := testdb.Handler(t, tdb.DB, tds.WithWebhookObserver(m.ObserveWebhook), tds.WithBatchObserver(m.ObserveBatch),
			tds.WithClock(e.clock.Now), tds.WithWebhookKeys(testdb.WebhookKey), tds.WithMaxBodyBytes(4096))

		// Ingest: 4 accepted, 2 duplicates, 1 invalid, 1 unauthorized, 1
		// too large, 1 unsupported type, 1 malformed, 1 unknown route.
		for route, f := range map[string]string{"products": "product.json", "customers": "customer.json",
			"invoices": "invoice.json", "bills": "bill.json"} {
			require.Equal(t, http.StatusOK, testdb.Webhook(t, h, route, testdb.Fixture(t, f)).Status)
		}
		for range 2 {
			require.Equal(t, true, testdb.Webhook(t, h, "products", testdb.Fixture(t, "product.json")).Duplicate)
		}
		require.Equal(t, http.StatusUnprocessableEntity, testdb.Webhook(t, h, "products", testdb.Fixture(t, "invalid_product_missing_name.json")).Status)
		require.Equal(t, http.StatusUnauthorized, testdb.Webhook(t, h, "products", testdb.Fixture(t, "product.json"), tdstest.WebhookKey("wrong-key")).Status)
		require.Equal(t, http.StatusRequestEntityTooLarge, testdb.Webhook(t, h, "products", []byte(`{"x":"`+strings.Repeat("a", 5000)+`"}`)).Status)
		require.Equal(t, http.StatusUnsupportedMediaType, testdb.Webhook(t, h, "products", nil, tdstest.Body("text/plain", []byte("x"))).Status)
		require.Equal(t, http.StatusBadRequest, testdb.Webhook(t, h, "products", []byte("{")).Status)
		require.Equal(t, http.StatusNotFound, testdb.Webhook(t, h, "nowhere", testdb.Fixture(t, "product.json")).Status)

		// Sync: the product synced, the bill superseded, the customer
		// dead-lettered, the invoice failed once (its retry is not due:
		// the clock stands still).
		var seen atomic.Int64
		syncer := tds.SyncFunc(func(ctx context.Context, tx bun.Tx, job *tds.SyncJob) error {
			switch job.EntityType {
			case "bill":
				job.Supersede("newer")
			case "customer":
				return tds.Permanent(errors.New("refused"))
			case "invoice":
				return errors.New("try later")
			}
			return nil
		})
		stop := testdb.StartWorker(t, e.db, e.clock.Now, syncer, tds.WithObserver(m.ObserveJob), tds.WithObserver(func(tds.JobResult) { seen.Add(1) }))
		require.Eventually(t, func() bool { return seen.Load() == 4 }, 30*time.Second, 5*time.Millisecond)
		stop()

		// Reconciliation: Zoho has two products tds never got, and not the
		// one it did.
		e.fake.Put("items", testdb.ProductRecord("p-1", e.clock.Now().Add(-time.Hour), 0))
		e.fake.Put("items", testdb.ProductRecord("p-2", e.clock.Now().Add(-time.Hour), 0))
		run, err := e.rc.Run(ctx, tdsreconcile.Request{Mode: tdsreconcile.Full, EntityTypes: []string{"product"}})
		require.NoError(t, err)
		require.Equal(t, tdsreconcile.RunCompleted, run.Status, run.Error)
		require.Equal(t, tdsreconcile.DriftCounts{MissingLocal: 2, MissingRemote: 1}, run.Counts)
		require.Equal(t, int64(3), run.Repaired)
		require.Equal(t, int64(4), run.APICalls) // a list page, three details
		end := e.clock.Now()
		e.clock.Advance(90 * time.Second)

		expected := fmt.Sprintf(`
# HELP tds_ingest_requests_total Webhook requests answered, by route and outcome.
# TYPE tds_ingest_requests_total counter
tds_ingest_requests_total{outcome="accepted",route="bills"} 1
tds_ingest_requests_total{outcome="accepted",route="customers"} 1
tds_ingest_requests_total{outcome="accepted",route="invoices"} 1
tds_ingest_requests_total{outcome="accepted",route="products"} 1
tds_ingest_requests_total{outcome="duplicate",route="products"} 2
tds_ingest_requests_total{outcome="invalid",route="products"} 1
tds_ingest_requests_total{outcome="malformed",route="other"} 1
tds_ingest_requests_total{outcome="malformed",route="products"} 1
tds_ingest_requests_total{outcome="too_large",route="products"} 1
tds_ingest_requests_total{outcome="unauthorized",route="products"} 1
tds_ingest_requests_total{outcome="unsupported_type",route="products"} 1
# HELP tds_ingest_batch_size Events stored by one group-commit transaction.
# TYPE tds_ingest_batch_size histogram
tds_ingest_batch_size_bucket{le="1"} 7
tds_ingest_batch_size_bucket{le="2"} 7
tds_ingest_batch_size_bucket{le="4"} 7
tds_ingest_batch_size_bucket{le="8"} 7
tds_ingest_batch_size_bucket{le="16"} 7
tds_ingest_batch_size_bucket{le="32"} 7
tds_ingest_batch_size_bucket{le="64"} 7
tds_ingest_batch_size_bucket{le="128"} 7
tds_ingest_batch_size_bucket{le="256"} 7
tds_ingest_batch_size_bucket{le="+Inf"} 7
tds_ingest_batch_size_sum 7
tds_ingest_batch_size_count 7
# HELP tds_sync_attempts_total Sync attempts, by entity type and outcome (synced, superseded, retry, dead_letter).
# TYPE tds_sync_attempts_total counter
tds_sync_attempts_total{entity_type="bill",outcome="superseded"} 1
tds_sync_attempts_total{entity_type="customer",outcome="dead_letter"} 1
tds_sync_attempts_total{entity_type="invoice",outcome="retry"} 1
tds_sync_attempts_total{entity_type="product",outcome="synced"} 1
# HELP tds_queue_blocked_jobs Jobs blocked behind an earlier job of their entity.
# TYPE tds_queue_blocked_jobs gauge
tds_queue_blocked_jobs 0
# HELP tds_queue_oldest_pending_age_seconds Age of the oldest job waiting in the queue (pending or retry); 0 when none waits.
# TYPE tds_queue_oldest_pending_age_seconds gauge
tds_queue_oldest_pending_age_seconds 90
# HELP tds_zoho_webhooks_today Events received today (UTC) from the zoho source, against Zoho's 1,000 webhooks a day.
# TYPE tds_zoho_webhooks_today gauge
tds_zoho_webhooks_today 5
# HELP tds_zoho_api_calls_today Zoho API calls made today (UTC) by reconciliation for the zoho source, against its daily budget.
# TYPE tds_zoho_api_calls_today gauge
tds_zoho_api_calls_today 4
# HELP tds_reconcile_paused 1 while a reconciliation run of the zoho source is paused at the daily budget, else 0.
# TYPE tds_reconcile_paused gauge
tds_reconcile_paused 0
# HELP tds_reconcile_runs_total Reconciliation runs ended, by mode and status.
# TYPE tds_reconcile_runs_total counter
tds_reconcile_runs_total{mode="full",status="completed"} 1
# HELP tds_reconcile_last_success_timestamp_seconds When the last reconciliation run that completed (not a dry run) ended, as a Unix time.
# TYPE tds_reconcile_last_success_timestamp_seconds gauge
tds_reconcile_last_success_timestamp_seconds{mode="full"} %d
# HELP tds_drift_detected_total Differences between the source and what tds applied, found by reconciliation.
# TYPE tds_drift_detected_total counter
tds_drift_detected_total{entity_type="product",kind="missing_local"} 2
tds_drift_detected_total{entity_type="product",kind="missing_remote"} 1
# HELP tds_drift_repaired_total Differences repaired by ingesting the source's record again.
# TYPE tds_drift_repaired_total counter
tds_drift_repaired_total{entity_type="product",kind="missing_local"} 2
tds_drift_repaired_total{entity_type="product",kind="missing_remote"} 1
# HELP tds_zoho_api_requests_total Zoho API responses, by endpoint and status class (2xx, 4xx, 429, 5xx).
# TYPE tds_zoho_api_requests_total counter
tds_zoho_api_requests_total{code="2xx",endpoint="GET /items"} 1
tds_zoho_api_requests_total{code="2xx",endpoint="GET /items/{id}"} 2
tds_zoho_api_requests_total{code="4xx",endpoint="GET /items/{id}"} 1
# HELP tds_zoho_token_refreshes_total Zoho OAuth token refreshes, by outcome (success, failure).
# TYPE tds_zoho_token_refreshes_total counter
tds_zoho_token_refreshes_total{outcome="success"} 1
`, end.Unix())
		require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(expected),
			"tds_ingest_requests_total", "tds_ingest_batch_size", "tds_sync_attempts_total",
			"tds_queue_blocked_jobs", "tds_queue_oldest_pending_age_seconds", "tds_zoho_webhooks_today",
			"tds_zoho_api_calls_today", "tds_reconcile_paused",
			"tds_reconcile_runs_total", "tds_reconcile_last_success_timestamp_seconds",
			"tds_drift_detected_total", "tds_drift_repaired_total", "tds_zoho_api_requests_total", "tds_zoho_token_refreshes_total"))

		// Jobs: the unfinished ones by status and priority, and 0 for
		// every other status and registered priority.
		wantJobs := zeroJobs(tds.ZohoRegistry())
		wantJobs[jobKey("dead_letter", testdb.EntityType(t, "customer").Priority)] = 1
		wantJobs[jobKey("pending", testdb.EntityType(t, "product").Priority)] = 3
		wantJobs[jobKey("retry", testdb.EntityType(t, "invoice").Priority)] = 1
		require.Equal(t, wantJobs, queueJobs(t, reg))

		// Dead letters: every registered type has its series.
		dead := map[string]float64{}
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "tds_dead_letters" {
				for _, m := range mf.GetMetric() {
					dead[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
		require.Len(t, dead, len(tds.ZohoRegistry().Types()))
		require.Equal(t, 1.0, dead["customer"])
		require.Equal(t, 0.0, dead["product"])

		// Durations: the clock stood still, so every sync, latency and run
		// took 0 s; the ingest durations are real.
		for _, c := range []struct{ et, outcome string }{{"product", "synced"}, {"bill", "superseded"}, {"customer", "dead_letter"}, {"invoice", "retry"}} {
			require.Equal(t, uint64(1), histogramCount(t, reg, "tds_sync_duration_seconds", map[string]string{"entity_type": c.et, "outcome": c.outcome}), c)
		}
		require.Equal(t, uint64(1), histogramCount(t, reg, "tds_end_to_end_latency_seconds", map[string]string{"entity_type": "product"}))
		require.Equal(t, uint64(1), histogramCount(t, reg, "tds_end_to_end_latency_seconds", map[string]string{"entity_type": "bill"}))
		require.Equal(t, uint64(0), histogramCount(t, reg, "tds_end_to_end_latency_seconds", map[string]string{"entity_type": "invoice"}))
		require.Equal(t, uint64(1), histogramCount(t, reg, "tds_reconcile_duration_seconds", map[string]string{"mode": "full", "status": "completed"}))
		require.Equal(t, uint64(8), histogramCount(t, reg, "tds_ingest_duration_seconds", map[string]string{"route": "products"}))
		require.Equal(t, uint64(1), histogramCount(t, reg, "tds_ingest_duration_seconds", map[string]string{"route": "other"}))
		require.Equal(t, 2.0, testutil.ToFloat64(m.ingestRequests.WithLabelValues("products", "duplicate")))
		require.Equal(t, 11, testutil.CollectAndCount(m.ingestRequests))

		problems, err := testutil.GatherAndLint(reg)
		require.NoError(t, err)
		require.Empty(t, problems)
	})
}

// TestMetricsReconcilePaused: a run paused at the daily budget shows as
// tds_reconcile_paused 1, with the day's calls equal to the budget.
func TestMetricsReconcilePaused(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		reg := prometheus.NewRegistry()
		m, err := New(reg)
		require.NoError(t, err)
		e := newReconcileEnv(t, tdb)
		testdb.PutProducts(e.fake, 5, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Second)
		rc := e.newReconcilerAPI(t, budgetOf(3), tdsreconcile.WithHooks(m.ReconcileHooks()))
		require.NoError(t, m.WatchDatabase(e.db, WithClock(e.clock.Now), WithLogger(testdb.QuietLogger)))
		_, err = rc.Run(context.Background(), tdsreconcile.Request{Mode: tdsreconcile.Full, EntityTypes: productsOnly})
		require.ErrorIs(t, err, tdsreconcile.ErrBudgetExhausted)
		require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP tds_zoho_api_calls_today Zoho API calls made today (UTC) by reconciliation for the zoho source, against its daily budget.
# TYPE tds_zoho_api_calls_today gauge
tds_zoho_api_calls_today 3
# HELP tds_reconcile_paused 1 while a reconciliation run of the zoho source is paused at the daily budget, else 0.
# TYPE tds_reconcile_paused gauge
tds_reconcile_paused 1
`), "tds_zoho_api_calls_today", "tds_reconcile_paused"))
	})
}

// TestMetricsIngestRefusedAndUnavailable: the gate's 429 and a database
// that is gone.
func TestMetricsIngestRefusedAndUnavailable(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		reg := prometheus.NewRegistry()
		m, err := New(reg)
		require.NoError(t, err)
		h := testdb.Handler(t, tdb.DB, tds.WithWebhookObserver(m.ObserveWebhook), tds.WithBatchObserver(m.ObserveBatch),
			tds.WithWebhookKeys(testdb.WebhookKey), tds.WithRefusalLimit(1, time.Minute))
		for _, want := range []int{http.StatusUnauthorized, http.StatusTooManyRequests, http.StatusTooManyRequests} {
			require.Equal(t, want, testdb.Webhook(t, h, "products", testdb.Fixture(t, "product.json"), tdstest.WebhookKey("wrong-key")).Status)
		}

		db, err := tds.Open(context.Background(), tdb.URL)
		require.NoError(t, err)
		down, err := tds.NewHandler(db, tds.WithWebhookKeys(testdb.WebhookKey), tds.WithLogger(testdb.QuietLogger),
			tds.WithWebhookObserver(m.ObserveWebhook), tds.WithBatchObserver(m.ObserveBatch))
		require.NoError(t, err)
		defer down.Close()
		require.NoError(t, db.Close())
		require.Equal(t, http.StatusServiceUnavailable, testdb.Webhook(t, down, "products", testdb.Fixture(t, "product.json")).Status)

		require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP tds_ingest_requests_total Webhook requests answered, by route and outcome.
# TYPE tds_ingest_requests_total counter
tds_ingest_requests_total{outcome="rate_limited",route="products"} 2
tds_ingest_requests_total{outcome="unauthorized",route="products"} 1
tds_ingest_requests_total{outcome="unavailable",route="products"} 1
`), "tds_ingest_requests_total"))
	})
}

func TestIngestOutcomes(t *testing.T) {
	for status, want := range map[int]string{
		0: "error", http.StatusOK: "accepted", http.StatusUnprocessableEntity: "invalid", http.StatusBadRequest: "malformed",
		http.StatusNotFound: "malformed", http.StatusUnauthorized: "unauthorized", http.StatusRequestEntityTooLarge: "too_large",
		http.StatusUnsupportedMediaType: "unsupported_type", http.StatusTooManyRequests: "rate_limited",
		http.StatusServiceUnavailable: "unavailable", http.StatusInternalServerError: "error",
	} {
		require.Equal(t, want, outcome(tds.WebhookResult{Status: status}), status)
	}
	require.Equal(t, "duplicate", outcome(tds.WebhookResult{Status: http.StatusOK, Duplicate: true}))
	for status, want := range map[int]string{0: "", 200: "2xx", 204: "2xx", 301: "", 400: "4xx", 404: "4xx", 429: "429", 500: "5xx", 503: "5xx"} {
		require.Equal(t, want, statusClass(status), status)
	}
}

// metricsReadCounter counts the reads of the database metrics (by their first
// statement).
type metricsReadCounter struct{ n atomic.Int64 }

func (c *metricsReadCounter) BeforeQuery(ctx context.Context, q *bun.QueryEvent) context.Context {
	if strings.Contains(q.Query, "status, priority, COUNT(*)") {
		c.n.Add(1)
	}
	return ctx
}

func (c *metricsReadCounter) AfterQuery(context.Context, *bun.QueryEvent) {}

// TestMetricsDatabaseReadOncePerWindow: ten concurrent scrapes, again and
// again within DatabaseMaxAge, read the database once.
func TestMetricsDatabaseReadOncePerWindow(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		reads := &metricsReadCounter{}
		db := tdb.DB.WithQueryHook(reads)
		c := newDBCollector(db, testdb.Store(t, db), &dbSettings{registry: tds.ZohoRegistry(), now: time.Now, logger: testdb.QuietLogger})
		wall := testkit.NewClock()
		c.wall = wall.Now
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)

		scrape := func() {
			var wg sync.WaitGroup
			for range 10 {
				wg.Go(func() {
					n, err := testutil.GatherAndCount(reg, "tds_queue_blocked_jobs")
					require.NoError(t, err)
					require.Equal(t, 1, n)
				})
			}
			wg.Wait()
		}
		scrape()
		require.Equal(t, int64(1), reads.n.Load())
		wall.Advance(DatabaseMaxAge - time.Millisecond)
		scrape()
		require.Equal(t, int64(1), reads.n.Load())
		wall.Advance(time.Millisecond)
		scrape()
		require.Equal(t, int64(2), reads.n.Load())
	})
}

// TestNewSharesOneSet: the Metrics of one registerer share its metrics,
// whichever components they are given to, and the database metrics are
// registered once.
func TestNewSharesOneSet(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		reg := prometheus.NewRegistry()
		m1, err := New(reg)
		require.NoError(t, err)
		m2, err := New(reg)
		require.NoError(t, err)
		testdb.Handler(t, tdb.DB, tds.WithWebhookObserver(m1.ObserveWebhook), tds.WithBatchObserver(m1.ObserveBatch),
			tds.WithWebhookKeys(testdb.WebhookKey))
		p, err := tds.NewProcessor(tdb.DB, tds.WithBatchObserver(m2.ObserveBatch))
		require.NoError(t, err)
		defer p.Close()
		_, err = tds.NewWorker(tdb.DB, tds.SyncFunc(func(context.Context, bun.Tx, *tds.SyncJob) error { return nil }),
			tds.WithObserver(m2.ObserveJob))
		require.NoError(t, err)
		require.Same(t, m1.syncAttempts, m2.syncAttempts)
		require.Same(t, m1.ingestBatch, m2.ingestBatch)
		require.NoError(t, m1.WatchDatabase(tdb.DB))
		require.NoError(t, m2.WatchDatabase(tdb.DB))
		n, err := testutil.GatherAndCount(reg, "tds_queue_blocked_jobs")
		require.NoError(t, err)
		require.Equal(t, 1, n)

		_, err = New(nil)
		require.ErrorContains(t, err, "tdsprom: New: registerer is nil")
	})
}

// TestWatchDatabaseOptions: bad options are errors naming them, every one
// at once; the zero option does nothing.
func TestWatchDatabaseOptions(t *testing.T) {
	db := tdstest.SQLite(t)
	m, err := New(prometheus.NewRegistry())
	require.NoError(t, err)
	require.EqualError(t, m.WatchDatabase(nil), "tdsprom: WatchDatabase: db is nil")
	require.EqualError(t, m.WatchDatabase(db, WithRegistry(nil), WithClock(nil), WithLogger(nil)),
		"tdsprom: WithRegistry: registry is nil\ntdsprom: WithClock: clock is nil\ntdsprom: WithLogger: logger is nil")
	require.NoError(t, m.WatchDatabase(db, DatabaseOption{}, WithRegistry(tds.ZohoRegistry()), WithClock(time.Now),
		WithLogger(testdb.QuietLogger)))
}

func jobKey(status string, priority int) string { return fmt.Sprintf("%s/%d", status, priority) }

// zeroJobs is tds_queue_jobs of an empty queue: every unfinished status
// at every priority of reg's types.
func zeroJobs(reg *tds.Registry) map[string]float64 {
	out := map[string]float64{}
	for _, typ := range reg.Types() {
		for _, st := range []string{"pending", "processing", "retry", "dead_letter"} {
			out[jobKey(st, typ.Priority)] = 0
		}
	}
	return out
}

// queueJobs gathers tds_queue_jobs by status and priority.
func queueJobs(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "tds_queue_jobs" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			out[l["status"]+"/"+l["priority"]] = m.GetGauge().GetValue()
		}
	}
	return out
}

// TestQueueJobsZeroWhenEmpty: with no unfinished job, tds_queue_jobs
// still has its series, at 0, so that sum(tds_queue_jobs) is 0 and not
// an empty result (issue 22).
func TestQueueJobsZeroWhenEmpty(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		reg := prometheus.NewRegistry()
		m, err := New(reg)
		require.NoError(t, err)
		types, err := tds.NewRegistry(
			tds.EntityType{Name: "order", Route: "orders", IDField: "id", Priority: 2},
			tds.EntityType{Name: "note", Route: "notes", IDField: "id", Priority: 7})
		require.NoError(t, err)
		require.NoError(t, m.WatchDatabase(tdb.DB, WithRegistry(types), WithLogger(testdb.QuietLogger)))
		require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP tds_queue_jobs Unfinished jobs in the queue, by status and priority; 0 for each registered type's priority.
# TYPE tds_queue_jobs gauge
tds_queue_jobs{priority="2",status="dead_letter"} 0
tds_queue_jobs{priority="2",status="pending"} 0
tds_queue_jobs{priority="2",status="processing"} 0
tds_queue_jobs{priority="2",status="retry"} 0
tds_queue_jobs{priority="7",status="dead_letter"} 0
tds_queue_jobs{priority="7",status="pending"} 0
tds_queue_jobs{priority="7",status="processing"} 0
tds_queue_jobs{priority="7",status="retry"} 0
`), "tds_queue_jobs"))
	})
}
