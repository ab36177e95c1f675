package tdsreconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
)

// The deletion guard: a run that would delete more than its threshold
// holds every delete for an operator's confirmation.

// syncLog is a JSON slog sink safe for concurrent writes.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines returns the records logged with message msg.
func (l *syncLog) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(l.buf.Bytes()), []byte("\n")) {
		var rec map[string]any
		require.NoError(t, json.Unmarshal(line, &rec), "%s", line)
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func (l *syncLog) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// TestDefaultMaxDeletes: 1 % of the applied records, at least 10.
func TestDefaultMaxDeletes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ applied, want int64 }{
		{0, 10}, {60, 10}, {999, 10}, {1000, 10}, {1099, 10}, {1100, 11}, {50_000, 500},
	} {
		require.Equal(t, tc.want, DefaultMaxDeletes(tc.applied), "%d applied", tc.applied)
	}
}

// TestReconcileDeletionGuard: a first full sweep against a Zoho that lacks
// 50 of 60 local records (a wrong organisation, say) applies its other
// repair, deletes nothing, ends needs_confirmation with the 50 held as
// drift; confirming deletes exactly those 50, and a record that changed
// here after the sweep is skipped, saying so. A second confirmation is
// refused. Start and end are logged at INFO with the counts.
func TestReconcileDeletionGuard(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		log := &syncLog{}
		rc := e.newReconciler(t, WithLogger(log.logger()))
		e.startMirror(t)
		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		ids := e.putProducts(t, 60, base, time.Minute, true)
		e.drain(t)
		for _, id := range ids[10:] {
			e.fake.Delete("items", id)
		}
		e.fake.Put("items", apiRecord("product", "pro-new", base, 0)) // a repair that is not a delete

		run, err := rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunNeedsConfirmation, run.Status, run.Error)
		require.Equal(t, DriftCounts{MissingLocal: 1, MissingRemote: 50}, run.Counts)
		require.Equal(t, int64(50), run.PendingDeletes)
		require.Zero(t, run.Deletes)
		require.Equal(t, int64(1), run.Repaired, "the other repair is applied")
		require.Contains(t, run.Error, "50 product records (threshold 10)")
		e.drain(t)
		require.Len(t, e.mirrorRows(t, "product"), 61)
		for id, row := range e.mirrorRows(t, "product") {
			require.False(t, row.deleted, "%s deleted without confirmation", id)
		}
		drift, err := rc.ListDrift(ctx, run.ID, tds.Page{Limit: 100})
		require.NoError(t, err)
		held := 0
		for _, d := range drift {
			if d.PendingDelete {
				held++
				require.Equal(t, DriftMissingRemote, d.Kind)
				require.Equal(t, "delete pending confirmation", d.Reason)
				require.False(t, d.Resolved)
				require.Nil(t, d.InboxEventID)
			}
		}
		require.Equal(t, 50, held)

		started := log.lines(t, "tdsreconcile: reconciliation run started")
		require.Len(t, started, 1)
		require.Equal(t, "full", started[0]["mode"])
		require.Equal(t, []any{"product"}, started[0]["types"])
		ended := log.lines(t, "tdsreconcile: reconciliation run ended")
		require.Len(t, ended, 1)
		require.Equal(t, "INFO", ended[0]["level"])
		require.Equal(t, "needs_confirmation", ended[0]["status"])
		require.EqualValues(t, 50, ended[0]["pending_deletes"])
		require.EqualValues(t, 0, ended[0]["deletes"])
		require.EqualValues(t, 1, ended[0]["repairs"])
		require.EqualValues(t, 50, ended[0]["missing_remote"])
		require.EqualValues(t, run.APICalls, ended[0]["api_calls"])

		// After the sweep, a newer webhook for one of the 50.
		e.clock.Advance(time.Minute)
		changed := ids[10]
		e.webhook(t, "product", apiRecord("product", changed, base.Add(48*time.Hour), 3), tds.EventUpdate)
		e.drain(t)

		c, err := rc.Confirm(ctx, run.ID, "test operator")
		require.NoError(t, err)
		require.Equal(t, &Confirmation{RunID: run.ID, Deleted: 49, Skipped: 1}, c)
		_, err = rc.Confirm(ctx, run.ID, "test operator")
		require.ErrorIs(t, err, ErrNotAwaitingConfirmation)
		_, err = rc.Confirm(ctx, run.ID+100, "test operator")
		require.ErrorIs(t, err, ErrRunNotFound)
		require.Len(t, log.lines(t, "tdsreconcile: held deletes confirmed"), 1)

		e.drain(t)
		rows := e.mirrorRows(t, "product")
		for i, id := range ids {
			require.Equal(t, i >= 10 && id != changed, rows[id].deleted, "%s", id)
		}
		require.Equal(t, 49, testkit.Count(t, e.db,
			"SELECT COUNT(*) FROM tds_inbox_events WHERE sync_run_id = ? AND event_type = 'delete'", run.ID))
		require.NoError(t, rc.Settle(ctx))
		after, err := rc.GetRun(ctx, run.ID)
		require.NoError(t, err)
		require.Equal(t, RunCompleted, after.Status)
		require.Equal(t, "test operator", after.ConfirmedBy)
		require.Zero(t, after.PendingDeletes)
		require.Equal(t, int64(49), after.Deletes)
		drift, err = rc.ListDrift(ctx, run.ID, tds.Page{Limit: 100})
		require.NoError(t, err)
		for _, d := range drift {
			require.False(t, d.PendingDelete)
			if d.EntityID == changed {
				require.False(t, d.Resolved)
				require.Contains(t, d.Reason, "changed here after the sweep")
				continue
			}
			require.True(t, d.Resolved, "%s: %s", d.EntityID, d.Reason)
		}
	})
}

// TestReconcileDeletesWithinThreshold: deletes within the threshold (an
// explicit WithMaxDeletes here) are applied by the run itself.
func TestReconcileDeletesWithinThreshold(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		rc := e.newReconciler(t, WithMaxDeletes(3))
		e.startMirror(t)
		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		ids := e.putProducts(t, 10, base, time.Minute, true)
		e.drain(t)
		for _, id := range ids[:3] {
			e.fake.Delete("items", id)
		}
		run, err := rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, run.Status, run.Error)
		require.Equal(t, int64(3), run.Deletes)
		require.Zero(t, run.PendingDeletes)
		_, err = rc.Confirm(ctx, run.ID, "x")
		require.ErrorIs(t, err, ErrNotAwaitingConfirmation)

		e.fake.Delete("items", ids[3])
		e.drain(t)
		zero := e.newReconciler(t, WithMaxDeletes(0))
		held, err := zero.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunNeedsConfirmation, held.Status, "0 holds every delete")
		require.Equal(t, int64(1), held.PendingDeletes)
	})
}

// TestReconcileConfirmConcurrent: two confirmations at once apply the
// deletes once; the other is refused.
func TestReconcileConfirmConcurrent(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		e.startMirror(t)
		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		ids := e.putProducts(t, 30, base, time.Minute, true)
		e.drain(t)
		for _, id := range ids[:15] {
			e.fake.Delete("items", id)
		}
		run, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunNeedsConfirmation, run.Status, run.Error)

		const n = 4
		results := make(chan error, n)
		for i := range n {
			go func() {
				_, err := e.rc.Confirm(ctx, run.ID, fmt.Sprintf("operator %d", i))
				results <- err
			}()
		}
		var ok, refused int
		for range n {
			err := <-results
			switch {
			case err == nil:
				ok++
			default:
				require.ErrorIs(t, err, ErrNotAwaitingConfirmation)
				refused++
			}
		}
		require.Equal(t, 1, ok)
		require.Equal(t, n-1, refused)
		require.Equal(t, 15, testkit.Count(t, e.db,
			"SELECT COUNT(*) FROM tds_inbox_events WHERE sync_run_id = ? AND event_type = 'delete'", run.ID))
	})
}

// TestReconcileHeldDeletesClosedBySweep: the records were not gone (a
// wrong organisation, now fixed): the next full sweep finds them in Zoho
// again, closes the held deletes, and the run that held them ends
// completed, saying why; nothing was deleted.
func TestReconcileHeldDeletesClosedBySweep(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		e.startMirror(t)
		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		ids := e.putProducts(t, 20, base, time.Minute, true)
		e.drain(t)
		all := e.fake.All("items")
		for _, id := range ids {
			e.fake.Delete("items", id)
		}
		held, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunNeedsConfirmation, held.Status)
		require.Equal(t, int64(20), held.PendingDeletes)

		for _, rec := range all {
			e.fake.Put("items", rec)
		}
		next, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, next.Status, next.Error)
		require.Equal(t, DriftCounts{}, next.Counts)

		got, err := e.rc.GetRun(ctx, held.ID)
		require.NoError(t, err)
		require.Equal(t, RunCompleted, got.Status)
		require.Zero(t, got.PendingDeletes)
		require.Contains(t, got.Error, fmt.Sprintf("full sweep %d found them in the source", next.ID))
		_, err = e.rc.Confirm(ctx, held.ID, "late operator")
		require.ErrorIs(t, err, ErrNotAwaitingConfirmation)
		e.drain(t)
		for id, row := range e.mirrorRows(t, "product") {
			require.False(t, row.deleted, id)
		}
	})
}
