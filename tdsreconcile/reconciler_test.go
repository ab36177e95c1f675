package tdsreconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/canonical"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/internal/zohofake"
	"github.com/tdscore/tds/tdstest"
)

// reconcileEnv is a database, a fake Zoho, a Reconciler and a Worker
// mirroring into the database.
type reconcileEnv struct {
	*workerEnv
	fake   *zohofake.Server
	rc     *Reconciler
	sleeps *sleepLog
}

// sleepLog records the client's waits instead of sleeping.
type sleepLog struct {
	ch chan time.Duration
}

func (s *sleepLog) sleep(ctx context.Context, d time.Duration) error {
	select {
	case s.ch <- d:
	default:
	}
	return ctx.Err()
}

// zohoModules are the fake's modules of the three types the tests use.
var zohoModules = map[string]string{"product": "items", "customer": "contacts", "invoice": "invoices"}

func newReconcileEnv(t *testing.T, tdb *testdb.DB, opts ...Option) *reconcileEnv {
	t.Helper()
	e := &reconcileEnv{workerEnv: newWorkerEnv(t, tdb), sleeps: &sleepLog{ch: make(chan time.Duration, 1024)}}
	e.fake = testdb.Zoho(t, e.db)
	e.rc = e.newReconciler(t, opts...)
	return e
}

func (e *reconcileEnv) newReconciler(t *testing.T, opts ...Option) *Reconciler {
	t.Helper()
	return e.newReconcilerAPI(t, func(*ZohoAPI) {}, opts...)
}

// zohoTime formats t as Zoho does.
func zohoTime(t time.Time) string { return t.UTC().Format(tds.ZohoTimeLayout) }

// apiRecord builds a record of entity type typ, version at.
func apiRecord(typ, id string, at time.Time, rev int) map[string]any {
	rec := map[string]any{"last_modified_time": zohoTime(at), "created_time": zohoTime(at), "rev": rev}
	switch typ {
	case "product":
		rec["item_id"], rec["name"], rec["rate"] = id, fmt.Sprintf("Item %s r%d", id, rev), 10+rev
	case "customer":
		rec["contact_id"], rec["contact_name"] = id, fmt.Sprintf("Contact %s r%d", id, rev)
	case "invoice":
		rec["invoice_id"], rec["customer_id"], rec["invoice_number"] = id, "c-1", "INV-"+id
		// Lists leave nested values out: only the detail has them.
		rec["line_items"] = []any{map[string]any{"item_id": "i-1", "quantity": rev + 1}}
	}
	return rec
}

// webhook ingests rec as Zoho's webhook for it would.
func (e *reconcileEnv) webhook(t *testing.T, typ string, rec map[string]any, eventType string) {
	t.Helper()
	data, err := json.Marshal(rec)
	require.NoError(t, err)
	id := rec[testdb.EntityType(t, typ).IDField].(string)
	_, err = e.p.Process(context.Background(), &tds.Event{EventType: eventType, EntityType: typ, EntityID: id, Data: data})
	require.NoError(t, err)
}

// deliverAll ingests evs from concurrent senders, which share commits.
func (e *reconcileEnv) deliverAll(t *testing.T, evs []*tds.Event) {
	t.Helper()
	const senders = 16
	errs := make(chan error, senders)
	for s := range senders {
		go func() {
			var err error
			for i := s; i < len(evs) && err == nil; i += senders {
				_, err = e.p.Process(context.Background(), evs[i])
			}
			errs <- err
		}()
	}
	for range senders {
		require.NoError(t, <-errs)
	}
}

// startMirror runs a Worker with a MirrorSyncer until the test ends.
func (e *reconcileEnv) startMirror(t *testing.T, opts ...tds.Option) {
	t.Helper()
	testdb.StartMirror(t, e.db, e.clock.Now, opts...)
}

// drain waits until no job is left unfinished.
func (e *reconcileEnv) drain(t *testing.T) {
	t.Helper()
	testdb.Drain(t, e.db)
}

// settle drains the queue and brings the drift up to date with its
// repairs' jobs, as the leader's task does at each round.
func (e *reconcileEnv) settle(t *testing.T) {
	t.Helper()
	e.drain(t)
	require.NoError(t, e.rc.Settle(context.Background()))
}

// requireMirrorEqualsFake checks the mirror of typ record for record
// against the fake: every record the fake holds, as it holds it, and every
// other row of the mirror deleted.
func (e *reconcileEnv) requireMirrorEqualsFake(t *testing.T, typ string) {
	t.Helper()
	et := testdb.EntityType(t, typ)
	want := map[string]string{}
	for _, rec := range e.fake.All(zohoModules[typ]) {
		b, err := json.Marshal(rec)
		require.NoError(t, err)
		canon, _, err := canonical.Canonicalize(b)
		require.NoError(t, err)
		want[rec[et.IDField].(string)] = string(canon)
	}
	var rows []struct {
		EntityID  string     `bun:"entity_id"`
		Data      string     `bun:"data"`
		DeletedAt *time.Time `bun:"deleted_at"`
	}
	require.NoError(t, e.db.NewRaw("SELECT entity_id, data, deleted_at FROM ?", bun.Ident(et.MirrorTable)).Scan(context.Background(), &rows))
	live := map[string]string{}
	for _, r := range rows {
		if r.DeletedAt == nil {
			canon, _, err := canonical.Canonicalize([]byte(r.Data))
			require.NoError(t, err)
			live[r.EntityID] = string(canon)
		}
	}
	require.Equal(t, len(want), len(live), "%s: live mirror rows", typ)
	for id, w := range want {
		require.JSONEq(t, w, live[id], "%s %s", typ, id)
	}
}

// TestReconcileFullRepairsEverything: 1,000 entities over three types, 30 %
// of their webhooks never delivered, some updated and some deleted in Zoho
// afterwards without a webhook: one full run repairs everything, the mirror
// then equals Zoho record for record, and a second run finds no drift.
func TestReconcileFullRepairsEverything(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		// Zoho's deletes here are its own, not a wrong organisation's.
		e := newReconcileEnv(t, tdb, WithMaxDeletes(1000))
		e.startMirror(t)

		base := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
		counts := map[string]int{"product": 400, "customer": 300, "invoice": 300}
		var all []struct{ typ, id string }
		var delivered []*tds.Event
		n := 0
		for _, typ := range []string{"product", "customer", "invoice"} {
			for i := 0; i < counts[typ]; i++ {
				id := fmt.Sprintf("%s-%04d", typ[:3], i)
				rec := apiRecord(typ, id, base.Add(time.Duration(n)*time.Second), 0)
				e.fake.Put(zohoModules[typ], rec)
				if n%10 >= 3 { // 30 % never delivered
					data, err := json.Marshal(rec)
					require.NoError(t, err)
					delivered = append(delivered, &tds.Event{EventType: tds.EventUpdate, EntityType: typ, EntityID: id, Data: data})
				}
				all = append(all, struct{ typ, id string }{typ, id})
				n++
			}
		}
		e.deliverAll(t, delivered)
		e.drain(t)
		// Afterwards, in Zoho only: updates and deletes, delivered or not.
		later := base.Add(24 * time.Hour)
		for i, x := range all {
			switch {
			case i%17 == 0:
				e.fake.Delete(zohoModules[x.typ], x.id)
			case i%13 == 0:
				rec := apiRecord(x.typ, x.id, later.Add(time.Duration(i)*time.Second), 1)
				e.fake.Put(zohoModules[x.typ], rec)
			}
		}

		run, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: []string{"product", "customer", "invoice"}})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, run.Status, run.Error)
		require.Positive(t, run.Counts.MissingLocal)
		require.Positive(t, run.Counts.StaleLocal)
		require.Positive(t, run.Counts.MissingRemote)
		drifted := run.Counts.MissingLocal + run.Counts.StaleLocal + run.Counts.MissingRemote + run.Counts.Changed
		require.Equal(t, drifted, run.Repaired)
		// The floor: the list pages, and one detail request per drifted
		// record (a missing record's confirmation is its detail request).
		stats := e.fake.Stats()
		require.Equal(t, int64(2+2+2), run.Pages)
		require.Equal(t, int(run.Pages+drifted), stats.APICalls)
		require.Equal(t, int64(stats.APICalls), run.APICalls)
		require.Equal(t, int(drifted), testkit.Count(t, e.db, "SELECT COUNT(*) FROM tds_inbox_events WHERE sync_run_id = ?", run.ID))

		e.drain(t)
		for typ := range counts {
			e.requireMirrorEqualsFake(t, typ)
		}

		again, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: []string{"product", "customer", "invoice"}})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, again.Status, again.Error)
		require.Equal(t, DriftCounts{}, again.Counts)
		require.Zero(t, again.Repaired)
		require.Equal(t, int64(6), again.APICalls, "pages only")
		require.Zero(t, testkit.Count(t, e.db, "SELECT COUNT(*) FROM tds_sync_remote"), "the staged listing is dropped")

		runs, err := e.rc.ListRuns(ctx, tds.Page{Limit: 10})
		require.NoError(t, err)
		require.Len(t, runs, 2)
		require.Equal(t, again.ID, runs[0].ID)
		drift, err := e.rc.ListDrift(ctx, run.ID, tds.Page{Limit: 1000})
		require.NoError(t, err)
		require.Len(t, drift, int(drifted))
		kinds := map[DriftKind]int{}
		for _, d := range drift {
			kinds[d.Kind]++
			require.True(t, d.Resolved)
			require.NotNil(t, d.InboxEventID)
		}
		require.Equal(t, int(run.Counts.MissingRemote), kinds[DriftMissingRemote])
		ids := make([]int64, len(drift))
		for i, d := range drift {
			ids[i] = d.ID
		}
		require.True(t, sort.SliceIsSorted(ids, func(i, j int) bool { return ids[i] > ids[j] }), "newest first")
	})
}

// TestReconcileSchedule: the Worker leading housekeeping starts an
// incremental run when none ran within the interval, and not again before
// the interval has passed on the clock.
func TestReconcileSchedule(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb, WithSchedule(time.Hour, 0))
		e.fake.Put("items", apiRecord("product", "pro-1", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 0))
		// The task's rounds as often as the housekeeping of the test Worker.
		task := e.rc.Task()
		require.Equal(t, "reconcile", task.Name)
		require.Equal(t, tds.DefaultHousekeepingInterval, task.Interval)
		task.Interval = 20 * time.Millisecond
		e.startMirror(t, tds.WithLeaderTask(task))

		runs := func() []SyncRun {
			rs, err := e.rc.ListRuns(ctx, tds.Page{Limit: 10})
			require.NoError(t, err)
			return rs
		}
		require.Eventually(t, func() bool {
			rs := runs()
			return len(rs) == 1 && rs[0].Status == RunCompleted
		}, 30*time.Second, 5*time.Millisecond)
		first := runs()[0]
		require.Equal(t, Incremental, first.Mode)
		// Every type with an API and a version: the item is a product and,
		// read from the same list, a stock record.
		require.Equal(t, []string{"bill", "credit_note", "customer", "invoice", "product", "stock"}, first.EntityTypes)
		require.Equal(t, int64(2), first.Repaired)

		// Housekeeping keeps running (every 20 ms), but within the hour
		// nothing starts: the repairs drain meanwhile.
		e.drain(t)
		require.Len(t, runs(), 1)
		e.clock.Advance(time.Hour)
		require.Eventually(t, func() bool { return len(runs()) == 2 }, 30*time.Second, 5*time.Millisecond)
	})
}

// TestReconcileCloseHandsTheRunOver: a run stopped by Close is not failed:
// its hold is released at once, and the next start resumes it.
func TestReconcileCloseHandsTheRunOver(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		for i := range 300 {
			e.fake.Put("items", apiRecord("product", fmt.Sprintf("pro-%03d", i), base.Add(time.Duration(i)*time.Second), 0))
		}
		// The second page blocks until the run's request is abandoned.
		reached := make(chan struct{})
		release := make(chan struct{})
		var once sync.Once
		e.fake.OnRequest(func(r *http.Request) {
			if r.URL.Query().Get("page") == "2" {
				once.Do(func() { close(reached) })
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}
		})
		id, err := e.rc.Start(ctx, Request{Mode: Full, EntityTypes: []string{"product"}})
		require.NoError(t, err)
		<-reached
		require.NoError(t, e.rc.Close())
		close(release)

		run, err := e.rc.GetRun(ctx, id)
		require.NoError(t, err)
		require.Equal(t, RunRunning, run.Status, "handed over, not failed")
		require.Equal(t, int64(1), run.Pages)

		rc := e.newReconciler(t)
		resumed, err := rc.Run(ctx, Request{Mode: Incremental})
		require.NoError(t, err)
		require.Equal(t, id, resumed.ID, "the same run, resumed")
		require.Equal(t, RunCompleted, resumed.Status, resumed.Error)
		require.Equal(t, Full, resumed.Mode)
		require.Equal(t, int64(2), resumed.Pages, "page 1 was not read again")
		require.Equal(t, int64(300), resumed.Counts.MissingLocal)
	})
}

// tdstest.Zoho.API() is assignable to a ZohoAPI: the two shapes stay equal
// (tdstest cannot name this package's type; see tdstest.ZohoAPI).
var _ ZohoAPI = tdstest.ZohoAPI{}
