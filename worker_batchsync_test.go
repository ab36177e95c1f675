package tds

// Tests that the batched path (a Syncer that is a BatchSyncer) keeps each
// guarantee of the one-job-at-a-time path, on both dialects: per-entity
// order across processes, the stale guard, a failing job failing alone,
// panics, lost leases, failures outside the savepoint, and that
// MirrorSyncer.SyncBatch agrees with MirrorSyncer.Sync.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
)

// batchFuncs is a BatchSyncer made of two functions, counting its calls
// and recording the jobs of each SyncBatch call.
type batchFuncs struct {
	sync  func(ctx context.Context, tx bun.Tx, job *SyncJob) error
	batch func(ctx context.Context, tx bun.Tx, jobs []*SyncJob) error

	syncs   atomic.Int64
	mu      sync.Mutex
	batches [][]int64 // the job ids of each SyncBatch call
}

var _ BatchSyncer = (*batchFuncs)(nil)

func (b *batchFuncs) Sync(ctx context.Context, tx bun.Tx, job *SyncJob) error {
	b.syncs.Add(1)
	return b.sync(ctx, tx, job)
}

func (b *batchFuncs) SyncBatch(ctx context.Context, tx bun.Tx, jobs []*SyncJob) error {
	ids := make([]int64, len(jobs))
	for i, j := range jobs {
		ids[i] = j.JobID
	}
	b.mu.Lock()
	b.batches = append(b.batches, ids)
	b.mu.Unlock()
	return b.batch(ctx, tx, jobs)
}

func (b *batchFuncs) calls() [][]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]int64(nil), b.batches...)
}

// writeSideEffects writes every job's side effect in one statement
// through tx (so inside the batch's savepoint).
func writeSideEffects(ctx context.Context, tx bun.Tx, jobs []*SyncJob) error {
	var sb strings.Builder
	args := make([]any, len(jobs))
	sb.WriteString("INSERT INTO side_effects (job_id) VALUES ")
	for i, j := range jobs {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("(?)")
		args[i] = j.JobID
	}
	_, err := tx.ExecContext(ctx, sb.String(), args...)
	return err
}

// requireEachOnce asserts that side_effects holds exactly want, each once.
func requireEachOnce(t *testing.T, db *bun.DB, want []int64) {
	t.Helper()
	got := sideEffectJobs(t, db) // ordered
	sorted := append([]int64(nil), want...)
	slices.Sort(sorted)
	require.Equal(t, sorted, got)
}

// ingestN queues n product events of distinct entities and returns their
// job ids in order.
func (e *workerEnv) ingestN(t *testing.T, n int) []int64 {
	t.Helper()
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = e.ingest(t, fmt.Sprint(i), fmt.Sprint("p", i))
	}
	return ids
}

// applyLogDDL creates apply_log, where the batch order child records each
// job it applies, through the job's transaction.
func applyLogDDL(dialect string) string {
	if dialect == "postgres" {
		return "CREATE TABLE apply_log (seq BIGSERIAL PRIMARY KEY, entity_id TEXT NOT NULL, job_id BIGINT NOT NULL, via TEXT NOT NULL)"
	}
	return "CREATE TABLE apply_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, entity_id TEXT NOT NULL, job_id BIGINT NOT NULL, via TEXT NOT NULL)"
}

// logApplied records jobs in apply_log through tx, tagged with via.
func logApplied(ctx context.Context, tx bun.Tx, via string, jobs ...*SyncJob) error {
	var sb strings.Builder
	var args []any
	sb.WriteString("INSERT INTO apply_log (entity_id, job_id, via) VALUES ")
	for i, j := range jobs {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("(?, ?, ?)")
		args = append(args, j.EntityID, j.JobID, via)
	}
	_, err := tx.ExecContext(ctx, sb.String(), args...)
	return err
}

// batchOrderSyncer is the Syncer of the "batchorder" child: a MirrorSyncer
// whose every application (batched or not) is logged in apply_log in the
// same transaction, and whose every call's wall-clock interval is written
// to out for each of its jobs.
func batchOrderSyncer(mirror *MirrorSyncer, out io.Writer) *batchFuncs {
	var outMu sync.Mutex
	note := func(start int64, jobs ...*SyncJob) error {
		end := time.Now().UnixNano()
		outMu.Lock()
		defer outMu.Unlock()
		for _, j := range jobs {
			line, _ := json.Marshal(interval{Entity: j.EntityID, Job: j.JobID, Start: start, End: end})
			if _, err := out.Write(append(line, '\n')); err != nil {
				return err
			}
		}
		return nil
	}
	return &batchFuncs{
		sync: func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
			start := time.Now().UnixNano()
			err := mirror.Sync(ctx, tx, job)
			if err == nil {
				err = logApplied(ctx, tx, "single", job)
			}
			return errors.Join(err, note(start, job))
		},
		batch: func(ctx context.Context, tx bun.Tx, jobs []*SyncJob) error {
			start := time.Now().UnixNano()
			err := mirror.SyncBatch(ctx, tx, jobs)
			if err == nil {
				err = logApplied(ctx, tx, "batch", jobs...)
			}
			return errors.Join(err, note(start, jobs...))
		},
	}
}

// TestWorkerBatchOrderAcrossProcesses is the order test on the batched
// path: two processes of four workers each, whose Syncer is a BatchSyncer
// over MirrorSyncer, sync many entities' versions while they are being
// ingested. Per entity the versions are applied one at a time, in order,
// each exactly once, and most of them through SyncBatch.
func TestWorkerBatchOrderAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("the order test takes a while")
	}
	const entities, versions, senders = 40, 8, 4
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		require.NoError(t, MigrateMirror(ctx, tdb.db, ZohoRegistry()))
		_, err := tdb.db.ExecContext(ctx, applyLogDDL(tdb.name))
		require.NoError(t, err)

		dir := t.TempDir()
		var children []*exec.Cmd
		var errs []*strings.Builder
		for i := range 2 {
			cmd, stdout, stderr := startChild(t, "batchorder", tdb.url, filepath.Join(dir, fmt.Sprintf("intervals-%d.jsonl", i)))
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			children, errs = append(children, cmd), append(errs, stderr)
		}

		// Each sender owns some entities and sends their versions in order,
		// round after round, in a shuffled entity order, while the children
		// sync: batches mix entities and their versions keep arriving.
		p, err := NewProcessor(tdb.db)
		require.NoError(t, err)
		var wg sync.WaitGroup
		for s := range senders {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(s), 7))
				var mine []int
				for n := s; n < entities; n += senders {
					mine = append(mine, n)
				}
				for v := range versions {
					rng.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
					for _, n := range mine {
						_, err := p.Process(ctx, versioned(fmt.Sprint(n), v, EventUpdate))
						assertNoError(t, err)
					}
				}
			})
		}
		wg.Wait()
		const total = entities * versions
		require.Equal(t, total, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))
		require.Eventually(t, func() bool {
			return count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'completed'") == total
		}, 2*time.Minute, 50*time.Millisecond, "children: %v", errs)
		for i, c := range children {
			require.NoError(t, c.Process.Signal(syscall.SIGTERM))
			require.NoError(t, c.Wait(), "child %d: %s", i, errs[i])
		}

		// No two syncs of one entity overlapped, and they ran in job order.
		byEntity := map[string][]interval{}
		for i := range children {
			f, err := os.Open(filepath.Join(dir, fmt.Sprintf("intervals-%d.jsonl", i)))
			require.NoError(t, err)
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var iv interval
				require.NoError(t, json.Unmarshal(sc.Bytes(), &iv))
				byEntity[iv.Entity] = append(byEntity[iv.Entity], iv)
			}
			require.NoError(t, sc.Err())
			require.NoError(t, f.Close())
		}
		require.Len(t, byEntity, entities)
		for key, ivs := range byEntity {
			checkIntervals(t, key, ivs)
		}

		// What committed: each job applied exactly once, and per entity in
		// the order its versions were sent (job id order, version order).
		var log []struct {
			Seq      int64  `bun:"seq"`
			EntityID string `bun:"entity_id"`
			JobID    int64  `bun:"job_id"`
			Via      string `bun:"via"`
		}
		require.NoError(t, tdb.db.NewSelect().Table("apply_log").Column("seq", "entity_id", "job_id", "via").
			Order("seq").Scan(ctx, &log))
		require.Len(t, log, total)
		jobs := jobVersions(t, tdb.db)
		version := map[int64]time.Time{}
		for _, j := range jobs {
			require.Equal(t, OutcomeSynced, j.Outcome, "job %d", j.ID)
			version[j.ID] = j.Version
		}
		seen := map[int64]bool{}
		last := map[string]int64{}
		applied := map[string]int{}
		batched := 0
		for _, l := range log {
			require.False(t, seen[l.JobID], "job %d applied twice", l.JobID)
			seen[l.JobID] = true
			if prev, ok := last[l.EntityID]; ok {
				require.Less(t, prev, l.JobID, "entity %s: job %d applied after job %d", l.EntityID, l.JobID, prev)
				require.True(t, version[prev].Before(version[l.JobID]), "entity %s: versions out of order", l.EntityID)
			}
			last[l.EntityID] = l.JobID
			applied[l.EntityID]++
			if l.Via == "batch" {
				batched++
			}
		}
		require.Len(t, applied, entities)
		for id, n := range applied {
			require.Equal(t, versions, n, "entity %s", id)
		}
		require.Positive(t, batched, "the batched path was used")
		t.Logf("%s: %d of %d jobs applied through SyncBatch", tdb.name, batched, total)
		require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_attempts"))

		// The mirror holds the newest version of every entity.
		var rows []struct {
			EntityID string `bun:"entity_id"`
			Data     string `bun:"data"`
		}
		require.NoError(t, tdb.db.NewSelect().Table("products").Column("entity_id", "data").Scan(ctx, &rows))
		require.Len(t, rows, entities)
		for _, r := range rows {
			require.JSONEq(t, string(versioned(r.EntityID, versions-1, EventUpdate).Data), r.Data, "entity %s", r.EntityID)
		}
	})
}

// TestWorkerBatchStaleGuard: the mirror holds v2 of entity A; one batch
// then holds A's older v1 with other entities' jobs. A's row keeps v2 and
// its job completes superseded, naming the mirrored version; the others
// are synced, all in one SyncBatch call.
func TestWorkerBatchStaleGuard(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		require.NoError(t, MigrateMirror(ctx, e.db, ZohoRegistry()))
		m, err := NewMirrorSyncer(WithClock(e.clock.Now))
		require.NoError(t, err)

		v2 := mustProcess(t, e.p, versioned("A", 20, EventUpdate))
		stop := e.start(t, SyncFunc(m.Sync))
		e.waitStatus(t, v2, StatusCompleted)
		stop()

		v1 := mustProcess(t, e.p, versioned("A", 10, EventUpdate))
		others := []int64{
			mustProcess(t, e.p, versioned("B", 10, EventUpdate)),
			mustProcess(t, e.p, versioned("C", 10, EventUpdate)),
			mustProcess(t, e.p, versioned("D", 10, EventDelete)),
		}
		bs := &batchFuncs{sync: m.Sync, batch: m.SyncBatch}
		e.start(t, bs, WithBatchSize(100), WithConcurrency(1))
		j := e.waitStatus(t, v1, StatusCompleted)
		require.Equal(t, OutcomeSuperseded, *j.Outcome)
		mirrored := versioned("A", 20, EventUpdate)
		v2Time := time.Date(2026, 11, 1, 0, 20, 0, 0, time.UTC)
		require.Contains(t, *j.OutcomeDetail, "older than the mirrored version "+v2Time.Format(time.RFC3339Nano))
		require.Contains(t, *j.OutcomeDetail, fmt.Sprintf("(inbox event %d)", e.job(t, v2).InboxEventID))
		for _, id := range others {
			j := e.waitStatus(t, id, StatusCompleted)
			require.Equal(t, OutcomeSynced, *j.Outcome, "job %d", id)
		}
		require.Equal(t, [][]int64{append([]int64{v1}, others...)}, bs.calls(), "one SyncBatch call for the batch")
		require.Zero(t, bs.syncs.Load(), "no fallback")

		var row struct {
			Data         string    `bun:"data"`
			Version      time.Time `bun:"source_modified_at"`
			InboxEventID int64     `bun:"inbox_event_id"`
		}
		require.NoError(t, e.db.NewSelect().Table("products").Column("data", "source_modified_at", "inbox_event_id").
			Where("entity_id = ?", "A").Scan(ctx, &row))
		requireSameTime(t, v2Time, row.Version)
		require.JSONEq(t, string(mirrored.Data), row.Data)
		require.Equal(t, e.job(t, v2).InboxEventID, row.InboxEventID)
		require.Equal(t, 4, count(t, e.db, "SELECT COUNT(*) FROM products"))
		require.Equal(t, 1, count(t, e.db, "SELECT COUNT(*) FROM products WHERE deleted_at IS NOT NULL AND entity_id = 'D'"))
		require.Equal(t, 0, count(t, e.db, unprocessedSQL))
	})
}

// TestWorkerBatchPoisonedJobOfHundred: SyncBatch fails on a batch of 100
// holding a poisoned job; the jobs are synced one at a time in the same
// transaction, the poisoned one is dead-lettered alone and its writes are
// undone, and the 99 others are written exactly once.
func TestWorkerBatchPoisonedJobOfHundred(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newWorkerEnv(t, tdb)
		sideEffects(t, e.db)
		ids := e.ingestN(t, 100)
		poison := ids[37]
		var txs sameTx
		bs := &batchFuncs{
			sync: func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
				txs.note(tx)
				if err := writeSideEffect(ctx, tx, job); err != nil {
					return err
				}
				if job.JobID == poison {
					return Permanent(WithCode("poison", errors.New("poisoned record")))
				}
				return nil
			},
			batch: func(ctx context.Context, tx bun.Tx, jobs []*SyncJob) error {
				txs.note(tx)
				if err := writeSideEffects(ctx, tx, jobs); err != nil {
					return err
				}
				for _, j := range jobs {
					if j.JobID == poison {
						return errors.New("a poisoned record in the batch")
					}
				}
				return nil
			},
		}
		var obs observed
		e.start(t, bs, WithBatchSize(100), WithConcurrency(1), WithObserver(obs.add))
		j := e.waitStatus(t, poison, StatusDeadLetter)
		require.Equal(t, "poison", *j.LastErrorCode)
		require.Equal(t, 1, j.Attempt)
		var good []int64
		for _, id := range ids {
			if id != poison {
				require.Equal(t, StatusCompleted, e.waitStatus(t, id, StatusCompleted).Status)
				good = append(good, id)
			}
		}
		requireEachOnce(t, e.db, good)
		require.Len(t, bs.calls(), 1, "SyncBatch called once")
		require.Len(t, bs.calls()[0], 100)
		require.Equal(t, int64(100), bs.syncs.Load(), "then Sync for each job")
		require.Equal(t, 1, txs.count(), "all in the batch's transaction")
		require.Eventually(t, func() bool { return len(obs.of(poison)) == 1 }, 10*time.Second, time.Millisecond)
		require.Equal(t, StatusDeadLetter, obs.of(poison)[0].Status)
		require.ErrorContains(t, obs.of(poison)[0].Err, "poisoned record")
		require.Equal(t, 0, count(t, e.db, unprocessedSQL))
	})
}

// TestWorkerBatchPanicInSyncBatch: a panic in SyncBatch is recovered, its
// writes undone, and the jobs run one by one; only the job whose Sync
// panics fails, with code panic.
func TestWorkerBatchPanicInSyncBatch(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newWorkerEnv(t, tdb)
		sideEffects(t, e.db)
		ids := e.ingestN(t, 5)
		bad := ids[2]
		bs := &batchFuncs{
			sync: func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
				if err := writeSideEffect(ctx, tx, job); err != nil {
					return err
				}
				if job.JobID == bad {
					panic("boom in Sync")
				}
				return nil
			},
			batch: func(ctx context.Context, tx bun.Tx, jobs []*SyncJob) error {
				if err := writeSideEffects(ctx, tx, jobs); err != nil {
					return err
				}
				panic("boom in SyncBatch")
			},
		}
		e.start(t, bs, WithBatchSize(100), WithConcurrency(1),
			WithRetryPolicy(ExponentialBackoff{Base: time.Hour, Max: time.Hour}))
		j := e.waitStatus(t, bad, StatusRetry)
		require.Equal(t, CodePanic, *j.LastErrorCode)
		require.Contains(t, *j.LastError, "boom in Sync")
		var good []int64
		for _, id := range ids {
			if id != bad {
				e.waitStatus(t, id, StatusCompleted)
				good = append(good, id)
			}
		}
		requireEachOnce(t, e.db, good)
		require.Len(t, bs.calls(), 1)
		require.Equal(t, int64(len(ids)), bs.syncs.Load())
	})
}

// TestWorkerBatchLeaseLostInSyncBatch: a job's lease is taken by another
// owner while SyncBatch runs: the batch is rolled back and run again
// (through SyncBatch) without it, nothing is written twice, and the other
// jobs complete once.
func TestWorkerBatchLeaseLostInSyncBatch(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		sideEffects(t, e.db)
		ids := e.ingestN(t, 3)
		steal := func(db bun.IDB) {
			_, err := db.NewUpdate().Model((*store.Job)(nil)).Set("locked_by = 'thief'").Where("id = ?", ids[1]).Exec(ctx)
			require.NoError(t, err)
		}
		var first atomic.Bool
		bs := &batchFuncs{
			sync: writeSideEffect,
			batch: func(ctx context.Context, tx bun.Tx, jobs []*SyncJob) error {
				if err := writeSideEffects(ctx, tx, jobs); err != nil {
					return err
				}
				// On PostgreSQL another connection takes the lease mid-batch;
				// SQLite's one connection is the batch's, so it was taken before.
				if tdb.name == "postgres" && first.CompareAndSwap(false, true) {
					steal(e.db)
				}
				return nil
			},
		}
		var obs observed
		w, err := NewWorker(e.db, bs, WithClock(e.clock.Now), WithObserver(obs.add), WithLogger(slog.New(slog.DiscardHandler)))
		require.NoError(t, err)
		jobs, err := w.claim(ctx, 10)
		require.NoError(t, err)
		require.Len(t, jobs, 3)
		if tdb.name == "sqlite" {
			steal(e.db)
		}
		w.processBatch(ctx, nil, jobs)

		requireEachOnce(t, e.db, []int64{ids[0], ids[2]})
		require.Equal(t, [][]int64{ids, {ids[0], ids[2]}}, bs.calls(), "run again through SyncBatch, without the lost job")
		require.Zero(t, bs.syncs.Load())
		for _, id := range []int64{ids[0], ids[2]} {
			require.Equal(t, StatusCompleted, e.job(t, id).Status)
			require.Len(t, obs.of(id), 1)
		}
		e.requireStolen(t, ids[1], &obs, w)
	})
}

// TestWorkerBatchFailureOutsideSavepoint: a SyncBatch that writes through
// tx.Tx (unseen by the savepoint hook) and fails cannot be undone alone:
// the batch is rolled back and its jobs run one per transaction, each
// applied once.
func TestWorkerBatchFailureOutsideSavepoint(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		e := newWorkerEnv(t, tdb)
		sideEffects(t, e.db)
		ids := e.ingestN(t, 3)
		var txs sameTx
		bs := &batchFuncs{
			sync: func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
				txs.note(tx)
				return writeSideEffect(ctx, tx, job)
			},
			batch: func(ctx context.Context, tx bun.Tx, jobs []*SyncJob) error {
				txs.note(tx)
				for _, j := range jobs {
					if _, err := tx.Tx.ExecContext(ctx, "INSERT INTO side_effects (job_id) VALUES ($1)", j.JobID); err != nil {
						return err
					}
				}
				return errors.New("batch rejected")
			},
		}
		e.start(t, bs, WithBatchSize(100), WithConcurrency(1))
		for _, id := range ids {
			j := e.waitStatus(t, id, StatusCompleted)
			require.Equal(t, OutcomeSynced, *j.Outcome)
			require.Equal(t, 1, j.Attempt, "the batch's failure is no failed attempt")
		}
		requireEachOnce(t, e.db, ids)
		require.Len(t, bs.calls(), 1)
		require.Equal(t, int64(3), bs.syncs.Load())
		require.Equal(t, 4, txs.count(), "the batch's transaction, then one per job")
		require.Equal(t, 0, count(t, e.db, "SELECT COUNT(*) FROM tds_sync_attempts"))
	})
}

// mirrorState is a mirror table row, for comparisons.
type mirrorState struct {
	EntityID     string     `bun:"entity_id"`
	Source       string     `bun:"source"`
	Data         string     `bun:"data"`
	Version      time.Time  `bun:"source_modified_at"`
	SyncedAt     time.Time  `bun:"synced_at"`
	DeletedAt    *time.Time `bun:"deleted_at"`
	InboxEventID int64      `bun:"inbox_event_id"`
}

// jobOutcome is what became of a job, for comparisons.
type jobOutcome struct {
	ID      int64   `bun:"id"`
	Status  string  `bun:"status"`
	Outcome *string `bun:"outcome"`
	Detail  *string `bun:"outcome_detail"`
	Attempt int     `bun:"attempt_count"`
}

// TestMirrorSyncerBatchEquivalence: the same random workload (creates,
// updates, deletes, versions out of order, ties) applied through
// MirrorSyncer's batched path and through Sync alone gives the same mirror
// table and the same job outcomes.
func TestMirrorSyncerBatchEquivalence(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(12, 34))
		types := []string{EventCreate, EventUpdate, EventUpdate, EventDelete}
		var evs []*Event
		for range 200 {
			evs = append(evs, versioned(fmt.Sprint(rng.IntN(20)), rng.IntN(30), types[rng.IntN(len(types))]))
		}

		run := func(tdb *testDB, batched bool) ([]mirrorState, []jobOutcome, int) {
			e := newWorkerEnv(t, tdb)
			require.NoError(t, MigrateMirror(ctx, e.db, ZohoRegistry()))
			for _, ev := range evs {
				_, err := e.p.Process(ctx, ev)
				require.NoError(t, err)
			}
			total := count(t, e.db, "SELECT COUNT(*) FROM tds_sync_queue")
			m, err := NewMirrorSyncer(WithClock(e.clock.Now))
			require.NoError(t, err)
			var s Syncer = SyncFunc(m.Sync) // not a BatchSyncer
			bs := &batchFuncs{sync: m.Sync, batch: m.SyncBatch}
			if batched {
				s = bs
			}
			stop := e.start(t, s, WithBatchSize(100), WithConcurrency(1))
			require.Eventually(t, func() bool {
				return count(t, e.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'completed'") == total
			}, 20*time.Second, 5*time.Millisecond)
			stop()
			var rows []mirrorState
			require.NoError(t, e.db.NewSelect().Table("products").Column("entity_id", "source", "data",
				"source_modified_at", "synced_at", "deleted_at", "inbox_event_id").Order("entity_id").Scan(ctx, &rows))
			for i := range rows {
				rows[i].Version, rows[i].SyncedAt = rows[i].Version.UTC(), rows[i].SyncedAt.UTC()
				if rows[i].DeletedAt != nil {
					d := rows[i].DeletedAt.UTC()
					rows[i].DeletedAt = &d
				}
				var v any // JSONB may reformat; compare the value
				require.NoError(t, json.Unmarshal([]byte(rows[i].Data), &v))
				b, _ := json.Marshal(v)
				rows[i].Data = string(b)
			}
			var jobs []jobOutcome
			require.NoError(t, e.db.NewSelect().Table("tds_sync_queue").Column("id", "status", "outcome", "outcome_detail", "attempt_count").
				Order("id").Scan(ctx, &jobs))
			if batched {
				// A batch of one job is synced with Sync; every other job
				// went through SyncBatch, which never failed.
				n := 0
				for _, c := range bs.calls() {
					require.Greater(t, len(c), 1)
					n += len(c)
				}
				require.Greater(t, n, total/2, "the batched path was used")
				require.Equal(t, total, n+int(bs.syncs.Load()), "no job synced twice")
				return rows, jobs, n
			}
			return rows, jobs, 0
		}
		batchRows, batchJobs, n := run(tdb, true)
		oneRows, oneJobs, _ := run(openTestDB(t, tdb.name), false)
		t.Logf("%s: %d of %d jobs through SyncBatch", tdb.name, n, len(batchJobs))
		require.Equal(t, oneRows, batchRows)
		require.Equal(t, oneJobs, batchJobs)
		superseded, deleted := 0, 0
		for _, j := range batchJobs {
			if *j.Outcome == string(OutcomeSuperseded) {
				superseded++
			}
		}
		for _, r := range batchRows {
			if r.DeletedAt != nil {
				deleted++
			}
		}
		require.Positive(t, superseded, "the workload has stale versions")
		require.Positive(t, deleted, "the workload has deletes")
		require.Len(t, batchRows, 20)
	})
}

// TestMirrorSyncerBatchSameRowTwice: the mirror table is keyed by entity
// id alone, so one batch can hold two jobs that write the same row (the
// same id from two sources). The batch must treat them as Sync does: in
// order, the older version superseded by the newer.
func TestMirrorSyncerBatchSameRowTwice(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		require.NoError(t, MigrateMirror(ctx, e.db, ZohoRegistry()))
		m, err := NewMirrorSyncer(WithClock(e.clock.Now))
		require.NoError(t, err)
		newer := versioned("X", 20, EventUpdate)
		newer.Source = "erp-a"
		older := versioned("X", 10, EventUpdate)
		older.Source = "erp-b"
		first, second := mustProcess(t, e.p, newer), mustProcess(t, e.p, older)
		bs := &batchFuncs{sync: m.Sync, batch: m.SyncBatch}
		e.start(t, bs, WithBatchSize(100), WithConcurrency(1))
		j := e.waitStatus(t, first, StatusCompleted)
		require.Equal(t, OutcomeSynced, *j.Outcome)
		j = e.waitStatus(t, second, StatusCompleted)
		require.Equal(t, OutcomeSuperseded, *j.Outcome, "as Sync would have it")
		require.Len(t, bs.calls(), 1)
		require.Equal(t, int64(2), bs.syncs.Load(), "synced one at a time")
		var row mirrorState
		require.NoError(t, e.db.NewSelect().Table("products").Column("source", "source_modified_at").
			Where("entity_id = ?", "X").Scan(ctx, &row))
		require.Equal(t, "erp-a", row.Source)
		requireSameTime(t, time.Date(2026, 11, 1, 0, 20, 0, 0, time.UTC), row.Version)
	})
}
