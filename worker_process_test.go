package tds

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
)

// childWorker is the body of a worker process started by a multi-process
// test (TDS_TEST_CHILD_WORKER=mode, TDS_TEST_URL, TDS_TEST_OUT):
//
//   - "block": mirrors the first job it gets, prints "SYNCING <job id>" and
//     hangs there, holding the uncommitted write, until it is killed;
//   - "order": runs a Worker of 4 goroutines with a MirrorSyncer, writes
//     every sync's wall-clock interval to TDS_TEST_OUT as JSON lines and
//     stops gracefully on SIGTERM;
//   - "batchorder": like "order" with a BatchSyncer over MirrorSyncer
//     (batchOrderSyncer), batches of 20, which also logs every job it
//     applies in the table apply_log, through the job's transaction.
func childWorker(mode string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	db, err := Open(ctx, os.Getenv("TDS_TEST_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer db.Close()
	mirror, err := NewMirrorSyncer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var s Syncer
	opts := []Option{WithLogger(logger), WithPollInterval(50 * time.Millisecond), WithWorkerID(mode + fmt.Sprint(os.Getpid()))}
	var out *os.File
	var outMu sync.Mutex
	switch mode {
	case "block":
		opts = append(opts, WithLeaseDuration(2*time.Second), WithConcurrency(1))
		s = SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
			if err := mirror.Sync(ctx, tx, job); err != nil {
				return err
			}
			fmt.Printf("SYNCING %d\n", job.JobID)
			select {} // killed here, mid-sync
		})
	case "order":
		out, err = os.Create(os.Getenv("TDS_TEST_OUT"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		opts = append(opts, WithConcurrency(4))
		s = SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
			start := time.Now().UnixNano()
			err := mirror.Sync(ctx, tx, job)
			line, _ := json.Marshal(interval{Entity: job.EntityID, Job: job.JobID, Start: start, End: time.Now().UnixNano()})
			outMu.Lock()
			defer outMu.Unlock()
			if _, werr := out.Write(append(line, '\n')); werr != nil {
				return werr
			}
			return err
		})
	case "batchorder":
		out, err = os.Create(os.Getenv("TDS_TEST_OUT"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		opts = append(opts, WithConcurrency(4), WithBatchSize(20))
		s = batchOrderSyncer(mirror, out)
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode", mode)
		return 2
	}
	w, err := NewWorker(db, s, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if out != nil {
		if err := out.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// startChild starts this test binary as a worker process.
func startChild(t *testing.T, mode, url, out string) (*exec.Cmd, io.Reader, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TDS_TEST_CHILD_WORKER="+mode, "TDS_TEST_URL="+url, "TDS_TEST_OUT="+out)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr := new(strings.Builder)
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, stdout, stderr
}

func TestWorkerKilledMidSyncIsRescuedAndSyncedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tdb := openTestDB(t, "postgres")
	require.NoError(t, MigrateMirror(ctx, tdb.db, ZohoRegistry()))
	p, err := NewProcessor(tdb.db)
	require.NoError(t, err)
	res, err := p.Process(ctx, versioned("42", 1, EventUpdate))
	require.NoError(t, err)

	cmd, stdout, stderr := startChild(t, "block", tdb.url, "")
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "child stderr: %s", stderr)
	require.Equal(t, fmt.Sprintf("SYNCING %d\n", res.JobID), line)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	q, err := NewQueue(tdb.db)
	require.NoError(t, err)
	j, err := q.Get(ctx, res.JobID)
	require.NoError(t, err)
	require.Equal(t, StatusProcessing, j.Status, "the dead worker still holds it")
	require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM products"), "its uncommitted write is gone")
	holder := *j.LeasedBy

	// A surviving worker whose clock is past the dead one's lease.
	var syncs atomic.Int32
	mirror, err := NewMirrorSyncer()
	require.NoError(t, err)
	s := SyncFunc(func(ctx context.Context, tx bun.Tx, job *SyncJob) error {
		syncs.Add(1)
		return mirror.Sync(ctx, tx, job)
	})
	e := &workerEnv{tdb: tdb, db: tdb.db, q: q, clock: newTestClock()}
	e.clock.Set(time.Now().Add(time.Minute))
	e.start(t, s)
	j = e.waitStatus(t, res.JobID, StatusCompleted)
	require.Equal(t, 2, j.Attempt, "the killed attempt counts")
	require.Equal(t, int32(1), syncs.Load())
	attempts, err := q.Attempts(ctx, res.JobID)
	require.NoError(t, err)
	require.Len(t, attempts, 1)
	require.Equal(t, CodeLeaseExpired, *attempts[0].ErrorCode)
	require.Equal(t, holder, *attempts[0].Worker)
	require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM products WHERE inbox_event_id = ?", res.EventID))
}

// TestWorkerOrderAcrossProcesses is the order test: 10,000 events over 200
// entities, delivered in shuffled order with redeliveries, synced by two
// processes of four workers each.
func TestWorkerOrderAcrossProcesses(t *testing.T) {
	t.Parallel()
	const entities, versions, redeliveries = 200, 50, 500
	if testing.Short() {
		t.Skip("the order test takes a while")
	}
	ctx := context.Background()
	tdb := openTestDB(t, "postgres")
	require.NoError(t, MigrateMirror(ctx, tdb.db, ZohoRegistry()))

	dir := t.TempDir()
	var children []*exec.Cmd
	var errs []*strings.Builder
	for i := range 2 {
		cmd, stdout, stderr := startChild(t, "order", tdb.url, filepath.Join(dir, fmt.Sprintf("intervals-%d.jsonl", i)))
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
		children, errs = append(children, cmd), append(errs, stderr)
	}

	// Every version of every entity, shuffled, some delivered twice.
	rng := rand.New(rand.NewPCG(1, 2))
	var evs []*Event
	for n := range entities {
		for v := range versions {
			evs = append(evs, versioned(fmt.Sprint(n), v, EventUpdate))
		}
	}
	rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	for range redeliveries {
		i := rng.IntN(len(evs))
		dup := *evs[i]
		evs = append(evs, &dup)
	}
	rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })

	// Eight concurrent senders take the shuffled deliveries round-robin, so
	// deliveries of one entity overlap in time and share group commits.
	// Ingest serialises one entity's transactions, so its jobs' ids follow
	// their commit order, which the workers then keep.
	p, err := NewProcessor(tdb.db)
	require.NoError(t, err)
	const senders = 8
	var work [senders][]*Event
	for i, ev := range evs {
		work[i%senders] = append(work[i%senders], ev)
	}
	var wg sync.WaitGroup
	var dups atomic.Int32
	for i := range senders {
		wg.Go(func() {
			for _, ev := range work[i] {
				res, err := p.Process(ctx, ev)
				if !assertNoError(t, err) {
					continue
				}
				if res.Duplicate {
					dups.Add(1)
				}
			}
		})
	}
	wg.Wait()
	const total = entities * versions
	require.GreaterOrEqual(t, int(dups.Load()), redeliveries)
	require.Equal(t, total, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))

	require.Eventually(t, func() bool {
		return count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'completed'") == total
	}, 4*time.Minute, 100*time.Millisecond, "children: %v", errs)
	for i, c := range children {
		require.NoError(t, c.Process.Signal(syscall.SIGTERM))
		require.NoError(t, c.Wait(), "child %d: %s", i, errs[i])
	}

	// Intervals: each job synced exactly once, one entity at a time, in order.
	byEntity := map[string][]interval{}
	seen := map[int64]bool{}
	for i := range children {
		f, err := os.Open(filepath.Join(dir, fmt.Sprintf("intervals-%d.jsonl", i)))
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var iv interval
			require.NoError(t, json.Unmarshal(sc.Bytes(), &iv))
			require.False(t, seen[iv.Job], "job %d synced twice", iv.Job)
			seen[iv.Job] = true
			byEntity[iv.Entity] = append(byEntity[iv.Entity], iv)
		}
		require.NoError(t, sc.Err())
		require.NoError(t, f.Close())
	}
	require.Len(t, seen, total)
	for key, ivs := range byEntity {
		checkIntervals(t, key, ivs)
	}
	require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_attempts"))

	// Outcomes: in arrival (id) order, a version below the best so far is
	// superseded, every other one synced.
	jobs := jobVersions(t, tdb.db)
	best := map[string]time.Time{}
	for _, j := range jobs {
		want := OutcomeSynced
		if j.Version.Before(best[j.EntityID]) {
			want = OutcomeSuperseded
		} else {
			best[j.EntityID] = j.Version
		}
		require.Equal(t, want, j.Outcome, "job %d", j.ID)
	}
	// The mirror holds the newest version of every entity.
	var rows []struct {
		EntityID string    `bun:"entity_id"`
		Version  time.Time `bun:"source_modified_at"`
		Data     string    `bun:"data"`
	}
	require.NoError(t, tdb.db.NewSelect().Table("products").Column("entity_id", "source_modified_at", "data").Scan(ctx, &rows))
	require.Len(t, rows, entities)
	for _, r := range rows {
		newest := versioned(r.EntityID, versions-1, EventUpdate)
		require.True(t, best[r.EntityID].Equal(r.Version), "entity %s", r.EntityID)
		require.JSONEq(t, string(newest.Data), r.Data, "entity %s", r.EntityID)
	}
}

// assertNoError reports err without stopping the goroutine's loop.
func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}
