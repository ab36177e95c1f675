package store_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
)

func TestAlertsConformance(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		ctx := t.Context()
		t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

		a := &store.Alert{Rule: "drift", Fingerprint: "fp1", Labels: json.RawMessage(`{"entity_type":"item"}`),
			State: "pending", Severity: "warning", Value: 12, StartedAt: t0, UpdatedAt: t0}
		ok, err := st.InsertAlert(ctx, db, a)
		require.NoError(t, err)
		require.True(t, ok)
		require.NotZero(t, a.ID)

		// One open alert per fingerprint.
		dup := *a
		ok, err = st.InsertAlert(ctx, db, &dup)
		require.NoError(t, err)
		require.False(t, ok)

		// Compare-and-set on the revision.
		fired := t0.Add(time.Minute)
		a.State, a.FiringAt, a.NotifyClaimedAt, a.UpdatedAt = "firing", &fired, &fired, fired
		a.FiredValue, a.PeakValue = ptr(34.0), ptr(40.0)
		ok, err = st.UpdateAlert(ctx, db, a)
		require.NoError(t, err)
		require.True(t, ok)
		stale := *a
		stale.Revision = 0
		ok, err = st.UpdateAlert(ctx, db, &stale)
		require.NoError(t, err)
		require.False(t, ok, "a stale revision changes nothing")

		open, err := st.OpenAlerts(ctx, db)
		require.NoError(t, err)
		require.Len(t, open, 1)
		got := open[0]
		require.Equal(t, "firing", got.State)
		require.JSONEq(t, `{"entity_type":"item"}`, string(got.Labels))
		require.Equal(t, 12.0, got.Value)
		require.True(t, got.StartedAt.Equal(t0))
		require.True(t, got.NotifyClaimedAt.Equal(fired))
		require.Nil(t, got.LastNotifiedAt, "a claim is no delivery")
		require.Equal(t, 34.0, *got.FiredValue)
		require.Equal(t, 40.0, *got.PeakValue)
		require.EqualValues(t, 1, got.Revision)

		// A delivery is recorded beside the evaluation: no revision bump,
		// and an older delivery does not overwrite a newer one.
		require.NoError(t, st.MarkAlertNotified(ctx, db, a.ID, fired.Add(2*time.Second)))
		require.NoError(t, st.MarkAlertNotified(ctx, db, a.ID, fired.Add(time.Second)))
		got3, err := st.GetAlert(ctx, db, a.ID)
		require.NoError(t, err)
		require.True(t, got3.LastNotifiedAt.Equal(fired.Add(2*time.Second)), "%s", got3.LastNotifiedAt)
		require.EqualValues(t, 1, got3.Revision)

		require.NoError(t, st.AckAlert(ctx, db, a.ID, fired))
		require.NoError(t, st.SilenceAlert(ctx, db, a.ID, fired.Add(time.Hour), fired))
		require.ErrorIs(t, st.AckAlert(ctx, db, a.ID+100, fired), store.ErrNoRows)
		require.ErrorIs(t, st.SilenceAlert(ctx, db, a.ID+100, fired, fired), store.ErrNoRows)
		one, err := st.GetAlert(ctx, db, a.ID)
		require.NoError(t, err)
		require.True(t, one.AcknowledgedAt.Equal(fired))
		require.True(t, one.SilencedUntil.Equal(fired.Add(time.Hour)))
		_, err = st.GetAlert(ctx, db, a.ID+100)
		require.ErrorIs(t, err, store.ErrNoRows)

		// Resolved: history, and a new open alert of the fingerprint may start.
		// The resolution's value does not replace the fired one nor the peak.
		one.State, one.ResolvedAt, one.Value = "resolved", &fired, 3
		ok, err = st.UpdateAlert(ctx, db, one)
		require.NoError(t, err)
		require.True(t, ok)
		b := &store.Alert{Rule: "drift", Fingerprint: "fp1", State: "pending", Severity: "warning", StartedAt: fired, UpdatedAt: fired}
		ok, err = st.InsertAlert(ctx, db, b)
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = st.DeleteAlert(ctx, db, b.ID, b.Revision)
		require.NoError(t, err)
		require.True(t, ok)
		list, err := st.ListAlerts(ctx, db, "resolved", 10)
		require.NoError(t, err)
		require.Len(t, list, 1)
		list, err = st.ListAlerts(ctx, db, "", 10)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, 3.0, list[0].Value)
		require.Equal(t, 34.0, *list[0].FiredValue)
		require.Equal(t, 40.0, *list[0].PeakValue)
		require.True(t, list[0].ResolvedAt.Equal(fired))
		require.True(t, list[0].LastNotifiedAt.Equal(fired.Add(2*time.Second)), "the update keeps the delivery")

		// Counters: upserted per process and minute, summed over processes.
		require.NoError(t, st.AddCounts(ctx, db, "p1", []store.Count{{Name: "refused", Minute: t0, N: 2}}))
		require.NoError(t, st.AddCounts(ctx, db, "p1", []store.Count{{Name: "refused", Minute: t0.Add(30 * time.Second), N: 3}}))
		require.NoError(t, st.AddCounts(ctx, db, "p2", []store.Count{{Name: "refused", Minute: t0.Add(2 * time.Minute), N: 4}}))
		n, err := st.SumCount(ctx, db, "refused", t0)
		require.NoError(t, err)
		require.EqualValues(t, 9, n)
		n, err = st.SumCount(ctx, db, "refused", t0.Add(90*time.Second))
		require.NoError(t, err)
		require.EqualValues(t, 4, n, "from the minute of since")
		deleted, err := st.DeleteCounts(ctx, db, t0.Add(time.Minute))
		require.NoError(t, err)
		require.EqualValues(t, 1, deleted)

		// Measures over an empty database.
		oldest, err := st.OldestWaiting(ctx, db, t0)
		require.NoError(t, err)
		require.Nil(t, oldest)
		last, err := st.LastReceived(ctx, db, "zoho")
		require.NoError(t, err)
		require.Nil(t, last)
		run, err := st.LastCompletedRun(ctx, db, "zoho")
		require.NoError(t, err)
		require.Nil(t, run)
		out, err := st.SyncOutcomesSince(ctx, db, t0)
		require.NoError(t, err)
		require.Zero(t, out)
		dead, err := st.DeadLetters(ctx, db)
		require.NoError(t, err)
		require.Empty(t, dead)
		drift, err := st.LatestRunDrift(ctx, db, "zoho")
		require.NoError(t, err)
		require.Empty(t, drift)
		waiting, err := st.RunsNeedingConfirmation(ctx, db)
		require.NoError(t, err)
		require.Empty(t, waiting)

		// With a waiting job and a received event.
		s := newSuite(t, db, st)
		ev := s.event(ent("1"))
		stored, _, err := st.InsertEvent(ctx, db, ev)
		require.NoError(t, err)
		_, err = st.Enqueue(ctx, db, stored.ID, ent("1"), store.NewJob{Priority: 5, MaxAttempts: 3}, t0)
		require.NoError(t, err)
		oldest, err = st.OldestWaiting(ctx, db, t0.Add(time.Hour))
		require.NoError(t, err)
		require.NotNil(t, oldest)
		require.True(t, oldest.Equal(t0), "%s", oldest)
		last, err = st.LastReceived(ctx, db, "zoho")
		require.NoError(t, err)
		require.NotNil(t, last)
		got2, err := st.CountReceived(ctx, db, "zoho", last.Add(-time.Second))
		require.NoError(t, err)
		require.EqualValues(t, 1, got2)
	})
}

// TestDeadLettersCountsThemWhateverTheirAge: dead letters count while
// they wait, however long ago they were recorded (dead_letters resolved
// one evaluation after firing when it counted only new ones).
func TestDeadLettersCountsThemWhateverTheirAge(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		old := s.claimJob(s.queue(ent("a"), 5, 3).ID, "w", t0)
		s.fail(old, "w", true, "P", t0)
		fresh := s.claimJob(s.queue(ent("b"), 5, 3).ID, "w", t0.Add(24*time.Hour))
		s.fail(fresh, "w", true, "P", t0.Add(24*time.Hour))
		dead, err := st.DeadLetters(s.ctx, db)
		require.NoError(t, err)
		require.Equal(t, map[string]int64{"product": 2}, dead)

		// A discarded dead letter waits no more.
		require.NoError(t, s.tx(func(tx bun.Tx) error { return st.DiscardDeadLetter(s.ctx, tx, old.ID, "obsolete", t0) }))
		dead, err = st.DeadLetters(s.ctx, db)
		require.NoError(t, err)
		require.Equal(t, map[string]int64{"product": 1}, dead)
	})
}

// insertRun inserts a reconciliation run of source "zoho".
func insertRun(t *testing.T, db *bun.DB, mode, status string, dry bool, finished *time.Time) int64 {
	t.Helper()
	r := &store.Run{Source: "zoho", Mode: mode, EntityTypes: json.RawMessage(`["product"]`), DryRun: dry, Status: status,
		StartedAt: t0, FinishedAt: finished, Cursor: json.RawMessage(`{}`)}
	_, err := db.NewInsert().Model(r).ExcludeColumn("id").Returning("id").Exec(t.Context())
	require.NoError(t, err)
	require.NotZero(t, r.ID)
	return r.ID
}

// addDrift records n drift rows of run, the first resolved of them
// resolved.
func addDrift(t *testing.T, db *bun.DB, st store.Store, run int64, n, resolved int) {
	t.Helper()
	rows := make([]store.Drift, n)
	for i := range rows {
		rows[i] = store.Drift{RunID: run, EntityType: "product", EntityID: fmt.Sprintf("e%d", i), Kind: "missing_local", DetectedAt: t0}
	}
	require.NoError(t, st.AddDrift(t.Context(), db, rows))
	for i := range resolved {
		_, err := db.NewUpdate().Model((*store.Drift)(nil)).Set("resolved = ?", true).
			Where("run_id = ? AND source_entity_id = ?", run, fmt.Sprintf("e%d", i)).Exec(t.Context())
		require.NoError(t, err)
	}
}

// TestLatestRunDrift: the drift of the newest stopped run of each mode,
// dry and running runs aside, with its unresolved part.
func TestLatestRunDrift(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		ctx := t.Context()
		done := t0.Add(time.Hour)
		old := insertRun(t, db, "full", store.RunCompleted, false, &done)
		addDrift(t, db, st, old, 5, 0)
		full := insertRun(t, db, "full", store.RunCompleted, false, &done)
		addDrift(t, db, st, full, 34, 31)
		addDrift(t, db, st, insertRun(t, db, "full", store.RunCompleted, true, &done), 7, 0) // dry
		addDrift(t, db, st, insertRun(t, db, "incremental", store.RunRunning, false, nil), 9, 0)
		inc := insertRun(t, db, "incremental", store.RunFailed, false, &done)
		addDrift(t, db, st, inc, 2, 2)

		got, err := st.LatestRunDrift(ctx, db, "zoho")
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Equal(t, store.RunDrift{RunID: full, Mode: "full", FinishedAt: &done, Found: 34, Unresolved: 3}, got[0])
		require.Equal(t, store.RunDrift{RunID: inc, Mode: "incremental", FinishedAt: &done, Found: 2, Unresolved: 0}, got[1])
		other, err := st.LatestRunDrift(ctx, db, "other")
		require.NoError(t, err)
		require.Empty(t, other)
	})
}

// TestRunsNeedingConfirmation: migration 0010 lets a run wait for an
// operator's confirmation, and the alert finds it.
func TestRunsNeedingConfirmation(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		done := t0.Add(time.Hour)
		insertRun(t, db, "full", store.RunCompleted, false, &done)
		waiting := insertRun(t, db, "full", "needs_confirmation", false, &done)
		got, err := st.RunsNeedingConfirmation(t.Context(), db)
		require.NoError(t, err)
		require.Equal(t, []int64{waiting}, got)

		// The widened CHECK still refuses what is no status.
		r := &store.Run{Source: "zoho", Mode: "full", EntityTypes: json.RawMessage(`[]`), Status: "bogus", StartedAt: t0, Cursor: json.RawMessage(`{}`)}
		_, err = db.NewInsert().Model(r).ExcludeColumn("id").Exec(t.Context())
		require.Error(t, err)
	})
}
