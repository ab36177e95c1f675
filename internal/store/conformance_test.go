package store_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/tdstest"
)

// errRollback rolls a test's transaction back.
var errRollback = errors.New("roll back")

// storeOnly stores ev without a job and returns its id.
func (s *suite) storeOnly(ev *store.Event) int64 {
	s.t.Helper()
	stored := s.insert(store.Ingest{Event: ev})
	require.Len(s.t, stored, 1)
	require.Nil(s.t, stored[0].JobID)
	return stored[0].ID
}

// unqueued returns a new valid event of e that is not queued.
func (s *suite) unqueued(e store.Entity) *store.Event {
	ev := s.event(e)
	ev.MovedToQueue, ev.QueuedAt = false, nil
	return ev
}

// enqueue runs Enqueue in a transaction of its own.
func (s *suite) enqueue(id int64, e store.Entity, prio int, at time.Time) (*store.Job, error) {
	var job *store.Job
	err := s.tx(func(tx bun.Tx) error {
		var err error
		job, err = s.st.Enqueue(s.ctx, tx, id, e, store.NewJob{Priority: prio, MaxAttempts: 3}, at)
		return err
	})
	return job, err
}

func TestInsertEvents(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		a := s.event(ent("a"))
		a.DeliveryID = ptr("delivery-1")
		a.Metadata = json.RawMessage(`{"ip": "10.0.0.1"}`)
		a.Version = t0.Add(-time.Hour)
		bad := s.invalid(ent("b"))
		c := s.event(ent("c"))

		stored := s.insert(withJob(a, 5), store.Ingest{Event: bad}, withJob(c, 1))
		require.Len(t, stored, 3)
		for i, ev := range []*store.Event{a, bad, c} {
			require.Equal(t, ev.IdempotencyKey, stored[i].IdempotencyKey, "stored in the batch's order")
		}
		require.Less(t, stored[0].ID, stored[1].ID)
		require.Less(t, stored[1].ID, stored[2].ID)
		require.NotNil(t, stored[0].JobID)
		require.Equal(t, ptr(5), stored[0].Priority)
		require.Nil(t, stored[1].JobID, "an invalid event gets no job")
		require.Nil(t, stored[1].Priority)
		require.NotNil(t, stored[2].JobID)
		require.Equal(t, ptr(1), stored[2].Priority)

		ja := s.job(*stored[0].JobID)
		require.Equal(t, stored[0].ID, ja.InboxEventID)
		require.Equal(t, ent("a"), ja.Entity())
		require.Equal(t, "update", ja.EventType)
		require.Equal(t, store.StatusPending, ja.Status)
		require.Equal(t, 5, ja.Priority)
		require.Equal(t, 3, ja.MaxAttempts)
		require.Zero(t, ja.Attempt)
		require.False(t, ja.Blocked)
		require.True(t, t0.Equal(ja.NextRetryAt), "due when received")
		require.True(t, t0.Equal(ja.CreatedAt))
		require.Nil(t, ja.LeasedBy)
		require.Nil(t, ja.LeaseExpiresAt)
		_, err := st.GetJobByEvent(s.ctx, db, stored[1].ID)
		require.ErrorIs(t, err, store.ErrNoRows)
		byEvent, err := st.GetJobByEvent(s.ctx, db, stored[2].ID)
		require.NoError(t, err)
		require.Equal(t, *stored[2].JobID, byEvent.ID)

		ga, err := st.GetEvent(s.ctx, db, stored[0].ID)
		require.NoError(t, err)
		require.Equal(t, a.Source, ga.Source)
		require.Equal(t, a.EventType, ga.EventType)
		require.Equal(t, a.EntityType, ga.EntityType)
		require.Equal(t, a.EntityID, ga.EntityID)
		require.Equal(t, a.IdempotencyKey, ga.IdempotencyKey)
		require.Equal(t, a.DeliveryID, ga.DeliveryID)
		require.Equal(t, a.ContentHash, ga.ContentHash)
		require.JSONEq(t, string(a.Payload), string(ga.Payload))
		require.JSONEq(t, string(a.Metadata), string(ga.Metadata))
		require.True(t, a.Version.Equal(ga.Version))
		require.True(t, ga.IsValid)
		require.Empty(t, ga.ValidationErrors)
		sameTime(t, t0, ga.ValidatedAt)
		require.True(t, ga.MovedToQueue)
		sameTime(t, t0, ga.QueuedAt)
		require.Nil(t, ga.ProcessedAt)
		require.True(t, t0.Equal(ga.ReceivedAt))

		gb, err := st.GetEvent(s.ctx, db, stored[1].ID)
		require.NoError(t, err)
		require.False(t, gb.IsValid)
		require.JSONEq(t, string(bad.ValidationErrors), string(gb.ValidationErrors))
		require.False(t, gb.MovedToQueue)
		require.Nil(t, gb.QueuedAt)
		require.Nil(t, gb.DeliveryID)

		// Existing keys are skipped; the new event of a waits behind a's job.
		d := s.event(ent("a"))
		again := s.insert(withJob(a, 5), withJob(d, 2), store.Ingest{Event: bad})
		require.Len(t, again, 1)
		require.Equal(t, d.IdempotencyKey, again[0].IdempotencyKey)
		require.NotNil(t, again[0].JobID)
		require.Equal(t, ptr(2), again[0].Priority)
		require.True(t, s.job(*again[0].JobID).Blocked)
		require.Equal(t, 4, s.count(`SELECT COUNT(*) FROM tds_inbox_events`))
		require.Equal(t, 3, s.count(`SELECT COUNT(*) FROM tds_sync_queue`))

		// A batch of known keys only stores nothing.
		none, err := st.InsertEvents(s.ctx, db, []store.Ingest{withJob(c, 1), {Event: bad}})
		require.NoError(t, err)
		require.Empty(t, none)

		found, err := st.FindEvents(s.ctx, db, []string{a.IdempotencyKey, bad.IdempotencyKey, d.IdempotencyKey, "missing"})
		require.NoError(t, err)
		require.Len(t, found, 3)
		byKey := map[string]store.Existing{}
		for _, f := range found {
			byKey[f.IdempotencyKey] = f
		}
		fa := byKey[a.IdempotencyKey]
		require.Equal(t, stored[0].ID, fa.ID)
		require.True(t, fa.MovedToQueue)
		require.Equal(t, stored[0].JobID, fa.JobID)
		require.Equal(t, ptr(5), fa.Priority)
		fb := byKey[bad.IdempotencyKey]
		require.Equal(t, stored[1].ID, fb.ID)
		require.False(t, fb.MovedToQueue)
		require.Nil(t, fb.JobID)
		require.Nil(t, fb.Priority)
		require.JSONEq(t, string(bad.ValidationErrors), string(fb.ValidationErrors))
		fd := byKey[d.IdempotencyKey]
		require.Equal(t, again[0].JobID, fd.JobID)
		require.Equal(t, ptr(2), fd.Priority)
	})
}

// TestInsertEventsInTx stores a batch in the caller's transaction: it
// commits or rolls back with it.
func TestInsertEventsInTx(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		rolled := s.event(ent("a"))
		err := s.tx(func(tx bun.Tx) error {
			stored, err := st.InsertEvents(s.ctx, tx, []store.Ingest{withJob(rolled, 5)})
			require.NoError(t, err)
			require.Len(t, stored, 1)
			return errRollback
		})
		require.ErrorIs(t, err, errRollback)
		require.Zero(t, s.count(`SELECT COUNT(*) FROM tds_inbox_events`))
		require.Zero(t, s.count(`SELECT COUNT(*) FROM tds_sync_queue`))

		kept := s.event(ent("a"))
		require.NoError(t, s.tx(func(tx bun.Tx) error {
			_, err := st.InsertEvents(s.ctx, tx, []store.Ingest{withJob(kept, 5)})
			return err
		}))
		require.Equal(t, 1, s.count(`SELECT COUNT(*) FROM tds_sync_queue WHERE NOT blocked`))
	})
}

func TestInsertEventsRefusesNUL(t *testing.T) {
	cases := []struct {
		name   string
		poison func(*store.Event)
	}{
		{"source", func(e *store.Event) { e.Source += "\x00" }},
		{"event type", func(e *store.Event) { e.EventType = "up\x00date" }},
		{"entity type", func(e *store.Event) { e.EntityType += "\x00" }},
		{"entity id", func(e *store.Event) { e.EntityID = "\x00" + e.EntityID }},
		{"idempotency key", func(e *store.Event) { e.IdempotencyKey += "\x00" }},
		{"content hash", func(e *store.Event) { e.ContentHash += "\x00" }},
		{"payload", func(e *store.Event) { e.Payload = json.RawMessage("{\"a\": \"x\x00\"}") }},
		{"metadata", func(e *store.Event) { e.Metadata = json.RawMessage("{\"a\": \"\x00\"}") }},
		{"delivery id", func(e *store.Event) { e.DeliveryID = ptr("d\x00") }},
	}
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				good, bad := s.event(ent("good")), s.event(ent("bad"))
				tc.poison(bad)
				for _, batch := range [][]store.Ingest{
					{withJob(good, 5), withJob(bad, 5)},
					{withJob(good, 5), {Event: bad}},
				} {
					stored, err := st.InsertEvents(s.ctx, db, batch)
					require.ErrorIs(t, err, store.ErrNUL)
					require.Empty(t, stored)
				}
				require.Zero(t, s.count(`SELECT COUNT(*) FROM tds_inbox_events`), "nothing of the batch is stored")
				require.Zero(t, s.count(`SELECT COUNT(*) FROM tds_sync_queue`))
			})
		}
	})
}

// TestInsertEventsBatchOrder: the jobs of one entity in one batch queue in
// the batch's order, the first the head, unless the entity has a head
// already.
func TestInsertEventsBatchOrder(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		a1, b1, a2 := s.event(ent("a")), s.event(ent("b")), s.event(ent("a"))
		aBad, a3 := s.invalid(ent("a")), s.event(ent("a"))
		// Another source or type names another entity.
		other1 := s.event(store.Entity{Source: "books", EntityType: "product", EntityID: "a"})
		other2 := s.event(store.Entity{Source: "zoho", EntityType: "contact", EntityID: "a"})
		stored := s.insert(withJob(a1, 5), withJob(b1, 5), withJob(a2, 1), store.Ingest{Event: aBad},
			withJob(a3, 9), withJob(other1, 5), withJob(other2, 5))
		require.Len(t, stored, 7)
		blocked := map[string]bool{}
		for _, r := range stored {
			if r.JobID != nil {
				blocked[r.IdempotencyKey] = s.job(*r.JobID).Blocked
			}
		}
		require.Equal(t, map[string]bool{
			a1.IdempotencyKey: false, b1.IdempotencyKey: false, a2.IdempotencyKey: true, a3.IdempotencyKey: true,
			other1.IdempotencyKey: false, other2.IdempotencyKey: false,
		}, blocked)

		// With a head in the table, every job of the next batch waits.
		a4, a5, c1 := s.event(ent("a")), s.event(ent("a")), s.event(ent("c"))
		next := s.insert(withJob(a4, 5), withJob(c1, 5), withJob(a5, 5))
		require.Len(t, next, 3)
		require.True(t, s.job(*next[0].JobID).Blocked)
		require.False(t, s.job(*next[1].JobID).Blocked)
		require.True(t, s.job(*next[2].JobID).Blocked)

		// The claim finds one job per entity.
		claimed := s.claim("w", 100, t0)
		require.Equal(t, []int64{*stored[0].JobID, *stored[1].JobID, *stored[5].JobID, *stored[6].JobID, *next[1].JobID}, ids(claimed))
	})
}

// TestHeadRule: a new job, stored by InsertEvents or Enqueue, is blocked
// exactly when its entity has a head.
func TestHeadRule(t *testing.T) {
	type prior func(s *suite, e store.Entity)
	queued := func(s *suite, e store.Entity) *store.Job { return s.queue(e, 5, 3) }
	cases := []struct {
		name        string
		before      prior
		other       *store.Entity // the new job's entity, when not the prior one's
		wantBlocked bool
	}{
		{"no job", func(*suite, store.Entity) {}, nil, false},
		{"only an invalid event", func(s *suite, e store.Entity) { s.insert(store.Ingest{Event: s.invalid(e)}) }, nil, false},
		{"pending head", func(s *suite, e store.Entity) { queued(s, e) }, nil, true},
		{"processing head", func(s *suite, e store.Entity) { s.claimJob(queued(s, e).ID, "w", t0) }, nil, true},
		{"retry head, not due", func(s *suite, e store.Entity) {
			s.fail(s.claimJob(queued(s, e).ID, "w", t0), "w", false, "E", t0.Add(time.Hour))
		}, nil, true},
		{"completed job", func(s *suite, e store.Entity) { s.completeJob(queued(s, e).ID, t0) }, nil, false},
		{"dead letter", func(s *suite, e store.Entity) { s.deadLetter(queued(s, e).ID, "E", t0) }, nil, false},
		{"blocked jobs only (head lost)", func(s *suite, e store.Entity) {
			head := queued(s, e)
			queued(s, e)
			_, err := s.db.ExecContext(s.ctx, `DELETE FROM tds_sync_queue WHERE id = ?`, head.ID)
			require.NoError(s.t, err)
		}, nil, false},
		{"head of another source", func(s *suite, e store.Entity) { queued(s, e) },
			&store.Entity{Source: "books", EntityType: "product"}, false},
		{"head of another type", func(s *suite, e store.Entity) { queued(s, e) },
			&store.Entity{Source: "zoho", EntityType: "contact"}, false},
		{"head of another id", func(s *suite, e store.Entity) { queued(s, e) },
			&store.Entity{Source: "zoho", EntityType: "product", EntityID: "another"}, false},
	}
	paths := []struct {
		name string
		add  func(s *suite, e store.Entity) *store.Job
	}{
		{"InsertEvents", func(s *suite, e store.Entity) *store.Job { return s.queue(e, 5, 3) }},
		{"Enqueue", func(s *suite, e store.Entity) *store.Job {
			j, err := s.enqueue(s.storeOnly(s.unqueued(e)), e, 5, t0)
			require.NoError(s.t, err)
			return j
		}},
	}
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		for _, p := range paths {
			for i, tc := range cases {
				t.Run(p.name+"/"+tc.name, func(t *testing.T) {
					s := newSuite(t, db, st)
					s.seq = 1000 * (i + 1) // keys apart across cases
					if p.name == "Enqueue" {
						s.seq += 100000
					}
					e := ent(fmt.Sprintf("%s-%d", p.name, i))
					tc.before(s, e)
					target := e
					if tc.other != nil {
						target = *tc.other
						target.EntityID += e.EntityID
					}
					j := p.add(s, target)
					require.Equal(t, tc.wantBlocked, j.Blocked, "as returned")
					require.Equal(t, tc.wantBlocked, s.job(j.ID).Blocked, "as stored")
				})
			}
		}
	})
}

func TestClaim(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		a1 := s.queue(ent("a"), 5, 3)
		a2 := s.queue(ent("a"), 1, 3) // blocked behind a1, whatever its priority
		b := s.queue(ent("b"), 1, 3)
		c := s.queue(ent("c"), 1, 3)
		d := s.queue(ent("d"), 3, 3)
		later := s.event(ent("f"))
		later.ReceivedAt = t0.Add(time.Hour)
		f := s.queueEvent(later, 1, 3) // due in an hour
		r := s.queue(ent("r"), 2, 3)
		q := s.queue(ent("q"), 1, 3)
		p := s.queue(ent("p"), 1, 3)
		x := s.queue(ent("x"), 1, 3)
		y := s.queue(ent("y"), 1, 3)
		// r: a retry due now; q: a retry due in a minute; p: held by another
		// worker; x: completed; y: a dead letter.
		s.fail(s.claimJob(r.ID, "w0", t0), "w0", false, "E", t0)
		s.fail(s.claimJob(q.ID, "w0", t0), "w0", false, "E", t0.Add(time.Minute))
		s.claimJob(p.ID, "other", t0)
		s.completeJob(x.ID, t0)
		s.deadLetter(y.ID, "E", t0)

		check := func(owner string, until time.Time, attempt int, jobs []*store.Job) {
			t.Helper()
			for _, j := range jobs {
				for _, got := range []*store.Job{j, s.job(j.ID)} {
					require.Equal(t, store.StatusProcessing, got.Status)
					require.Equal(t, ptr(owner), got.LeasedBy)
					sameTime(t, until, got.LeaseExpiresAt)
					if j.ID == r.ID || j.ID == q.ID {
						require.Equal(t, 2, got.Attempt)
					} else {
						require.Equal(t, attempt, got.Attempt)
					}
				}
			}
		}
		// Claim order is (priority, id): b and c come first.
		first := s.claim("w1", 2, t0)
		require.Equal(t, []int64{b.ID, c.ID}, ids(first))
		check("w1", t0.Add(time.Minute), 1, first)

		second := s.claim("w2", 10, t0)
		require.Equal(t, []int64{a1.ID, d.ID, r.ID}, ids(second))
		check("w2", t0.Add(time.Minute), 1, second)

		require.Empty(t, s.claim("w3", 10, t0), "nothing else is a due head")

		// An hour on, f and q are due; a2 still waits behind a1.
		third := s.claim("w3", 10, t0.Add(time.Hour))
		require.Equal(t, []int64{f.ID, q.ID}, ids(third))
		check("w3", t0.Add(time.Hour+time.Minute), 1, third)
		require.True(t, s.job(a2.ID).Blocked)
		require.Equal(t, store.StatusPending, s.job(a2.ID).Status)
		require.Equal(t, ptr("other"), s.job(p.ID).LeasedBy)
		require.Equal(t, store.StatusCompleted, s.job(x.ID).Status)
		require.Equal(t, store.StatusDeadLetter, s.job(y.ID).Status)

		// ListWaiting shows the waiting jobs in claim order, blocked or not.
		waiting, err := st.ListWaiting(s.ctx, db, 10)
		require.NoError(t, err)
		require.Len(t, waiting, 1)
		require.Equal(t, a2.ID, waiting[0].ID)
	})
}

func TestComplete(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		a1, a2, a3 := s.queue(ent("a"), 5, 3), s.queue(ent("a"), 5, 3), s.queue(ent("a"), 5, 3)
		b1, b2 := s.queue(ent("b"), 5, 3), s.queue(ent("b"), 5, 3)
		held := s.claim("w", 10, t0)
		require.Equal(t, []int64{a1.ID, b1.ID}, ids(held))
		ja, jb := held[0], held[1]
		if ja.ID != a1.ID {
			ja, jb = jb, ja
		}

		// Under a lease the worker does not hold, nothing is completed:
		// fewer ids come back, and the caller rolls back.
		wrong := []struct {
			name  string
			owner string
			job   store.Job
		}{
			{"wrong owner", "intruder", *jb},
			{"wrong attempt", "w", func() store.Job { j := *jb; j.Attempt++; return j }()},
			{"not claimed", "w", *s.job(b2.ID)},
		}
		for _, tc := range wrong {
			t.Run(tc.name, func(t *testing.T) {
				err := s.tx(func(tx bun.Tx) error {
					done := []store.Completion{{Job: ja, Outcome: "synced"}, {Job: &tc.job, Outcome: "synced"}}
					got, _, err := st.Complete(s.ctx, tx, tc.owner, done, nil, t0)
					require.NoError(t, err)
					if tc.owner == "w" {
						require.Equal(t, map[int64]bool{ja.ID: true}, got)
					} else {
						require.Empty(t, got)
					}
					return errRollback
				})
				require.ErrorIs(t, err, errRollback)
				for _, j := range []*store.Job{ja, jb} {
					require.Equal(t, store.StatusProcessing, s.job(j.ID).Status)
				}
				require.Equal(t, []bool{true, true}, s.blocked(a2, b2))
			})
		}

		at := t0.Add(time.Second)
		require.NoError(t, s.tx(func(tx bun.Tx) error {
			got, _, err := st.Complete(s.ctx, tx, "w", []store.Completion{
				{Job: ja, Outcome: "synced", Detail: "v2"},
				{Job: jb, Outcome: "superseded"},
			}, nil, at)
			require.NoError(t, err)
			require.Equal(t, map[int64]bool{ja.ID: true, jb.ID: true}, got)
			return nil
		}))
		done := s.job(a1.ID)
		require.Equal(t, store.StatusCompleted, done.Status)
		require.Equal(t, ptr("synced"), done.Outcome)
		require.Equal(t, ptr("v2"), done.OutcomeDetail)
		sameTime(t, at, done.CompletedAt)
		require.Nil(t, done.LeaseExpiresAt)
		require.Equal(t, 1, done.Attempt)
		require.Nil(t, s.job(b1.ID).OutcomeDetail, "an empty detail stores none")
		// Each entity's next job is its head; a3 still waits.
		require.Equal(t, []bool{false, true, false}, s.blocked(a2, a3, b2))
		require.Equal(t, []int64{a2.ID, b2.ID}, ids(s.claim("w", 10, at)))

		// The completed event counts as processed.
		ev, err := st.GetEvent(s.ctx, db, a1.InboxEventID)
		require.NoError(t, err)
		sameTime(t, at, ev.ProcessedAt)
	})
}

// TestCompleteDeadInBatch: a job dead-lettered in a batch's transaction
// hands its entity on when the batch completes.
func TestCompleteDeadInBatch(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		a1, a2 := s.queue(ent("a"), 5, 3), s.queue(ent("a"), 5, 3)
		b1, b2 := s.queue(ent("b"), 5, 3), s.queue(ent("b"), 5, 3)
		c1, c2 := s.queue(ent("c"), 5, 3), s.queue(ent("c"), 5, 3)
		held := s.claim("w", 10, t0)
		require.Equal(t, []int64{a1.ID, b1.ID, c1.ID}, ids(held))
		byID := map[int64]*store.Job{}
		for _, j := range held {
			byID[j.ID] = j
		}
		require.NoError(t, s.tx(func(tx bun.Tx) error {
			dead := byID[b1.ID]
			if err := st.RecordFailure(s.ctx, tx, store.Failure{Job: dead, Owner: "w", DeadLetter: true,
				RetryAt: t0, Error: "permanent", Code: "P"}, t0); err != nil {
				return err
			}
			got, _, err := st.Complete(s.ctx, tx, "w", []store.Completion{{Job: byID[a1.ID], Outcome: "synced"}},
				[]*store.Job{dead}, t0)
			require.NoError(t, err)
			require.Equal(t, map[int64]bool{a1.ID: true}, got)
			return nil
		}))
		require.Equal(t, []bool{false, false, true}, s.blocked(a2, b2, c2))
		require.Equal(t, store.StatusDeadLetter, s.job(b1.ID).Status)

		// A batch of dead letters alone hands on too.
		require.NoError(t, s.tx(func(tx bun.Tx) error {
			dead := byID[c1.ID]
			if err := st.RecordFailure(s.ctx, tx, store.Failure{Job: dead, Owner: "w", DeadLetter: true,
				RetryAt: t0, Error: "permanent"}, t0); err != nil {
				return err
			}
			got, _, err := st.Complete(s.ctx, tx, "w", nil, []*store.Job{dead}, t0)
			require.NoError(t, err)
			require.Empty(t, got)
			return nil
		}))
		require.False(t, s.job(c2.ID).Blocked)
	})
}

func TestRecordFailure(t *testing.T) {
	cases := []struct {
		name       string
		dead       bool
		retryAt    time.Time
		wantStatus string
	}{
		{"retry", false, t0.Add(5 * time.Minute), store.StatusRetry},
		{"dead letter", true, t0, store.StatusDeadLetter},
	}
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				s := newSuite(t, db, st)
				s.seq = 1000 * (i + 1)
				e := ent(tc.name)
				j1, j2 := s.queue(e, 5, 3), s.queue(e, 5, 3)
				held := s.claimJob(j1.ID, "w", t0)
				at := t0.Add(time.Second)
				started := t0
				require.NoError(t, s.tx(func(tx bun.Tx) error {
					return st.RecordFailure(s.ctx, tx, store.Failure{Job: held, Owner: "w", DeadLetter: tc.dead,
						RetryAt: tc.retryAt, Error: "boom", Code: "E42", StartedAt: &started}, at)
				}))
				got := s.job(j1.ID)
				require.Equal(t, tc.wantStatus, got.Status)
				require.True(t, tc.retryAt.Equal(got.NextRetryAt))
				require.Equal(t, ptr("boom"), got.LastError)
				require.Equal(t, ptr("E42"), got.LastErrorCode)
				require.Nil(t, got.LeasedBy)
				require.Nil(t, got.LeaseExpiresAt)
				require.Equal(t, 1, got.Attempt)

				attempts, err := st.Attempts(s.ctx, db, j1.ID)
				require.NoError(t, err)
				require.Len(t, attempts, 1)
				a := attempts[0]
				require.Equal(t, j1.ID, a.JobID)
				require.Equal(t, 1, a.Attempt)
				require.Equal(t, ptr("w"), a.Worker)
				require.Equal(t, "boom", a.Error)
				require.Equal(t, ptr("E42"), a.ErrorCode)
				sameTime(t, started, a.StartedAt)
				require.True(t, at.Equal(a.FailedAt))

				ev, err := st.GetEvent(s.ctx, db, j1.InboxEventID)
				require.NoError(t, err)
				if tc.dead {
					sameTime(t, at, ev.ProcessedAt, "a dead letter's event is processed")
				} else {
					require.Nil(t, ev.ProcessedAt)
				}
				// RecordFailure alone does not hand the entity on.
				require.True(t, s.job(j2.ID).Blocked)

				if !tc.dead {
					// The retry stays its entity's head.
					again := s.claimJob(j1.ID, "w", tc.retryAt)
					require.Equal(t, 2, again.Attempt)
					require.True(t, s.job(j2.ID).Blocked)
				}
			})
		}

		t.Run("long error is cut", func(t *testing.T) {
			s := newSuite(t, db, st)
			s.seq = 100000
			j := s.claimJob(s.queue(ent("long"), 5, 3).ID, "w", t0)
			require.NoError(t, s.tx(func(tx bun.Tx) error {
				return st.RecordFailure(s.ctx, tx, store.Failure{Job: j, Owner: "w", RetryAt: t0,
					Error: strings.Repeat("x", store.MaxErrorLen+100)}, t0)
			}))
			got := s.job(j.ID)
			require.Len(t, *got.LastError, store.MaxErrorLen)
			require.Nil(t, got.LastErrorCode, "an empty code stores none")
			attempts, err := st.Attempts(s.ctx, db, j.ID)
			require.NoError(t, err)
			require.Len(t, attempts, 1)
			require.Len(t, attempts[0].Error, store.MaxErrorLen)
			require.Nil(t, attempts[0].ErrorCode)
			require.Nil(t, attempts[0].StartedAt)
		})
	})
}

func TestRecordFailureLeaseLost(t *testing.T) {
	cases := []struct {
		name string
		// lose returns the job and owner of a lease no longer held.
		lose func(s *suite, j *store.Job) (*store.Job, string)
	}{
		{"wrong owner", func(_ *suite, j *store.Job) (*store.Job, string) { return j, "intruder" }},
		{"rescued and claimed again", func(s *suite, j *store.Job) (*store.Job, string) {
			rescued, err := s.st.RescueExpired(s.ctx, s.db, t0.Add(2*time.Minute), "expired", "lease")
			require.NoError(s.t, err)
			require.Contains(s.t, ids(ptrs(rescued)), j.ID)
			again := s.claimJob(j.ID, "w", t0.Add(2*time.Minute))
			require.Equal(s.t, 2, again.Attempt)
			return j, "w" // same owner, older attempt
		}},
		{"failed already", func(s *suite, j *store.Job) (*store.Job, string) {
			s.fail(j, "w", false, "E", t0.Add(time.Hour))
			return j, "w"
		}},
	}
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				s := newSuite(t, db, st)
				s.seq = 1000 * (i + 1)
				j := s.claimJob(s.queue(ent(tc.name), 5, 3).ID, "w", t0)
				stale, owner := tc.lose(s, j)
				before, err := st.Attempts(s.ctx, db, j.ID)
				require.NoError(t, err)
				wantRow := s.job(j.ID)
				for _, dead := range []bool{false, true} {
					err := s.tx(func(tx bun.Tx) error {
						return st.RecordFailure(s.ctx, tx, store.Failure{Job: stale, Owner: owner, DeadLetter: dead,
							RetryAt: t0, Error: "late"}, t0.Add(3*time.Minute))
					})
					require.ErrorIs(t, err, store.ErrLeaseLost)
				}
				after, err := st.Attempts(s.ctx, db, j.ID)
				require.NoError(t, err)
				require.Equal(t, before, after, "no attempt recorded")
				require.Equal(t, wantRow, s.job(j.ID), "the job is untouched")
			})
		}
	})
}

func TestFinishDeadLetter(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		a1, a2, a3 := s.queue(ent("a"), 5, 3), s.queue(ent("a"), 5, 3), s.queue(ent("a"), 5, 3)
		j := s.claimJob(a1.ID, "w", t0)
		require.NoError(t, s.tx(func(tx bun.Tx) error {
			if err := st.RecordFailure(s.ctx, tx, store.Failure{Job: j, Owner: "w", DeadLetter: true, RetryAt: t0,
				Error: "permanent"}, t0); err != nil {
				return err
			}
			require.Equal(t, []bool{true, true}, []bool{s.jobIn(tx, a2.ID).Blocked, s.jobIn(tx, a3.ID).Blocked})
			return st.FinishDeadLetter(s.ctx, tx, j, t0)
		}))
		require.Equal(t, []bool{false, true}, s.blocked(a2, a3))
		require.Equal(t, []int64{a2.ID}, ids(s.claim("w", 10, t0)))

		// An entity with nothing waiting: nothing to hand on.
		lone := s.claimJob(s.queue(ent("lone"), 5, 3).ID, "w", t0)
		s.fail(lone, "w", true, "P", t0)
		require.Equal(t, store.StatusDeadLetter, s.job(lone.ID).Status)
	})
}

// ptrs returns pointers to the jobs.
func ptrs(jobs []store.Job) []*store.Job {
	out := make([]*store.Job, len(jobs))
	for i := range jobs {
		out[i] = &jobs[i]
	}
	return out
}

// jobIn reads a job in tx.
func (s *suite) jobIn(tx bun.IDB, id int64) *store.Job {
	s.t.Helper()
	j, err := s.st.GetJob(s.ctx, tx, id)
	require.NoError(s.t, err)
	return j
}

func TestHandBack(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		a1, a2 := s.queue(ent("a"), 5, 3), s.queue(ent("a"), 5, 3)
		b := s.queue(ent("b"), 5, 3)
		c := s.queue(ent("c"), 5, 3)
		d := s.queue(ent("d"), 5, 3)
		// b failed once and was claimed again: its second attempt.
		s.fail(s.claimJob(b.ID, "w", t0), "w", false, "E", t0)
		s.claimJob(d.ID, "v", t0)
		held := map[int64]*store.Job{}
		for _, j := range s.claim("w", 10, t0) {
			held[j.ID] = j
		}
		require.Len(t, held, 3)
		require.Equal(t, 2, held[b.ID].Attempt)

		wrongAttempt := store.LeaseOf(held[c.ID])
		wrongAttempt.Attempt++
		at := t0.Add(time.Minute)
		back, err := st.HandBack(s.ctx, db, "w", []store.Lease{
			store.LeaseOf(held[a1.ID]), store.LeaseOf(held[b.ID]), wrongAttempt, {JobID: d.ID, Attempt: 1},
		}, at)
		require.NoError(t, err)
		slices.SortFunc(back, func(x, y store.HandedBack) int { return int(x.ID - y.ID) })
		require.Equal(t, []store.HandedBack{
			{ID: a1.ID, Attempt: 0, Status: store.StatusPending},
			{ID: b.ID, Attempt: 1, Status: store.StatusRetry},
		}, back)
		for _, id := range []int64{a1.ID, b.ID} {
			j := s.job(id)
			require.Nil(t, j.LeasedBy)
			require.Nil(t, j.LeaseExpiresAt)
			require.True(t, at.Equal(j.NextRetryAt))
		}
		require.Equal(t, store.StatusProcessing, s.job(c.ID).Status)
		require.Equal(t, ptr("v"), s.job(d.ID).LeasedBy, "another owner's lease is kept")

		// a1 is still its entity's head.
		require.True(t, s.job(a2.ID).Blocked)
		require.Empty(t, s.claim("w", 10, t0), "not due before the hand-back time")
		again := s.claim("w", 10, at)
		require.Equal(t, []int64{a1.ID, b.ID}, ids(again))
	})
}

func TestRenewLeases(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		for _, id := range []string{"a", "b", "c", "d"} {
			s.queue(ent(id), 5, 3)
		}
		mine := s.claim("w", 3, t0)
		require.Len(t, mine, 3)
		theirs := s.claim("v", 10, t0)
		require.Len(t, theirs, 1)
		s.complete("w", t0, mine[2])

		stale := store.LeaseOf(mine[1])
		stale.Attempt++
		until := t0.Add(10 * time.Minute)
		n, err := st.RenewLeases(s.ctx, db, "w", []store.Lease{
			store.LeaseOf(mine[0]), stale, store.LeaseOf(mine[2]), store.LeaseOf(theirs[0]),
		}, until)
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
		sameTime(t, until, s.job(mine[0].ID).LeaseExpiresAt)
		sameTime(t, t0.Add(time.Minute), s.job(mine[1].ID).LeaseExpiresAt)
		sameTime(t, t0.Add(time.Minute), s.job(theirs[0].ID).LeaseExpiresAt)
		require.Nil(t, s.job(mine[2].ID).LeaseExpiresAt)

		n, err = st.RenewLeases(s.ctx, db, "w", nil, until)
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

func TestRescueExpired(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		r := s.queue(ent("r"), 1, 3)
		d, d2 := s.queue(ent("d"), 1, 1), s.queue(ent("d"), 1, 1)
		require.Equal(t, []int64{r.ID, d.ID}, ids(s.claim("w", 10, t0))) // leased until t0+1m
		edge := s.queue(ent("edge"), 1, 3)
		require.Equal(t, []int64{edge.ID}, ids(s.claim("w", 10, t0.Add(time.Minute)))) // until t0+2m
		live := s.queue(ent("live"), 1, 3)
		require.Equal(t, []int64{live.ID}, ids(s.claim("w", 10, t0.Add(90*time.Second)))) // until t0+2m30s

		at := t0.Add(2 * time.Minute)
		rescued, err := st.RescueExpired(s.ctx, db, at, "lease expired", "lease_expired")
		require.NoError(t, err)
		require.Len(t, rescued, 2)
		byID := map[int64]store.Job{}
		for _, j := range rescued {
			byID[j.ID] = j
			require.Equal(t, ptr("w"), j.LeasedBy, "names the old holder")
		}
		require.Equal(t, store.StatusRetry, byID[r.ID].Status)
		require.Equal(t, store.StatusDeadLetter, byID[d.ID].Status)

		gr := s.job(r.ID)
		require.Equal(t, store.StatusRetry, gr.Status)
		require.True(t, at.Equal(gr.NextRetryAt))
		require.Equal(t, ptr("lease expired"), gr.LastError)
		require.Equal(t, ptr("lease_expired"), gr.LastErrorCode)
		require.Nil(t, gr.LeaseExpiresAt)
		require.Equal(t, 1, gr.Attempt)
		gd := s.job(d.ID)
		require.Equal(t, store.StatusDeadLetter, gd.Status)
		require.Equal(t, ptr("lease_expired"), gd.LastErrorCode)
		for _, id := range []int64{r.ID, d.ID} {
			attempts, err := st.Attempts(s.ctx, db, id)
			require.NoError(t, err)
			require.Len(t, attempts, 1)
			require.Equal(t, 1, attempts[0].Attempt)
			require.Equal(t, ptr("w"), attempts[0].Worker)
			require.Equal(t, "lease expired", attempts[0].Error)
			require.Equal(t, ptr("lease_expired"), attempts[0].ErrorCode)
			require.True(t, at.Equal(attempts[0].FailedAt))
		}
		ev, err := st.GetEvent(s.ctx, db, d.InboxEventID)
		require.NoError(t, err)
		sameTime(t, at, ev.ProcessedAt, "a dead letter's event is processed")
		evr, err := st.GetEvent(s.ctx, db, r.InboxEventID)
		require.NoError(t, err)
		require.Nil(t, evr.ProcessedAt)
		require.False(t, s.job(d2.ID).Blocked, "the dead letter's entity gets its next job")

		// A lease that ends at the rescue time, or later, is kept.
		require.Equal(t, store.StatusProcessing, s.job(edge.ID).Status)
		require.Equal(t, store.StatusProcessing, s.job(live.ID).Status)
		none, err := st.RescueExpired(s.ctx, db, at, "lease expired", "lease_expired")
		require.NoError(t, err)
		require.Empty(t, none)

		// The retry is claimable again, as its second attempt, with d2.
		again := s.claim("w", 10, at)
		require.Equal(t, []int64{r.ID, d2.ID}, ids(again))
	})
}

func TestRepairHeads(t *testing.T) {
	cases := []struct {
		name     string
		breakSQL string // a statement on the head's id
		// wantHead is the index, among the entity's three jobs, of the job
		// repaired into its head.
		wantHead int
	}{
		{"head deleted", `DELETE FROM tds_sync_queue WHERE id = ?`, 1},
		{"head blocked by hand", `UPDATE tds_sync_queue SET blocked = TRUE WHERE id = ?`, 0},
	}
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		// Healthy entities: a waiting head and one in processing.
		h1, h2 := s.queue(ent("healthy"), 5, 3), s.queue(ent("healthy"), 5, 3)
		p1, p2 := s.queue(ent("running"), 5, 3), s.queue(ent("running"), 5, 3)
		s.claimJob(p1.ID, "w", t0)
		n, err := st.RepairHeads(s.ctx, db, t0)
		require.NoError(t, err)
		require.Zero(t, n, "nothing to repair")

		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e := ent(tc.name)
				jobs := []*store.Job{s.queue(e, 5, 3), s.queue(e, 5, 3), s.queue(e, 5, 3)}
				_, err := db.ExecContext(s.ctx, tc.breakSQL, jobs[0].ID)
				require.NoError(t, err)
				require.Empty(t, s.claimOf(e, t0), "stuck")

				n, err := st.RepairHeads(s.ctx, db, t0)
				require.NoError(t, err)
				require.Equal(t, int64(1), n)
				for i := tc.wantHead; i < len(jobs); i++ {
					require.Equal(t, i != tc.wantHead, s.job(jobs[i].ID).Blocked, "job %d", i)
				}
				n, err = st.RepairHeads(s.ctx, db, t0)
				require.NoError(t, err)
				require.Zero(t, n, "repaired already")
				require.Equal(t, []int64{jobs[tc.wantHead].ID}, s.claimOf(e, t0))
				require.Equal(t, []bool{false, true, true}, s.blocked(h1, h2, p2))
			})
		}
		_ = p2
	})
}

// claimOf claims every claimable job, hands them back, and returns the ids
// of e's.
func (s *suite) claimOf(e store.Entity, at time.Time) []int64 {
	s.t.Helper()
	var mine []int64
	var leases []store.Lease
	for _, j := range s.claim("probe", 1000, at) {
		leases = append(leases, store.LeaseOf(j))
		if j.Entity() == e {
			mine = append(mine, j.ID)
		}
	}
	if len(leases) > 0 {
		_, err := s.st.HandBack(s.ctx, s.db, "probe", leases, at)
		require.NoError(s.t, err)
	}
	return mine
}

func TestRetryDeadLetters(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		retry := func(f store.DeadLetterFilter, at time.Time) int64 {
			t.Helper()
			var n int64
			require.NoError(t, s.tx(func(tx bun.Tx) error {
				var err error
				n, err = st.RetryDeadLetters(s.ctx, tx, f, at)
				return err
			}))
			return n
		}
		at := t0.Add(time.Minute)

		t.Run("by id, no head", func(t *testing.T) {
			a1 := s.deadLetter(s.queue(ent("a"), 5, 3).ID, "A", t0)
			require.Equal(t, int64(1), retry(store.DeadLetterFilter{ID: a1.ID}, at))
			j := s.job(a1.ID)
			require.Equal(t, store.StatusPending, j.Status)
			require.Zero(t, j.Attempt, "a fresh set of attempts")
			require.False(t, j.Blocked)
			require.True(t, at.Equal(j.NextRetryAt))
			require.Nil(t, j.LeasedBy)
			ev, err := st.GetEvent(s.ctx, db, a1.InboxEventID)
			require.NoError(t, err)
			require.Nil(t, ev.ProcessedAt, "the event is unprocessed again")
			require.Equal(t, []int64{a1.ID}, s.claimOf(ent("a"), at))
			require.Zero(t, retry(store.DeadLetterFilter{ID: a1.ID}, at), "not a dead letter any more")
		})

		t.Run("by id, behind the head", func(t *testing.T) {
			b1, b2 := s.queue(ent("b"), 5, 3), s.queue(ent("b"), 5, 3)
			s.deadLetter(b1.ID, "B", t0)
			require.False(t, s.job(b2.ID).Blocked, "b2 took over")
			require.Equal(t, int64(1), retry(store.DeadLetterFilter{ID: b1.ID}, at))
			require.True(t, s.job(b1.ID).Blocked, "b1 waits behind b2")
			require.Equal(t, []int64{b2.ID}, s.claimOf(ent("b"), at))
			s.completeJob(b2.ID, at)
			require.False(t, s.job(b1.ID).Blocked)
			require.Equal(t, []int64{b1.ID}, s.claimOf(ent("b"), at))
		})

		t.Run("by filter", func(t *testing.T) {
			c1, c2 := s.queue(ent("c"), 5, 3), s.queue(ent("c"), 5, 3)
			s.deadLetter(c1.ID, "C", t0)
			s.deadLetter(c2.ID, "C", t0)
			order := store.Entity{Source: "zoho", EntityType: "order", EntityID: "o"}
			o1 := s.deadLetter(s.queue(order, 5, 3).ID, "C", t0)
			c3 := s.deadLetter(s.queue(ent("c3"), 5, 3).ID, "other", t0)

			n, err := st.CountDeadLetters(s.ctx, db, store.DeadLetterFilter{ErrorCode: "C"})
			require.NoError(t, err)
			require.Equal(t, int64(3), n)
			listed, err := st.ListDeadLetters(s.ctx, db, store.DeadLetterFilter{EntityType: "product", ErrorCode: "C", Limit: 10})
			require.NoError(t, err)
			require.Len(t, listed, 2)
			require.Equal(t, []int64{c2.ID, c1.ID}, []int64{listed[0].ID, listed[1].ID}, "newest first")

			require.Equal(t, int64(2), retry(store.DeadLetterFilter{EntityType: "product", ErrorCode: "C", Limit: 1}, at),
				"Limit aside")
			// The oldest of the entity's retried jobs is its head.
			require.Equal(t, []bool{false, true}, s.blocked(c1, c2))
			require.Equal(t, store.StatusDeadLetter, s.job(o1.ID).Status)
			require.Equal(t, store.StatusDeadLetter, s.job(c3.ID).Status)
			for _, j := range []*store.Job{c1, c2} {
				ev, err := st.GetEvent(s.ctx, db, j.InboxEventID)
				require.NoError(t, err)
				require.Nil(t, ev.ProcessedAt)
			}
			require.Zero(t, retry(store.DeadLetterFilter{ErrorCode: "none"}, at))
			require.Equal(t, int64(2), retry(store.DeadLetterFilter{}, at), "the rest")
			require.Equal(t, store.StatusPending, s.job(o1.ID).Status)
		})

		t.Run("not a dead letter", func(t *testing.T) {
			p := s.queue(ent("p"), 5, 3)
			require.Zero(t, retry(store.DeadLetterFilter{ID: p.ID}, at))
			require.Zero(t, retry(store.DeadLetterFilter{ID: 1 << 40}, at))
		})
	})
}

func TestDiscardDeadLetter(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		discard := func(id int64, at time.Time) error {
			return s.tx(func(tx bun.Tx) error { return st.DiscardDeadLetter(s.ctx, tx, id, "obsolete", at) })
		}
		dl := s.deadLetter(s.queue(ent("a"), 5, 3).ID, "E", t0)
		at := t0.Add(time.Minute)
		require.NoError(t, discard(dl.ID, at))
		j := s.job(dl.ID)
		require.Equal(t, store.StatusCompleted, j.Status)
		require.Equal(t, ptr(store.OutcomeDiscarded), j.Outcome)
		require.Equal(t, ptr("obsolete"), j.OutcomeDetail)
		sameTime(t, at, j.CompletedAt)
		ev, err := st.GetEvent(s.ctx, db, dl.InboxEventID)
		require.NoError(t, err)
		sameTime(t, at, ev.ProcessedAt)

		pending := s.queue(ent("b"), 5, 3)
		done := s.queue(ent("c"), 5, 3)
		s.completeJob(done.ID, t0)
		for name, id := range map[string]int64{
			"discarded already": dl.ID, "pending": pending.ID, "completed": done.ID, "missing": 1 << 40,
		} {
			t.Run(name, func(t *testing.T) {
				require.ErrorIs(t, discard(id, at), store.ErrNoRows)
			})
		}
		require.Equal(t, store.StatusPending, s.job(pending.ID).Status)
	})
}

func TestEnqueue(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		e := ent("a")
		id := s.storeOnly(s.unqueued(e))
		at := t0.Add(time.Minute)

		j, err := s.enqueue(id, e, 4, at)
		require.NoError(t, err)
		require.NotZero(t, j.ID)
		got := s.job(j.ID)
		require.Equal(t, id, got.InboxEventID)
		require.Equal(t, e, got.Entity())
		require.Equal(t, "update", got.EventType)
		require.Equal(t, store.StatusPending, got.Status)
		require.Equal(t, 4, got.Priority)
		require.Equal(t, 3, got.MaxAttempts)
		require.False(t, got.Blocked)
		require.True(t, at.Equal(got.NextRetryAt))
		ev, err := st.GetEvent(s.ctx, db, id)
		require.NoError(t, err)
		require.True(t, ev.MovedToQueue)
		sameTime(t, at, ev.QueuedAt)

		// Queued already: the same job, and the first queue time stands.
		again, err := s.enqueue(id, e, 9, at.Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, j.ID, again.ID)
		require.Equal(t, 4, again.Priority)
		ev, err = st.GetEvent(s.ctx, db, id)
		require.NoError(t, err)
		sameTime(t, at, ev.QueuedAt)
		require.Equal(t, 1, s.count(`SELECT COUNT(*) FROM tds_sync_queue`))

		refused := []struct {
			name    string
			event   *store.Event
			as      store.Entity
			wantErr error
		}{
			{"invalid", s.invalid(ent("b")), ent("b"), store.ErrNotValid},
			{"another source", s.unqueued(ent("c")), store.Entity{Source: "books", EntityType: "product", EntityID: "c"}, store.ErrEntityMismatch},
			{"another type", s.unqueued(ent("d")), store.Entity{Source: "zoho", EntityType: "order", EntityID: "d"}, store.ErrEntityMismatch},
			{"another id", s.unqueued(ent("e")), ent("e2"), store.ErrEntityMismatch},
		}
		for _, tc := range refused {
			t.Run(tc.name, func(t *testing.T) {
				id := s.storeOnly(tc.event)
				_, err := s.enqueue(id, tc.as, 5, at)
				require.ErrorIs(t, err, tc.wantErr)
				_, err = st.GetJobByEvent(s.ctx, db, id)
				require.ErrorIs(t, err, store.ErrNoRows)
				ev, err := st.GetEvent(s.ctx, db, id)
				require.NoError(t, err)
				require.False(t, ev.MovedToQueue)
			})
		}
		t.Run("missing", func(t *testing.T) {
			_, err := s.enqueue(1<<40, e, 5, at)
			require.ErrorIs(t, err, store.ErrNoRows)
		})
	})
}

func TestListEvents(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		books := func(typ, id string) store.Entity { return store.Entity{Source: "books", EntityType: typ, EntityID: id} }
		zoho := func(typ, id string) store.Entity { return store.Entity{Source: "zoho", EntityType: typ, EntityID: id} }
		at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
		ids := map[string]int64{}

		// e1: queued, its job completed (processed by implication).
		e1 := s.event(zoho("product", "1"))
		j1 := s.queueEvent(e1, 5, 3)
		ids["e1"] = j1.InboxEventID
		s.completeJob(j1.ID, at(10))
		// e2: invalid, marked processed.
		e2 := s.invalid(zoho("product", "2"))
		e2.EventType, e2.ReceivedAt = "create", at(1)
		ids["e2"] = s.storeOnly(e2)
		ok, err := st.MarkProcessed(s.ctx, db, ids["e2"], at(11))
		require.NoError(t, err)
		require.True(t, ok)
		// e3: queued, its job pending.
		e3 := s.event(books("contact", "1"))
		e3.ReceivedAt = at(2)
		ids["e3"] = s.queueEvent(e3, 5, 3).InboxEventID
		// e4: valid, not queued.
		e4 := s.unqueued(zoho("contact", "3"))
		e4.EventType, e4.ReceivedAt = "delete", at(3)
		ids["e4"] = s.storeOnly(e4)
		// e5: queued, dead-lettered (processed).
		e5 := s.event(books("product", "1"))
		e5.ReceivedAt = at(4)
		j5 := s.queueEvent(e5, 5, 3)
		ids["e5"] = j5.InboxEventID
		s.deadLetter(j5.ID, "E", at(4))

		yes, no := ptr(true), ptr(false)
		cases := []struct {
			name string
			f    store.EventFilter
			want []string
		}{
			{"all, newest first", store.EventFilter{}, []string{"e5", "e4", "e3", "e2", "e1"}},
			{"source", store.EventFilter{Source: "books"}, []string{"e5", "e3"}},
			{"entity type", store.EventFilter{EntityType: "contact"}, []string{"e4", "e3"}},
			{"entity id", store.EventFilter{EntityID: "1"}, []string{"e5", "e3", "e1"}},
			{"event type", store.EventFilter{EventType: "update"}, []string{"e5", "e3", "e1"}},
			{"valid", store.EventFilter{Valid: yes}, []string{"e5", "e4", "e3", "e1"}},
			{"invalid", store.EventFilter{Valid: no}, []string{"e2"}},
			{"queued", store.EventFilter{Queued: yes}, []string{"e5", "e3", "e1"}},
			{"not queued", store.EventFilter{Queued: no}, []string{"e4", "e2"}},
			{"processed", store.EventFilter{Processed: yes}, []string{"e5", "e2", "e1"}},
			{"unprocessed", store.EventFilter{Processed: no}, []string{"e4", "e3"}},
			{"since", store.EventFilter{Since: at(2)}, []string{"e5", "e4", "e3"}},
			{"until", store.EventFilter{Until: at(2)}, []string{"e2", "e1"}},
			{"since and until", store.EventFilter{Since: at(1), Until: at(3)}, []string{"e3", "e2"}},
			{"limit", store.EventFilter{Limit: 2}, []string{"e5", "e4"}},
			{"oldest first", store.EventFilter{Oldest: true}, []string{"e1", "e2", "e3", "e4", "e5"}},
			{"oldest first, limit", store.EventFilter{Oldest: true, Limit: 2}, []string{"e1", "e2"}},
			{"combined", store.EventFilter{Source: "zoho", Valid: yes, Processed: no}, []string{"e4"}},
			{"entity", store.EventFilter{Source: "zoho", EntityType: "product", EntityID: "1"}, []string{"e1"}},
			{"nothing", store.EventFilter{Source: "nowhere"}, []string{}},
		}
		list := func(f store.EventFilter) []string {
			t.Helper()
			if f.Limit == 0 {
				f.Limit = 100
			}
			evs, err := st.ListEvents(s.ctx, db, f)
			require.NoError(t, err)
			names := []string{}
			for _, ev := range evs {
				for name, id := range ids {
					if id == ev.ID {
						names = append(names, name)
					}
				}
			}
			require.Len(t, names, len(evs))
			return names
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { require.Equal(t, tc.want, list(tc.f)) })
		}
		// BeforeID is the pager: each page starts below the last one.
		t.Run("paging", func(t *testing.T) {
			var pages [][]string
			f := store.EventFilter{Limit: 2}
			for range 4 {
				page := list(f)
				pages = append(pages, page)
				if len(page) == 0 {
					break
				}
				f.BeforeID = ids[page[len(page)-1]]
			}
			require.Equal(t, [][]string{{"e5", "e4"}, {"e3", "e2"}, {"e1"}, {}}, pages)
			require.Equal(t, []string{"e2", "e1"}, list(store.EventFilter{BeforeID: ids["e3"]}))
			require.Equal(t, []string{"e1", "e2"}, list(store.EventFilter{BeforeID: ids["e3"], Oldest: true}))
		})
		t.Run("processed time", func(t *testing.T) {
			evs, err := st.ListEvents(s.ctx, db, store.EventFilter{Processed: yes, Oldest: true, Limit: 10})
			require.NoError(t, err)
			require.Len(t, evs, 3)
			sameTime(t, at(10), evs[0].ProcessedAt, "e1: its job's completion")
			sameTime(t, at(11), evs[1].ProcessedAt, "e2: marked")
			sameTime(t, at(4), evs[2].ProcessedAt, "e5: dead-lettered")
		})
	})
}

func TestQueueStats(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		stats := func(since time.Time) *store.QueueCounts {
			t.Helper()
			var c *store.QueueCounts
			require.NoError(t, s.tx(func(tx bun.Tx) error {
				var err error
				c, err = st.QueueStats(s.ctx, tx, since)
				return err
			}))
			return c
		}
		empty := stats(t0)
		require.Empty(t, empty.ByStatus)
		require.Empty(t, empty.Open)
		require.Zero(t, empty.Blocked)
		require.Nil(t, empty.OldestWaiting)
		require.Zero(t, empty.CompletedSince)

		order := store.Entity{Source: "zoho", EntityType: "order", EntityID: "o"}
		s.queue(ent("a"), 5, 3)
		s.queue(ent("a"), 5, 3) // blocked
		pr := s.queue(ent("b"), 2, 3)
		early := s.event(order)
		early.ReceivedAt = t0.Add(-time.Hour)
		rt := s.queueEvent(early, 5, 3)
		cm := s.queue(ent("c"), 5, 3)
		dl := s.queue(ent("d"), 5, 3)
		s.fail(s.claimJob(rt.ID, "w", t0), "w", false, "E", t0.Add(time.Hour))
		s.deadLetter(dl.ID, "E", t0)
		s.completeJob(cm.ID, t0.Add(time.Minute))
		s.claimJob(pr.ID, "w", t0.Add(time.Minute))

		c := stats(t0.Add(time.Minute))
		require.Equal(t, map[string]int64{
			store.StatusPending: 2, store.StatusProcessing: 1, store.StatusRetry: 1,
			store.StatusCompleted: 1, store.StatusDeadLetter: 1,
		}, c.ByStatus)
		slices.SortFunc(c.Open, func(x, y store.OpenCount) int {
			return strings.Compare(fmt.Sprint(x.EntityType, x.Priority), fmt.Sprint(y.EntityType, y.Priority))
		})
		require.Equal(t, []store.OpenCount{
			{EntityType: "order", Priority: 5, N: 1},
			{EntityType: "product", Priority: 2, N: 1},
			{EntityType: "product", Priority: 5, N: 3},
		}, c.Open)
		require.Equal(t, int64(1), c.Blocked)
		sameTime(t, t0.Add(-time.Hour), c.OldestWaiting)
		require.Equal(t, int64(1), c.CompletedSince)
		require.Zero(t, stats(t0.Add(2*time.Minute)).CompletedSince)
	})
}

func TestInboxStats(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		c, err := st.InboxStats(s.ctx, db)
		require.NoError(t, err)
		require.Equal(t, &store.InboxCounts{}, c)

		e1 := s.event(ent("1"))
		e1.ReceivedAt = t0.Add(-time.Hour)
		s.queueEvent(e1, 5, 3) // queued, unprocessed
		s.storeOnly(s.invalid(ent("2")))
		e3 := s.event(ent("3"))
		e3.ReceivedAt = t0.Add(time.Hour)
		s.completeJob(s.queueEvent(e3, 5, 3).ID, t0.Add(time.Hour)) // processed by implication
		id4 := s.storeOnly(s.unqueued(ent("4")))
		_, err = st.MarkProcessed(s.ctx, db, id4, t0)
		require.NoError(t, err)

		c, err = st.InboxStats(s.ctx, db)
		require.NoError(t, err)
		require.Equal(t, int64(4), c.Total)
		require.Equal(t, int64(3), c.Valid)
		require.Equal(t, int64(2), c.Queued)
		require.Equal(t, int64(2), c.Unprocessed)
		sameTime(t, t0.Add(-time.Hour), c.OldestAt)
		sameTime(t, t0.Add(time.Hour), c.NewestAt)
	})
}

func TestDeleteCompleted(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		del := func(cutoff time.Time, limit int) int64 {
			t.Helper()
			var n int64
			require.NoError(t, s.tx(func(tx bun.Tx) error {
				var err error
				n, err = st.DeleteCompleted(s.ctx, tx, cutoff, limit)
				return err
			}))
			return n
		}
		c1 := s.queue(ent("c1"), 5, 3)
		s.completeJob(c1.ID, t0.Add(time.Minute))
		c2 := s.queue(ent("c2"), 5, 3)
		s.completeJob(c2.ID, t0.Add(5*time.Minute))
		// c3's event was marked processed before its job completed: its own
		// time stands.
		c3 := s.queue(ent("c3"), 5, 3)
		_, err := st.MarkProcessed(s.ctx, db, c3.InboxEventID, t0.Add(-time.Hour))
		require.NoError(t, err)
		s.completeJob(c3.ID, t0.Add(time.Minute))
		p := s.queue(ent("p"), 5, 3)
		dl := s.deadLetter(s.queue(ent("dl"), 5, 3).ID, "E", t0)

		require.Equal(t, int64(2), del(t0.Add(2*time.Minute), 10))
		for _, j := range []*store.Job{c1, c3} {
			_, err := st.GetJob(s.ctx, db, j.ID)
			require.ErrorIs(t, err, store.ErrNoRows)
		}
		ev1, err := st.GetEvent(s.ctx, db, c1.InboxEventID)
		require.NoError(t, err, "the event stays")
		sameTime(t, t0.Add(time.Minute), ev1.ProcessedAt, "completed_at copied into processed_at")
		ev3, err := st.GetEvent(s.ctx, db, c3.InboxEventID)
		require.NoError(t, err)
		sameTime(t, t0.Add(-time.Hour), ev3.ProcessedAt)
		for _, j := range []*store.Job{c2, p, dl} {
			s.job(j.ID)
		}

		// Limit caps a batch.
		for _, id := range []string{"x", "y"} {
			s.completeJob(s.queue(ent(id), 5, 3).ID, t0)
		}
		require.Equal(t, int64(2), del(t0.Add(time.Hour), 2))
		require.Equal(t, int64(1), del(t0.Add(time.Hour), 2))
		require.Zero(t, del(t0.Add(time.Hour), 2))
		require.Equal(t, 2, s.count(`SELECT COUNT(*) FROM tds_sync_queue`))
		require.Equal(t, 7, s.count(`SELECT COUNT(*) FROM tds_inbox_events`))
	})
}

func TestDeleteProcessedEvents(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		mark := func(id int64, at time.Time) {
			t.Helper()
			ok, err := st.MarkProcessed(s.ctx, db, id, at)
			require.NoError(t, err)
			require.True(t, ok)
		}
		cutoff := t0.Add(time.Hour)
		marked := s.storeOnly(s.invalid(ent("marked")))
		mark(marked, t0)
		// copied: completed, then DeleteCompleted copied the time.
		copied := s.queue(ent("copied"), 5, 3)
		s.completeJob(copied.ID, t0)
		require.NoError(t, s.tx(func(tx bun.Tx) error {
			n, err := st.DeleteCompleted(s.ctx, tx, t0.Add(time.Second), 1000)
			require.Equal(t, int64(1), n)
			return err
		}))
		done := s.queue(ent("done"), 5, 3)
		s.completeJob(done.ID, t0)

		dead := s.deadLetter(s.queue(ent("dead"), 5, 3).ID, "E", t0)
		pending := s.queue(ent("pending"), 5, 3)
		mark(pending.InboxEventID, t0)
		late := s.storeOnly(s.invalid(ent("late")))
		mark(late, cutoff.Add(time.Hour))
		lateJob := s.queue(ent("late-job"), 5, 3)
		s.completeJob(lateJob.ID, cutoff.Add(time.Hour))
		fresh := s.storeOnly(s.invalid(ent("fresh")))

		gone := []int64{marked, done.InboxEventID, copied.InboxEventID}
		kept := []int64{dead.InboxEventID, pending.InboxEventID, late, lateJob.InboxEventID, fresh}

		var total int64
		for range 10 {
			n, err := st.DeleteProcessedEvents(s.ctx, db, cutoff, 2)
			require.NoError(t, err)
			require.LessOrEqual(t, n, int64(2))
			if n == 0 {
				break
			}
			total += n
		}
		require.Equal(t, int64(len(gone)), total)
		for _, id := range gone {
			_, err := st.GetEvent(s.ctx, db, id)
			require.ErrorIs(t, err, store.ErrNoRows, "event %d", id)
		}
		_, err := st.GetJob(s.ctx, db, done.ID)
		require.ErrorIs(t, err, store.ErrNoRows, "the job goes with its event")
		for _, id := range kept {
			_, err := st.GetEvent(s.ctx, db, id)
			require.NoError(t, err, "event %d", id)
		}
		s.job(dead.ID)
		s.job(pending.ID)
	})
}

func TestMirror(t *testing.T) {
	const table = "tds_mirror_products"
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	steps := []struct {
		name    string
		m       store.Mirror
		written bool
		cur     *store.MirrorCurrent
		data    string
		deleted bool
		version time.Time
		event   int64
	}{
		{"first write", store.Mirror{Data: `{"name": "v2"}`, Version: at(2), InboxEventID: 2},
			true, nil, `{"name": "v2"}`, false, at(2), 2},
		{"older is refused", store.Mirror{Data: `{"name": "v1"}`, Version: at(1), InboxEventID: 1},
			false, &store.MirrorCurrent{Version: at(2), InboxEventID: 2}, `{"name": "v2"}`, false, at(2), 2},
		{"same version applies", store.Mirror{Data: `{"name": "v2b"}`, Version: at(2), InboxEventID: 3},
			true, nil, `{"name": "v2b"}`, false, at(2), 3},
		{"delete keeps the last data", store.Mirror{Data: `{}`, Version: at(3), DeletedAt: ptr(at(3)), InboxEventID: 4},
			true, nil, `{"name": "v2b"}`, true, at(3), 4},
		{"older than the delete is refused", store.Mirror{Data: `{"name": "v2c"}`, Version: at(2), InboxEventID: 5},
			false, &store.MirrorCurrent{Version: at(3), InboxEventID: 4}, `{"name": "v2b"}`, true, at(3), 4},
		{"newer revives", store.Mirror{Data: `{"name": "v4"}`, Version: at(4), InboxEventID: 6},
			true, nil, `{"name": "v4"}`, false, at(4), 6},
	}
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		for range 2 {
			require.NoError(t, st.MigrateMirror(s.ctx, db, []string{table, "tds_mirror_contacts"}), "idempotent")
		}
		require.Zero(t, s.count(`SELECT COUNT(*) FROM tds_mirror_contacts`))
		for _, step := range steps {
			t.Run(step.name, func(t *testing.T) {
				m := step.m
				m.Table, m.EntityID, m.Source, m.SyncedAt = table, "p1", "zoho", t0
				cur, written, err := st.MirrorUpsert(s.ctx, db, &m)
				require.NoError(t, err)
				require.Equal(t, step.written, written)
				if step.cur == nil {
					require.Nil(t, cur)
				} else {
					require.NotNil(t, cur)
					require.True(t, step.cur.Version.Equal(cur.Version), "current version %s", cur.Version)
					require.Equal(t, step.cur.InboxEventID, cur.InboxEventID)
				}
				var got struct {
					Data      string     `bun:"data"`
					DeletedAt *time.Time `bun:"deleted_at"`
					Version   time.Time  `bun:"source_modified_at"`
					EventID   int64      `bun:"inbox_event_id"`
				}
				require.NoError(t, db.NewRaw(`SELECT data, deleted_at, source_modified_at, inbox_event_id FROM ? WHERE entity_id = ?`,
					bun.Ident(table), "p1").Scan(s.ctx, &got))
				require.JSONEq(t, step.data, got.Data)
				require.Equal(t, step.deleted, got.DeletedAt != nil)
				require.True(t, step.version.Equal(got.Version))
				require.Equal(t, step.event, got.EventID)
			})
		}
		require.Equal(t, 1, s.count(`SELECT COUNT(*) FROM tds_mirror_products`))
	})
}

func TestMigrate(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		fsys, err := store.MigrationFS(st)
		require.NoError(t, err)
		files, err := store.ReadMigrations(fsys)
		require.NoError(t, err)
		require.NotEmpty(t, files)

		// On a migrated database, and on an empty one, twice.
		var empty *bun.DB
		switch st.Name() {
		case "postgres":
			empty = openPostgres(tdstest.PostgresURL(t, tdstest.Unmigrated()))
		case "sqlite":
			path, _ := strings.CutPrefix(tdstest.SQLiteURL(t, tdstest.Unmigrated()), "sqlite:")
			empty, err = openSQLite(path)
			require.NoError(t, err)
		}
		t.Cleanup(func() { _ = empty.Close() })
		for _, d := range []*bun.DB{db, empty} {
			for range 2 {
				require.NoError(t, st.Migrate(s.ctx, d, migrationsTable))
			}
			s2 := newSuite(t, d, st)
			require.Equal(t, len(files), s2.count(`SELECT COUNT(*) FROM `+migrationsTable))
			a1, a2 := s2.queue(ent("a"), 5, 3), s2.queue(ent("a"), 5, 3)
			require.Equal(t, []bool{false, true}, s2.blocked(a1, a2), "the schema works")
		}
	})
}

// TestInsertEventsRepeatedKeyInBatch: one event and one job at most per
// idempotency key, within a batch too.
func TestInsertEventsRepeatedKeyInBatch(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		a := s.event(ent("a"))
		again := *a
		stored, err := st.InsertEvents(s.ctx, db, []store.Ingest{withJob(a, 5), withJob(&again, 5)})
		require.NoError(t, err)
		require.Len(t, stored, 1)
		require.NotNil(t, stored[0].JobID)
		require.Equal(t, 1, s.count(`SELECT COUNT(*) FROM tds_sync_queue`))
	})
}

// TestRecordFailureCutsAtRune: an error message is cut to MaxErrorLen
// bytes without splitting a character.
func TestRecordFailureCutsAtRune(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		j := s.claimJob(s.queue(ent("a"), 5, 3).ID, "w", t0)
		msg := strings.Repeat("€", store.MaxErrorLen) // 3 bytes each
		require.NoError(t, s.tx(func(tx bun.Tx) error {
			return st.RecordFailure(s.ctx, tx, store.Failure{Job: j, Owner: "w", RetryAt: t0, Error: msg}, t0)
		}))
		got := *s.job(j.ID).LastError
		require.LessOrEqual(t, len(got), store.MaxErrorLen)
		require.True(t, strings.HasPrefix(msg, got))
	})
}

// TestSchemaStatus: a migrated database is current; an unmigrated one
// misses every migration; a partly migrated one misses the rest; a version
// this binary does not embed is reported as unknown.
func TestSchemaStatus(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		ctx := t.Context()
		fsys, err := store.MigrationFS(st)
		require.NoError(t, err)
		files, err := fs.Glob(fsys, "*.up.sql") // sorted; the versions are zero-padded
		require.NoError(t, err)
		var names []string
		for _, f := range files {
			names = append(names, strings.TrimSuffix(f, ".up.sql"))
		}

		sc, err := st.SchemaStatus(ctx, db, migrationsTable)
		require.NoError(t, err)
		require.Len(t, sc.Applied, len(files))
		require.Empty(t, sc.Missing)
		require.Empty(t, sc.Unknown)

		sc, err = st.SchemaStatus(ctx, db, "tds_test_never_migrated")
		require.NoError(t, err)
		require.Empty(t, sc.Applied)
		require.Equal(t, names, sc.Missing)

		// Version 1 recorded (by a harmless statement), then a future one;
		// the connection is the pool's only one on SQLite.
		conn, err := db.Conn(ctx)
		require.NoError(t, err)
		defer conn.Close()
		partial := fstest.MapFS{"0001_first.up.sql": {Data: []byte("SELECT 1")}}
		require.NoError(t, store.ApplyMigrations(ctx, conn, partial, "tds_test_partial", nil))
		sc, err = st.SchemaStatus(ctx, conn, "tds_test_partial")
		require.NoError(t, err)
		require.Equal(t, []int64{1}, sc.Applied)
		require.Equal(t, names[1:], sc.Missing)
		partial["9999_future.up.sql"] = &fstest.MapFile{Data: []byte("SELECT 1")}
		require.NoError(t, store.ApplyMigrations(ctx, conn, partial, "tds_test_partial", nil))
		sc, err = st.SchemaStatus(ctx, conn, "tds_test_partial")
		require.NoError(t, err)
		require.Equal(t, []int64{9999}, sc.Unknown)
	})
}

func TestThroughput(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		empty, err := st.Throughput(s.ctx, db, t0)
		require.NoError(t, err)
		require.Empty(t, empty)

		a, b, c := s.queue(ent("a"), 5, 3), s.queue(ent("b"), 5, 3), s.queue(ent("c"), 5, 3)
		old := s.queue(ent("d"), 5, 3)
		since := t0.Add(time.Minute)
		s.completeJob(old.ID, t0.Add(30*time.Second)) // before the window
		s.completeJob(a.ID, since.Add(30*time.Second))
		s.completeJob(b.ID, since.Add(50*time.Second))
		s.completeJob(c.ID, since.Add(3*time.Minute+10*time.Second))
		s.queue(ent("e"), 5, 3) // not completed

		got, err := st.Throughput(s.ctx, db, since)
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Equal(t, int64(0), got[0].Minute)
		require.Equal(t, int64(2), got[0].N)
		require.Equal(t, int64(3), got[1].Minute)
		require.Equal(t, int64(1), got[1].N)
		// The jobs were created at t0 (the suite's clock).
		require.InDelta(t, 100, got[0].AvgSeconds, 0.01)
		require.InDelta(t, 110, got[0].MaxSeconds, 0.01)
		require.InDelta(t, 250, got[1].MaxSeconds, 0.01)
	})
}

func TestSessionRevoked(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		revoked := func(id string) bool {
			t.Helper()
			ok, err := st.SessionRevoked(s.ctx, db, id)
			require.NoError(t, err)
			return ok
		}
		require.False(t, revoked("s1"))
		require.NoError(t, st.RevokeSession(s.ctx, db, "s1", t0.Add(time.Hour), t0))
		require.NoError(t, st.RevokeSession(s.ctx, db, "s1", t0.Add(time.Hour), t0)) // twice is fine
		require.True(t, revoked("s1"))
		require.False(t, revoked("s2"))
		// A later sign-out drops the records whose cookies have expired.
		require.NoError(t, st.RevokeSession(s.ctx, db, "s2", t0.Add(3*time.Hour), t0.Add(2*time.Hour)))
		require.False(t, revoked("s1"))
		require.True(t, revoked("s2"))
	})
}

// TestSessionKey: the dashboard's session key is created once per
// database, by whichever process asks first; every caller, concurrent
// ones included, gets that one.
func TestSessionKey(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		const n = 8
		got := make([][]byte, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				got[i], errs[i] = st.SessionKey(s.ctx, db, bytes.Repeat([]byte{byte(i + 1)}, 32), t0)
			})
		}
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i])
			require.Equal(t, got[0], got[i], "every caller gets the same key")
		}
		require.Len(t, got[0], 32)
		require.Equal(t, bytes.Repeat(got[0][:1], 32), got[0], "one of the candidates, whole")
		again, err := st.SessionKey(s.ctx, db, bytes.Repeat([]byte{0xee}, 32), t0.Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, got[0], again, "kept: a later candidate does not replace it")
		require.Equal(t, 1, s.count(`SELECT COUNT(*) FROM tds_ui_keys`))
	})
}

func TestLeaderLease(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		ctx := t.Context()
		lead := func(l store.Leader) bool {
			ok, err := l.Lead(ctx)
			require.NoError(t, err)
			return ok
		}
		a := st.NewLeader(db, "a", time.Hour)
		b := st.NewLeader(db, "b", time.Hour)
		require.True(t, lead(a))
		require.False(t, lead(b), "the lease is held")
		require.True(t, lead(a), "the holder renews it")
		require.NoError(t, a.Release(ctx))
		require.NoError(t, a.Release(ctx), "releasing twice is harmless")
		require.True(t, lead(b), "a released lease passes on at once")
		require.False(t, lead(a))
		require.NoError(t, a.Release(ctx), "a non-holder's release leaves the lease alone")
		require.False(t, lead(a), "b still leads")
		require.NoError(t, b.Release(ctx))

		// A lease nobody renews expires and passes on.
		short := st.NewLeader(db, "short", 50*time.Millisecond)
		require.True(t, lead(short))
		require.Eventually(t, func() bool { return lead(b) }, 10*time.Second, 10*time.Millisecond)
		require.False(t, lead(short), "the expired holder has lost the lead")
		require.NoError(t, b.Release(ctx))

		// Contenders racing for a free lease: exactly one wins.
		const n = 8
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range n {
			l := st.NewLeader(db, fmt.Sprintf("c%d", i), time.Hour)
			wg.Go(func() {
				ok, err := l.Lead(ctx)
				if err == nil && ok {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		require.EqualValues(t, 1, wins.Load())
	})
}

// TestEventStatusAndDeadLetterCodes: an event's status is read from its
// job, the same on both dialects, and dead letters are counted by code.
func TestEventStatusAndDeadLetterCodes(t *testing.T) {
	eachStore(t, func(t *testing.T, db *bun.DB, st store.Store) {
		s := newSuite(t, db, st)
		status := func(j *store.Job) string {
			t.Helper()
			ev, err := st.GetEvent(s.ctx, db, j.InboxEventID)
			require.NoError(t, err)
			return ev.Status
		}
		waiting := s.queue(ent("w"), 5, 3)
		done := s.queue(ent("s"), 5, 3)
		s.completeJob(done.ID, t0)
		a := s.deadLetter(s.queue(ent("a"), 5, 3).ID, "A", t0)
		s.deadLetter(s.queue(ent("b"), 5, 3).ID, "A", t0)
		s.deadLetter(s.queue(ent("c"), 5, 3).ID, "B", t0)
		require.Equal(t, store.EventWaiting, status(waiting))
		require.Equal(t, "synced", status(done))
		require.Equal(t, store.EventDeadLetter, status(a))
		evs, err := st.ListEvents(s.ctx, db, store.EventFilter{Status: store.EventDeadLetter, Limit: 10})
		require.NoError(t, err)
		require.Len(t, evs, 3)

		codes, err := st.DeadLetterCodes(s.ctx, db)
		require.NoError(t, err)
		require.Equal(t, []store.CodeCount{{Code: "A", N: 2}, {Code: "B", N: 1}}, codes)
	})
}
