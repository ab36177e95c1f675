package tdsreconcile

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
)

// A drift item is resolved only when its repair was applied: a repair
// stored invalid, superseded by a newer local version, or dead-lettered
// leaves it open with that reason, and the next sweep does not ingest the
// same repair again.

// driftOf returns run's drift item of entity id.
func (e *reconcileEnv) driftOf(t *testing.T, rc *Reconciler, run int64, id string) Drift {
	t.Helper()
	drift, err := rc.ListDrift(context.Background(), run, tds.Page{Limit: 100})
	require.NoError(t, err)
	for _, d := range drift {
		if d.EntityID == id {
			return d
		}
	}
	t.Fatalf("run %d has no drift of %s", run, id)
	return Drift{}
}

// TestReconcileDriftOpenUntilApplied: of three records Zoho has and the
// mirror lacks, one fails validation (no name), one fails its Syncer for
// good (dead-lettered), one is repaired: only that one's drift resolves.
// The next sweep finds the other two again and ingests neither, saying why.
func TestReconcileDriftOpenUntilApplied(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		m, err := tds.NewMirrorSyncer()
		require.NoError(t, err)
		failing := tds.SyncFunc(func(ctx context.Context, tx bun.Tx, job *tds.SyncJob) error {
			if job.EntityID == "pro-dead" {
				return tds.Permanent(errors.New("the mirror refuses pro-dead"))
			}
			return m.Sync(ctx, tx, job)
		})
		testdb.StartWorker(t, e.db, e.clock.Now, failing)
		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		e.putProducts(t, 5, base, time.Minute, true)
		e.drain(t)
		invalid := apiRecord("product", "pro-invalid", base, 0)
		delete(invalid, "name")
		e.fake.Put("items", invalid)
		e.fake.Put("items", apiRecord("product", "pro-dead", base, 0))
		e.fake.Put("items", apiRecord("product", "pro-ok", base, 0))

		run, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, run.Status, run.Error)
		require.Equal(t, DriftCounts{MissingLocal: 3}, run.Counts)
		require.Equal(t, int64(3), run.Repaired, "three repairs ingested")
		require.Eventually(t, func() bool {
			return testkit.Count(t, e.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE status NOT IN ('completed', 'dead_letter')") == 0
		}, time.Minute, 5*time.Millisecond)
		require.NoError(t, e.rc.Settle(ctx))

		ok := e.driftOf(t, e.rc, run.ID, "pro-ok")
		require.True(t, ok.Resolved, ok.Reason)
		bad := e.driftOf(t, e.rc, run.ID, "pro-invalid")
		require.False(t, bad.Resolved)
		require.True(t, strings.HasPrefix(bad.Reason, ReasonInvalid), bad.Reason)
		require.Contains(t, bad.Reason, "name")
		dead := e.driftOf(t, e.rc, run.ID, "pro-dead")
		require.False(t, dead.Resolved)
		require.True(t, strings.HasPrefix(dead.Reason, ReasonDeadLettered), dead.Reason)
		require.Contains(t, dead.Reason, "the mirror refuses pro-dead")

		// Nothing changed in Zoho: the next sweep finds both again, and
		// ingests neither.
		e.clock.Advance(time.Hour)
		events := func(id string) int {
			return testkit.Count(t, e.db, "SELECT COUNT(*) FROM tds_inbox_events WHERE source_entity_id = ?", id)
		}
		require.Equal(t, 1, events("pro-invalid"))
		require.Equal(t, 1, events("pro-dead"))
		next, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, next.Status, next.Error)
		require.Equal(t, DriftCounts{MissingLocal: 2}, next.Counts)
		require.Zero(t, next.Repaired)
		require.Equal(t, 1, events("pro-invalid"), "not ingested again")
		require.Equal(t, 1, events("pro-dead"), "not ingested again")
		for _, id := range []string{"pro-invalid", "pro-dead"} {
			d := e.driftOf(t, e.rc, next.ID, id)
			require.False(t, d.Resolved)
			require.True(t, strings.HasPrefix(d.Reason, ReasonNotIngestedAgain), d.Reason)
		}
		require.Contains(t, e.driftOf(t, e.rc, next.ID, "pro-dead").Reason, ReasonDeadLettered)

		// Zoho's record changes (a name given): a new repair, ingested.
		fixed := apiRecord("product", "pro-invalid", base.Add(2*time.Hour), 1)
		e.fake.Put("items", fixed)
		third, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, int64(1), third.Repaired, "the changed record only")
		require.Equal(t, 2, events("pro-invalid"))
		require.Eventually(t, func() bool {
			return testkit.Count(t, e.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE status NOT IN ('completed', 'dead_letter')") == 0
		}, time.Minute, 5*time.Millisecond)
		require.NoError(t, e.rc.Settle(ctx))
		require.True(t, e.driftOf(t, e.rc, third.ID, "pro-invalid").Resolved)
		require.True(t, e.driftOf(t, e.rc, run.ID, "pro-invalid").Resolved, "the earlier item, by the later repair")
		require.False(t, e.driftOf(t, e.rc, run.ID, "pro-dead").Resolved)
	})
}

// TestReconcileDriftSuperseded: a newer webhook applied while the repair
// waits makes the repair superseded: its drift stays open, saying so.
func TestReconcileDriftSuperseded(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		m, err := tds.NewMirrorSyncer()
		require.NoError(t, err)
		testdb.StartWorker(t, e.db, e.clock.Now, m)
		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		ids := e.putProducts(t, 3, base, time.Minute, true)
		e.drain(t)
		x := ids[1]
		e.fake.Put("items", apiRecord("product", x, base.Add(time.Hour), 1))
		newer := apiRecord("product", x, base.Add(2*time.Hour), 2)
		var once sync.Once
		hookErr := make(chan error, 1)
		// The webhook arrives, and is applied, during the detail call.
		e.fake.OnRequest(func(r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/items/"+x) {
				once.Do(func() {
					data, _ := json.Marshal(newer)
					_, err := e.p.Process(context.Background(),
						&tds.Event{EventType: tds.EventUpdate, EntityType: "product", EntityID: x, Data: data})
					if err == nil {
						testdb.Drain(t, e.db)
					}
					hookErr <- err
				})
			}
		})
		run, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.NoError(t, <-hookErr)
		require.Equal(t, int64(1), run.Repaired)
		e.drain(t)
		require.NoError(t, e.rc.Settle(ctx))
		d := e.driftOf(t, e.rc, run.ID, x)
		require.False(t, d.Resolved)
		require.Equal(t, ReasonSuperseded, d.Reason)
		require.Equal(t, 2, e.mirrorRev(t, "product", x))

		// Zoho's version is older than the one applied: the next sweep
		// finds no drift there, and closes the open item.
		next, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, DriftCounts{}, next.Counts)
		d = e.driftOf(t, e.rc, run.ID, x)
		require.True(t, d.Resolved, d.Reason)
	})
}
