package store_test

import (
	"encoding/json"
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
		a.State, a.FiringAt, a.LastNotifiedAt, a.UpdatedAt = "firing", &fired, &fired, fired
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
		require.True(t, got.LastNotifiedAt.Equal(fired))
		require.EqualValues(t, 1, got.Revision)

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
		one.State, one.ResolvedAt = "resolved", &fired
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
		dead, err := st.DeadLettersSince(ctx, db, t0)
		require.NoError(t, err)
		require.Empty(t, dead)

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
