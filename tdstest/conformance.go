package tdstest

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
)

// TB is what [SyncerConformance] needs of a test; *testing.T has it. A
// test of a checker can pass a recorder instead.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Context() context.Context
}

// State is what a Syncer holds for one entity, as [Subject.Read] reads it.
type State struct {
	// Found reports that the Syncer holds the entity, deleted or not.
	Found bool
	// Deleted reports that a delete was applied and the entity kept (a
	// soft delete); a Syncer that removes it reads as Found false.
	Deleted bool
	// Version is the version ([tds.SyncJob.Version]) of what is held.
	Version time.Time
	// Value is anything else to compare, such as the stored record
	// without the columns a write time goes into: two reads of an entity
	// nothing changed must give equal values (reflect.DeepEqual).
	Value any
}

func (s State) String() string {
	if !s.Found {
		return "{not found}"
	}
	return fmt.Sprintf("{version %s, deleted %t, value %v}", s.Version.UTC().Format(time.RFC3339Nano), s.Deleted, s.Value)
}

func (s State) equal(o State) bool {
	return s.Found == o.Found && s.Deleted == o.Deleted && s.Version.Equal(o.Version) && reflect.DeepEqual(s.Value, o.Value)
}

// Subject tells [SyncerConformance] which events to give the Syncer and how
// to read back what it stored.
type Subject struct {
	// EntityType is the entity type of the events, one the Syncer
	// handles. Defaults to "product".
	EntityType string
	// Data returns the record of entity id at version: the JSON object a
	// webhook would carry. Defaults to {"id": id, "version": version in
	// RFC 3339}.
	Data func(id string, version time.Time) json.RawMessage
	// Read returns what the Syncer holds for entity id, read through db
	// (the database; never inside the job's transaction). Required.
	Read func(ctx context.Context, db bun.IDB, id string) (State, error)
}

// SyncerConformance checks that s keeps the [tds.Syncer] contract on db,
// and reports each clause it breaks with t.Errorf. It calls s.Sync
// directly, each job in a transaction of its own as a Worker would, on
// entities of its own (ids starting "tdstest-"), and reads back with
// subj.Read. The clauses:
//
//   - a job is applied: a create makes the entity read at its version;
//   - a redelivered job changes nothing: the same job synced again (a
//     Worker may run a job again when its first run's outcome was lost)
//     leaves the same state;
//   - an older version never overwrites a newer one: an update or a delete
//     older than what is held changes nothing;
//   - a delete is applied: the entity reads deleted or not found;
//   - an error rolls back the Syncer's own writes: after the job's
//     transaction is rolled back (as when Sync or a later statement of the
//     batch fails), the entity reads as before, and the job's retry is
//     applied, so nothing outside the transaction (a cache) remembers the
//     undone write;
//   - writes go through the job's transaction only: a job whose
//     transaction is rolled back leaves nothing, and Sync neither asks the
//     pool for another connection while it holds the transaction (on
//     SQLite, whose pool has one connection, that deadlocks) nor commits
//     or rolls back the transaction itself.
//
// db must hold whatever s writes to (its tables migrated); it need not
// hold the tds schema.
func SyncerConformance(t TB, db *bun.DB, s tds.Syncer, subj Subject) {
	t.Helper()
	if subj.Read == nil {
		t.Errorf("tdstest: SyncerConformance: Subject.Read is required")
		return
	}
	if subj.EntityType == "" {
		subj.EntityType = "product"
	}
	if subj.Data == nil {
		subj.Data = func(id string, v time.Time) json.RawMessage {
			b, _ := json.Marshal(map[string]string{"id": id, "version": v.UTC().Format(time.RFC3339Nano)})
			return b
		}
	}
	c := &conformance{t: t, db: db, s: s, subj: subj, run: randHex(4)}
	for _, cl := range []struct {
		name string
		fn   func(ctx context.Context) error
	}{
		{"a job is applied", c.applied},
		{"a redelivered job changes nothing", c.redelivered},
		{"an older version never overwrites a newer one", c.older},
		{"a delete is applied", c.deleted},
		{"an error rolls back the Syncer's own writes", c.rolledBack},
		{"writes go through the job's transaction only", c.txOnly},
	} {
		if err := cl.fn(t.Context()); err != nil {
			t.Errorf("tdstest: SyncerConformance: %s: %v", cl.name, err)
		}
	}
}

// conformance is one run of SyncerConformance.
type conformance struct {
	t    TB
	db   *bun.DB
	s    tds.Syncer
	subj Subject
	run  string       // keeps the entities of two runs on one database apart
	seq  atomic.Int64 // numbers jobs and events
}

// t0 is the first version the checks use.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func version(hours int) time.Time { return t0.Add(time.Duration(hours) * time.Hour) }

func (c *conformance) entity(clause string) string {
	return "tdstest-" + clause + "-" + c.run
}

// job is a new job for entity id: a new event, received now.
func (c *conformance) job(id, eventType string, v time.Time) *tds.SyncJob {
	n := 1_000_000_000 + c.seq.Add(1)
	return &tds.SyncJob{
		JobID: n, InboxEventID: n, Source: tds.DefaultSource, EventType: eventType,
		EntityType: c.subj.EntityType, EntityID: id, Data: c.subj.Data(id, v), Version: v,
		ReceivedAt: time.Now().UTC().Truncate(time.Microsecond), Priority: 5, Attempt: 1, MaxAttempts: tds.DefaultMaxAttempts,
		WorkerID: "tdstest",
	}
}

// again is job's next attempt.
func again(job *tds.SyncJob) *tds.SyncJob {
	j := *job
	j.Attempt++
	return &j
}

// errOutsideTx is Sync asking the pool for a connection while it holds the
// job's transaction.
var errOutsideTx = errors.New("the Syncer uses the database outside the job's transaction: it asked the pool for another connection while it held the transaction (use tx, not the *bun.DB; on SQLite this deadlocks)")

// syncTimeout bounds one call of Sync.
const syncTimeout = time.Minute

// sync runs job in a transaction of its own, then commits it, or rolls it
// back when commit is false.
func (c *conformance) sync(ctx context.Context, job *tds.SyncJob, commit bool) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning the job's transaction: %w", err)
	}
	waits := c.db.Stats().WaitCount
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("the Syncer panicked: %v", r)
			}
		}()
		done <- c.s.Sync(ctx, tx, job)
	}()
	// Poll the pool: a Sync that waits for a connection while this
	// transaction holds one (SQLite's only one) would never return.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(syncTimeout)
	defer deadline.Stop()
	var syncErr error
wait:
	for {
		select {
		case syncErr = <-done:
			break wait
		case <-tick.C:
			if c.db.Stats().WaitCount > waits {
				_ = tx.Rollback() // frees the connection Sync waits for
				<-done
				return errOutsideTx
			}
		case <-deadline.C:
			_ = tx.Rollback()
			return fmt.Errorf("the Syncer did not return within %s", syncTimeout)
		}
	}
	if syncErr != nil {
		_ = tx.Rollback()
		return fmt.Errorf("the Syncer failed on a %s of %s at version %s: %w", job.EventType, job.EntityID, job.Version.Format(time.RFC3339), syncErr)
	}
	end, verb := tx.Rollback, "rolling back"
	if commit {
		end, verb = tx.Commit, "committing"
	}
	if err := end(); err != nil {
		if errors.Is(err, sql.ErrTxDone) {
			return errors.New("the Syncer committed or rolled back the job's transaction itself: writes go through the job's transaction only, which the Worker ends")
		}
		return fmt.Errorf("%s the job's transaction after Sync: %w", verb, err)
	}
	return nil
}

func (c *conformance) read(ctx context.Context, id string) (State, error) {
	st, err := c.subj.Read(ctx, c.db, id)
	if err != nil {
		return State{}, fmt.Errorf("Subject.Read(%q): %w", id, err)
	}
	return st, nil
}

// create syncs and commits a create of a new entity at version v and
// checks that it reads at v.
func (c *conformance) create(ctx context.Context, id string, v time.Time) (State, error) {
	if err := c.sync(ctx, c.job(id, tds.EventCreate, v), true); err != nil {
		return State{}, err
	}
	st, err := c.read(ctx, id)
	if err != nil {
		return State{}, err
	}
	if !st.Found || st.Deleted || !st.Version.Equal(v) {
		return st, fmt.Errorf("after a create at version %s the entity reads %s", v.Format(time.RFC3339), st)
	}
	return st, nil
}

func (c *conformance) applied(ctx context.Context) error {
	_, err := c.create(ctx, c.entity("applied"), version(1))
	return err
}

func (c *conformance) redelivered(ctx context.Context) error {
	id := c.entity("redelivered")
	job := c.job(id, tds.EventUpdate, version(1))
	if err := c.sync(ctx, job, true); err != nil {
		return err
	}
	first, err := c.read(ctx, id)
	if err != nil {
		return err
	}
	if err := c.sync(ctx, again(job), true); err != nil {
		return fmt.Errorf("the second run of job %d: %w", job.JobID, err)
	}
	second, err := c.read(ctx, id)
	if err != nil {
		return err
	}
	if !first.equal(second) {
		return fmt.Errorf("running job %d a second time changed the entity from %s to %s", job.JobID, first, second)
	}
	return nil
}

func (c *conformance) older(ctx context.Context) error {
	id := c.entity("older")
	newer, err := c.create(ctx, id, version(2))
	if err != nil {
		return err
	}
	for _, et := range []string{tds.EventUpdate, tds.EventDelete} {
		if err := c.sync(ctx, c.job(id, et, version(1)), true); err != nil {
			return fmt.Errorf("an older %s: %w", et, err)
		}
		st, err := c.read(ctx, id)
		if err != nil {
			return err
		}
		if !st.equal(newer) {
			return fmt.Errorf("an %s at version %s, received after version %s was applied, changed the entity from %s to %s",
				et, version(1).Format(time.RFC3339), version(2).Format(time.RFC3339), newer, st)
		}
	}
	return nil
}

func (c *conformance) deleted(ctx context.Context) error {
	id := c.entity("deleted")
	if _, err := c.create(ctx, id, version(1)); err != nil {
		return err
	}
	if err := c.sync(ctx, c.job(id, tds.EventDelete, version(2)), true); err != nil {
		return err
	}
	st, err := c.read(ctx, id)
	if err != nil {
		return err
	}
	if st.Found && !st.Deleted {
		return fmt.Errorf("after a delete at version %s the entity reads %s, neither deleted nor gone", version(2).Format(time.RFC3339), st)
	}
	return nil
}

func (c *conformance) rolledBack(ctx context.Context) error {
	id := c.entity("rolledback")
	before, err := c.create(ctx, id, version(1))
	if err != nil {
		return err
	}
	job := c.job(id, tds.EventUpdate, version(2))
	if err := c.sync(ctx, job, false); err != nil {
		return err
	}
	st, err := c.read(ctx, id)
	if err != nil {
		return err
	}
	if !st.equal(before) {
		return fmt.Errorf("the job's transaction was rolled back, yet the entity changed from %s to %s: Sync wrote outside it", before, st)
	}
	if err := c.sync(ctx, again(job), true); err != nil {
		return fmt.Errorf("the retry of the rolled-back job: %w", err)
	}
	if st, err = c.read(ctx, id); err != nil {
		return err
	}
	if !st.Found || st.Deleted || !st.Version.Equal(job.Version) {
		return fmt.Errorf("the retry of a job whose transaction was rolled back was not applied: the entity reads %s, not version %s; "+
			"the Syncer remembers the undone write outside the database (a cache?)", st, job.Version.Format(time.RFC3339))
	}
	return nil
}

func (c *conformance) txOnly(ctx context.Context) error {
	id := c.entity("txonly")
	if err := c.sync(ctx, c.job(id, tds.EventCreate, version(1)), false); err != nil {
		return err
	}
	st, err := c.read(ctx, id)
	if err != nil {
		return err
	}
	if st.Found {
		return fmt.Errorf("a create whose transaction was rolled back left the entity reading %s: Sync wrote outside the job's transaction", st)
	}
	return nil
}
