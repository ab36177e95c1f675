package store_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
)

// newRun starts a full run of products held by owner until until.
func newRun(t *testing.T, db *bun.DB, st store.Store, owner string, at, until time.Time) (*store.Run, error) {
	t.Helper()
	r := &store.Run{Source: "zoho", Mode: "full", EntityTypes: json.RawMessage(`["product"]`), StartedAt: at,
		LockedBy: ptr(owner), LockedUntil: ptr(until)}
	return r, st.StartRun(t.Context(), db, r)
}

func applied(id string, version time.Time, hash string) store.Applied {
	return store.Applied{Source: "zoho", EntityType: "product", EntityID: id, Version: version, ContentHash: hash,
		SyncedAt: t0, InboxEventID: 1, Data: json.RawMessage(`{"a":1}`)}
}

func TestRunsRecordAppliedKeepsNewest(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		ctx := t.Context()
		require.NoError(t, st.RecordApplied(ctx, db, []store.Applied{applied("1", t0, "v1")}))
		require.NoError(t, st.RecordApplied(ctx, db, []store.Applied{applied("1", t0.Add(-time.Hour), "older")}))
		got, err := st.AppliedOf(ctx, db, "zoho", "product", []string{"1"})
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, "v1", got[0].ContentHash, "an older row never overwrites a newer one")
		require.NoError(t, st.RecordApplied(ctx, db, []store.Applied{applied("1", t0, "same")}))
		got, err = st.AppliedOf(ctx, db, "zoho", "product", []string{"1"})
		require.NoError(t, err)
		require.Equal(t, "same", got[0].ContentHash, "an equal version overwrites")
		require.NoError(t, st.RecordApplied(ctx, db, []store.Applied{applied("1", t0.Add(time.Hour), "newer"), applied("2", t0, "two")}))
		got, err = st.AppliedOf(ctx, db, "zoho", "product", []string{"1", "2", "3"})
		require.NoError(t, err)
		require.Len(t, got, 2)
		for _, a := range got {
			require.Equal(t, map[string]string{"1": "newer", "2": "two"}[a.EntityID], a.ContentHash)
		}
	})
}

func TestRunsOneRunningAtATimePerSourceAndMode(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		ctx := t.Context()
		r, err := newRun(t, db, st, "a", t0, t0.Add(time.Minute))
		require.NoError(t, err)
		require.Positive(t, r.ID)
		_, err = newRun(t, db, st, "b", t0, t0.Add(time.Minute))
		require.ErrorIs(t, err, store.ErrRunRunning)

		// TakeOverRun: not while held, then after the hold expired.
		_, err = st.TakeOverRun(ctx, db, "zoho", "b", t0.Add(30*time.Second), t0.Add(2*time.Minute))
		require.ErrorIs(t, err, store.ErrNoRows)
		_, err = st.TakeOverRun(ctx, db, "other", "b", t0.Add(61*time.Second), t0.Add(2*time.Minute))
		require.ErrorIs(t, err, store.ErrNoRows, "never another source's run")
		got, err := st.TakeOverRun(ctx, db, "zoho", "b", t0.Add(61*time.Second), t0.Add(2*time.Minute))
		require.NoError(t, err)
		require.Equal(t, r.ID, got.ID)
		require.Equal(t, "b", *got.LockedBy)

		// SaveRun: the former owner lost it; the new one saves.
		p := store.Progress{Cursor: json.RawMessage(`{"type":1}`), APICalls: 7, Pages: 3}
		_, err = st.SaveRun(ctx, db, r.ID, "a", p, t0.Add(3*time.Minute))
		require.ErrorIs(t, err, store.ErrLeaseLost)
		cancel, err := st.SaveRun(ctx, db, r.ID, "b", p, t0.Add(3*time.Minute))
		require.NoError(t, err)
		require.False(t, cancel)
		got, err = st.GetRun(ctx, db, r.ID)
		require.NoError(t, err)
		require.Equal(t, int64(7), got.APICalls)
		require.Equal(t, int64(3), got.Pages)
		require.JSONEq(t, `{"type":1}`, string(got.Cursor))

		// A cancel asked of a held run is reported at its next save.
		require.NoError(t, st.CancelRun(ctx, db, r.ID, t0.Add(2*time.Minute)))
		got, err = st.GetRun(ctx, db, r.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunRunning, got.Status)
		cancel, err = st.SaveRun(ctx, db, r.ID, "b", p, t0.Add(3*time.Minute))
		require.NoError(t, err)
		require.True(t, cancel)

		require.ErrorIs(t, st.FinishRun(ctx, db, r.ID, "a", p, store.RunCancelled, "", nil, t0.Add(2*time.Minute)), store.ErrLeaseLost)
		require.NoError(t, st.FinishRun(ctx, db, r.ID, "b", p, store.RunCancelled, "", nil, t0.Add(2*time.Minute)))
		require.ErrorIs(t, st.CancelRun(ctx, db, r.ID, t0.Add(2*time.Minute)), store.ErrNoRows, "not running")
		_, err = st.TakeOverRun(ctx, db, "zoho", "c", t0.Add(time.Hour), t0.Add(2*time.Hour))
		require.ErrorIs(t, err, store.ErrNoRows, "a finished run is not taken over")

		// After FinishRun, another run starts.
		r2, err := newRun(t, db, st, "c", t0.Add(time.Hour), t0.Add(time.Hour+time.Minute))
		require.NoError(t, err)
		require.Greater(t, r2.ID, r.ID)

		// One running run per source: another source's run starts beside
		// it, and a second run of that source is refused.
		other := &store.Run{Source: "zoho-eu", Mode: "full", EntityTypes: json.RawMessage(`["product"]`),
			StartedAt: t0.Add(time.Hour), LockedBy: ptr("d"), LockedUntil: ptr(t0.Add(2 * time.Hour))}
		require.NoError(t, st.StartRun(ctx, db, other))
		again := *other
		again.ID = 0
		require.ErrorIs(t, st.StartRun(ctx, db, &again), store.ErrRunRunning)

		// One running run per source and mode: an incremental run starts
		// beside the source's full one; a second incremental is refused.
		inc := again
		inc.Mode = "incremental"
		require.NoError(t, st.StartRun(ctx, db, &inc))
		inc2 := again
		inc2.Mode = "incremental"
		require.ErrorIs(t, st.StartRun(ctx, db, &inc2), store.ErrRunRunning)
		// With both holds expired, TakeOverRun takes one run at a time,
		// the oldest first.
		late := t0.Add(3 * time.Hour)
		got, err = st.TakeOverRun(ctx, db, "zoho-eu", "e", late, late.Add(time.Minute))
		require.NoError(t, err)
		require.Equal(t, other.ID, got.ID)
		got, err = st.TakeOverRun(ctx, db, "zoho-eu", "e", late, late.Add(time.Minute))
		require.NoError(t, err)
		require.Equal(t, inc.ID, got.ID)
		_, err = st.TakeOverRun(ctx, db, "zoho-eu", "e", late, late.Add(time.Minute))
		require.ErrorIs(t, err, store.ErrNoRows, "both are held again")

		// CancelRun on a dead holder cancels at once.
		require.NoError(t, st.CancelRun(ctx, db, r2.ID, t0.Add(2*time.Hour)))
		got, err = st.GetRun(ctx, db, r2.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunCancelled, got.Status)
		require.NotNil(t, got.FinishedAt)
		require.Nil(t, got.LockedBy)
		_, err = newRun(t, db, st, "d", t0.Add(3*time.Hour), t0.Add(3*time.Hour+time.Minute))
		require.NoError(t, err, "the cancelled run no longer blocks a start")

		at, ok, err := st.LastRunStart(ctx, db, "zoho", "full")
		require.NoError(t, err)
		require.True(t, ok)
		require.True(t, t0.Add(3*time.Hour).Equal(at), at)
		_, ok, err = st.LastRunStart(ctx, db, "zoho", "incremental")
		require.NoError(t, err)
		require.False(t, ok)
	})
}

func TestRunsCompareRemote(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		ctx := t.Context()
		require.NoError(t, st.RecordApplied(ctx, db, []store.Applied{
			applied("same", t0, "h"), applied("stale", t0, "h"), applied("gone", t0, "h"),
			applied("changed", t0, "h"), applied("equal", t0, "h"),
		}))
		r, err := newRun(t, db, st, "a", t0, t0.Add(time.Minute))
		require.NoError(t, err)
		require.NoError(t, st.StageRemote(ctx, db, r.ID, "product", []store.Remote{
			{EntityID: "same", Version: ptr(t0)},
			{EntityID: "stale", Version: ptr(t0.Add(time.Hour))},
			{EntityID: "new", Version: ptr(t0)},
			{EntityID: "changed", FieldsHash: "x", LocalHash: "y"},
			{EntityID: "equal", FieldsHash: "x", LocalHash: "x"},
		}))
		n, err := st.CompareRemote(ctx, db, r.ID, "zoho", "product", t0)
		require.NoError(t, err)
		require.Equal(t, int64(4), n)
		drift, err := st.ListDrift(ctx, db, r.ID, 0, true, 100)
		require.NoError(t, err)
		kinds := map[string]string{}
		for _, d := range drift {
			kinds[d.EntityID] = d.Kind
		}
		require.Equal(t, map[string]string{"stale": store.DriftStaleLocal, "new": store.DriftMissingLocal,
			"changed": store.DriftChanged, "gone": store.DriftMissingRemote}, kinds)
		n, err = st.CompareRemote(ctx, db, r.ID, "zoho", "product", t0)
		require.NoError(t, err)
		require.Zero(t, n, "a second compare records nothing again")

		// Nothing when the listing equals what was applied.
		p := store.Progress{}
		require.NoError(t, st.FinishRun(ctx, db, r.ID, "a", p, store.RunCompleted, "", nil, t0))
		r2, err := newRun(t, db, st, "a", t0, t0.Add(time.Minute))
		require.NoError(t, err)
		require.NoError(t, st.StageRemote(ctx, db, r2.ID, "product", []store.Remote{
			{EntityID: "same", Version: ptr(t0)}, {EntityID: "stale", Version: ptr(t0)}, {EntityID: "gone", Version: ptr(t0)},
			{EntityID: "changed", FieldsHash: "y", LocalHash: "y"}, {EntityID: "equal", FieldsHash: "x", LocalHash: "x"},
		}))
		n, err = st.CompareRemote(ctx, db, r2.ID, "zoho", "product", t0)
		require.NoError(t, err)
		require.Zero(t, n)

		// AddDrift skips an entity already recorded in the run.
		d := store.Drift{RunID: r2.ID, EntityType: "product", EntityID: "x", Kind: store.DriftMissingLocal, DetectedAt: t0}
		require.NoError(t, st.AddDrift(ctx, db, []store.Drift{d}))
		d2 := d
		d2.Kind = store.DriftStaleLocal
		require.NoError(t, st.AddDrift(ctx, db, []store.Drift{d2, {RunID: r2.ID, EntityType: "product", EntityID: "y",
			Kind: store.DriftStaleLocal, DetectedAt: t0}}))
		drift, err = st.ListDrift(ctx, db, r2.ID, 0, false, 100)
		require.NoError(t, err)
		require.Len(t, drift, 2)
		require.Equal(t, store.DriftMissingLocal, drift[0].Kind, "the first one kept")
	})
}

// TestRunsCallsLedger: every save of a run's progress records its calls
// per UTC day; a day's count is the sum over its runs, whatever day they
// started, and never goes down when saves race.
func TestRunsCallsLedger(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		ctx := t.Context()
		day := t0.Truncate(24 * time.Hour)
		next := day.Add(24 * time.Hour)
		calls := func(at time.Time, runID int64) (int64, int64) {
			t.Helper()
			all, ofRun, err := st.APICallsOn(ctx, db, "zoho", at, runID)
			require.NoError(t, err)
			return all, ofRun
		}
		on := func(d time.Time, n int64) store.DayCalls { return store.DayCalls{Day: d, Calls: n} }

		// A run of the day before: not today's.
		r0, err := newRun(t, db, st, "a", day.Add(-time.Hour), day.Add(-time.Hour+time.Minute))
		require.NoError(t, err)
		require.NoError(t, st.FinishRun(ctx, db, r0.ID, "a", store.Progress{APICalls: 10,
			Calls: []store.DayCalls{on(day.Add(-time.Hour), 10)}}, store.RunCompleted, "", nil, day))

		r, err := newRun(t, db, st, "a", t0, t0.Add(time.Minute))
		require.NoError(t, err)
		_, err = st.SaveRun(ctx, db, r.ID, "a", store.Progress{APICalls: 5, Calls: []store.DayCalls{on(t0, 5)}}, t0.Add(time.Minute))
		require.NoError(t, err)
		// A save that lost a race to a later one: the higher count stays.
		_, err = st.SaveRun(ctx, db, r.ID, "a", store.Progress{APICalls: 3, Calls: []store.DayCalls{on(t0, 3)}}, t0.Add(time.Minute))
		require.NoError(t, err)
		all, ofRun := calls(t0, r.ID)
		require.Equal(t, [2]int64{5, 5}, [2]int64{all, ofRun})
		all, ofRun = calls(day.Add(-time.Second), r.ID)
		require.Equal(t, [2]int64{10, 0}, [2]int64{all, ofRun}, "the day before")

		// A lost hold saves nothing, the ledger neither.
		_, err = st.SaveRun(ctx, db, r.ID, "b", store.Progress{APICalls: 9, Calls: []store.DayCalls{on(t0, 9)}}, t0.Add(time.Minute))
		require.ErrorIs(t, err, store.ErrLeaseLost)
		require.ErrorIs(t, st.ReleaseRun(ctx, db, r.ID, "b", store.Progress{Calls: []store.DayCalls{on(t0, 9)}}, t0), store.ErrLeaseLost)
		all, _ = calls(t0, r.ID)
		require.Equal(t, int64(5), all)

		// Across midnight: the run's calls of each day on that day's row.
		_, err = st.SaveRun(ctx, db, r.ID, "a", store.Progress{APICalls: 12,
			Calls: []store.DayCalls{on(t0, 8), on(next.Add(time.Minute), 4)}}, t0.Add(time.Minute))
		require.NoError(t, err)
		all, ofRun = calls(t0, r.ID)
		require.Equal(t, [2]int64{8, 8}, [2]int64{all, ofRun})
		all, ofRun = calls(next, r.ID)
		require.Equal(t, [2]int64{4, 4}, [2]int64{all, ofRun})

		// The run ends; another one on the next day adds to it.
		require.NoError(t, st.ReleaseRun(ctx, db, r.ID, "a", store.Progress{APICalls: 13,
			Calls: []store.DayCalls{on(next, 5)}}, t0.Add(time.Minute)))
		got, err := st.TakeOverRun(ctx, db, "zoho", "c", t0.Add(time.Minute), t0.Add(2*time.Minute))
		require.NoError(t, err)
		require.NoError(t, st.FinishRun(ctx, db, got.ID, "c", store.Progress{APICalls: 13,
			Calls: []store.DayCalls{on(next, 5)}}, store.RunCompleted, "", nil, next))
		r2, err := newRun(t, db, st, "d", next, next.Add(time.Minute))
		require.NoError(t, err)
		_, err = st.SaveRun(ctx, db, r2.ID, "d", store.Progress{APICalls: 2, Calls: []store.DayCalls{on(next, 2)}}, next.Add(time.Minute))
		require.NoError(t, err)
		all, ofRun = calls(next, r2.ID)
		require.Equal(t, [2]int64{5 + 2, 2}, [2]int64{all, ofRun})
		all, _ = calls(t0, r2.ID)
		require.Equal(t, int64(8), all)
		all, ofRun, err = st.APICallsOn(ctx, db, "other", next, r2.ID)
		require.NoError(t, err)
		require.Zero(t, all+ofRun, "another source's day")
	})
}

// TestRunsPause: a paused run stays running, without a holder, until its
// time: no other run starts meanwhile, it is not taken over before, and a
// cancel ends it at once; a cancel asked before the pause wins over it.
func TestRunsPause(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		ctx := t.Context()
		midnight := t0.Truncate(24 * time.Hour).Add(24 * time.Hour)
		r, err := newRun(t, db, st, "a", t0, t0.Add(time.Minute))
		require.NoError(t, err)
		p := store.Progress{Cursor: json.RawMessage(`{"type":1,"page":3}`), APICalls: 10, Pages: 3,
			Calls: []store.DayCalls{{Day: t0, Calls: 10}}}
		_, err = st.PauseRun(ctx, db, r.ID, "b", p, midnight, "paused")
		require.ErrorIs(t, err, store.ErrLeaseLost)
		cancel, err := st.PauseRun(ctx, db, r.ID, "a", p, midnight, "paused: the budget")
		require.NoError(t, err)
		require.False(t, cancel)

		got, err := st.GetRun(ctx, db, r.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunRunning, got.Status)
		require.Nil(t, got.LockedBy)
		require.NotNil(t, got.PausedUntil())
		require.True(t, midnight.Equal(*got.PausedUntil()), "%s", got.PausedUntil())
		require.Equal(t, "paused: the budget", *got.Error)
		require.Equal(t, int64(3), got.Pages)
		require.JSONEq(t, `{"type":1,"page":3}`, string(got.Cursor))
		all, _, err := st.APICallsOn(ctx, db, "zoho", t0, r.ID)
		require.NoError(t, err)
		require.Equal(t, int64(10), all)

		_, err = newRun(t, db, st, "b", t0.Add(time.Hour), t0.Add(time.Hour+time.Minute))
		require.ErrorIs(t, err, store.ErrRunRunning, "a paused run holds others off")
		_, err = st.TakeOverRun(ctx, db, "zoho", "b", midnight, midnight.Add(time.Minute))
		require.ErrorIs(t, err, store.ErrNoRows, "not before its time")
		got, err = st.TakeOverRun(ctx, db, "zoho", "b", midnight.Add(time.Second), midnight.Add(time.Minute))
		require.NoError(t, err)
		require.Equal(t, r.ID, got.ID)
		require.Nil(t, got.Error, "resumed: the pause's message is gone")
		require.Nil(t, got.PausedUntil())

		// Paused again, then cancelled: at once.
		_, err = st.PauseRun(ctx, db, r.ID, "b", p, midnight.Add(24*time.Hour), "paused")
		require.NoError(t, err)
		require.NoError(t, st.CancelRun(ctx, db, r.ID, midnight.Add(time.Hour)))
		got, err = st.GetRun(ctx, db, r.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunCancelled, got.Status)
		require.NotNil(t, got.FinishedAt)
		require.Nil(t, got.PausedUntil())

		// A cancel asked of a held run before it pauses: reported, not paused.
		r2, err := newRun(t, db, st, "c", midnight.Add(2*time.Hour), midnight.Add(3*time.Hour))
		require.NoError(t, err)
		require.NoError(t, st.CancelRun(ctx, db, r2.ID, midnight.Add(2*time.Hour)))
		cancel, err = st.PauseRun(ctx, db, r2.ID, "c", p, midnight.Add(24*time.Hour), "paused")
		require.NoError(t, err)
		require.True(t, cancel)
		got, err = st.GetRun(ctx, db, r2.ID)
		require.NoError(t, err)
		require.Equal(t, "c", *got.LockedBy, "still held, to be finished as cancelled")
		require.Nil(t, got.Error)
	})
}

func TestRunsWatermarks(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		ctx := t.Context()
		require.NoError(t, st.SetWatermarks(ctx, db, "zoho", map[string]time.Time{"product": t0, "customer": t0}, t0))
		require.NoError(t, st.SetWatermarks(ctx, db, "zoho", map[string]time.Time{"product": t0.Add(-time.Hour), "customer": t0.Add(time.Hour)}, t0))
		marks, err := st.Watermarks(ctx, db, "zoho")
		require.NoError(t, err)
		require.Len(t, marks, 2)
		require.True(t, t0.Equal(marks["product"]), "never back: %s", marks["product"])
		require.True(t, t0.Add(time.Hour).Equal(marks["customer"]), "forward: %s", marks["customer"])
		marks, err = st.Watermarks(ctx, db, "other")
		require.NoError(t, err)
		require.Empty(t, marks)
	})
}

// TestCompleteRecordsApplied: completing a batch records what each synced
// job applied, from its event: the version and hash, a delete, the record
// only when it has no version of its own; a superseded job applied
// nothing, and an older version completed later never overwrites.
func TestCompleteRecordsApplied(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		versioned := s.event(ent("a"))
		versioned.Version = t0.Add(time.Hour)
		deleted := s.event(ent("b")) // no version of its own: Version == ReceivedAt
		deleted.EventType = "delete"
		superseded := s.event(ent("c"))
		stored, err := st.InsertEvents(s.ctx, db, []store.Ingest{withJob(versioned, 5), withJob(deleted, 5), withJob(superseded, 5)})
		require.NoError(t, err)
		require.Len(t, stored, 3)
		var done []store.Completion
		for _, j := range s.claim("w", 10, t0) {
			outcome := "synced"
			if j.EntityID == "c" {
				outcome = "superseded"
			}
			done = append(done, store.Completion{Job: j, Outcome: outcome})
		}
		require.Len(t, done, 3)
		require.NoError(t, s.tx(func(tx bun.Tx) error {
			got, _, err := st.Complete(s.ctx, tx, "w", done, nil, t0.Add(time.Minute))
			require.NoError(t, err)
			require.Len(t, got, 3)
			return err
		}))

		got, err := st.AppliedOf(s.ctx, db, "zoho", "product", []string{"a", "b", "c"})
		require.NoError(t, err)
		require.Len(t, got, 2, "the superseded job applied nothing")
		byID := map[string]store.Applied{}
		for _, a := range got {
			byID[a.EntityID] = a
		}
		a, b := byID["a"], byID["b"]
		require.True(t, versioned.Version.Equal(a.Version), "version %s", a.Version)
		require.Equal(t, versioned.ContentHash, a.ContentHash)
		require.False(t, a.Deleted)
		require.Nil(t, a.Data, "a versioned record is not kept")
		require.Equal(t, stored[0].ID, a.InboxEventID)
		require.True(t, t0.Add(time.Minute).Equal(a.SyncedAt), "synced at %s", a.SyncedAt)
		require.True(t, b.Deleted)
		require.JSONEq(t, string(deleted.Payload), string(b.Data), "an unversioned record is kept")

		// An older version of a, completed afterwards, leaves the newer.
		older := s.event(ent("a"))
		older.Version = t0.Add(30 * time.Minute)
		_, err = st.InsertEvents(s.ctx, db, []store.Ingest{withJob(older, 5)})
		require.NoError(t, err)
		s.complete("w", t0.Add(2*time.Minute), s.claim("w", 10, t0)...)
		got, err = st.AppliedOf(s.ctx, db, "zoho", "product", []string{"a"})
		require.NoError(t, err)
		require.Equal(t, versioned.ContentHash, got[0].ContentHash)
	})
}
