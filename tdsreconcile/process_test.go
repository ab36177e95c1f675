package tdsreconcile

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/internal/zohofake"
)

// Exit codes of a reconciling child process.
const (
	childExitInProgress = 3 // Start refused with ErrRunInProgress
)

// childReconcile is the body of a reconciling process started by a
// multi-process test (TDS_TEST_CHILD_RECONCILE=mode, TDS_TEST_URL: the
// database, TDS_TEST_ZOHO: the fake Zoho), on the real clock:
//
//   - "sweep": runs a full sweep of products to its end (the test kills it
//     on the way);
//   - "start": prints "READY", waits for a line on stdin (the barrier),
//     calls Start and prints "STARTED <id>", or exits with
//     childExitInProgress when a run is going.
func childReconcile(mode string) int {
	ctx := context.Background()
	db, err := tds.Open(ctx, os.Getenv("TDS_TEST_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer db.Close()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	proc, err := tds.NewProcessor(db, tds.WithLogger(logger))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer proc.Close()
	api := ZohoAPI(testdb.ZohoAPI(os.Getenv("TDS_TEST_ZOHO")))
	api.DailyBudget = -1
	rc, err := New(db, proc, api, WithLogger(logger))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	switch mode {
	case "sweep":
		run, err := rc.Run(ctx, Request{Mode: Full, EntityTypes: []string{"product"}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("DONE %d %s\n", run.ID, run.Status)
		return 0
	case "start":
		fmt.Println("READY")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		id, err := rc.Start(ctx, Request{Mode: Full, EntityTypes: []string{"product"}})
		if errors.Is(err, ErrRunInProgress) {
			return childExitInProgress
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// Exits without Close: the run stays held by this dead process.
		fmt.Printf("STARTED %d\n", id)
		return 0
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode", mode)
		return 2
	}
}

// startReconcileChild starts this test binary as a reconciling process.
func startReconcileChild(t *testing.T, mode, dbURL, zohoURL string) *testkit.Child {
	t.Helper()
	return testkit.StartChild(t, "TDS_TEST_CHILD_RECONCILE="+mode, "TDS_TEST_URL="+dbURL, "TDS_TEST_ZOHO="+zohoURL)
}

// countingSyncer mirrors and counts how often each job was applied.
type countingSyncer struct {
	m  *tds.MirrorSyncer
	mu sync.Mutex
	n  map[int64]int
}

func (s *countingSyncer) Sync(ctx context.Context, tx bun.Tx, job *tds.SyncJob) error {
	if err := s.m.Sync(ctx, tx, job); err != nil {
		return err
	}
	// Counted once the transaction commits is not observable here; a
	// failed commit would show as a job synced twice, which is what the
	// test forbids anyway.
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n[job.JobID]++
	return nil
}

// TestReconcileKilledMidRunResumes: a process running a full sweep of
// 1,000 products (5 pages) is killed with SIGKILL, during the listing or
// during the repairs; the next Run, in another process whose clock is past
// the dead one's hold, resumes the same run after its last saved step,
// completes it, and every drifted entity is repaired by exactly one event,
// each job applied once, the mirror equal to Zoho.
func TestReconcileKilledMidRunResumes(t *testing.T) {
	for _, phase := range []string{"list", "repair"} {
		t.Run(phase, func(t *testing.T) {
			t.Parallel()
			testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) { testKilledMidRun(t, tdb, phase) })
		})
	}
}

func testKilledMidRun(t *testing.T, tdb *testdb.DB, phase string) {
	ctx := context.Background()
	e := newReconcileEnv(t, tdb, WithMaxDeletes(1000))
	mirror, err := tds.NewMirrorSyncer()
	require.NoError(t, err)
	syncer := &countingSyncer{m: mirror, n: map[int64]int{}}
	testdb.StartWorker(t, e.db, e.clock.Now, syncer)

	// 5 pages of 200 on PostgreSQL; 2 on SQLite, whose pure-Go driver is
	// slow under the race detector. The child is stopped on the page
	// after its first saved one.
	items, stopPage := 1000, 3
	if tdb.Name == "sqlite" {
		items, stopPage = 400, 2
	}
	pages := int64(items / listPageSize)
	base := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	var senders sync.WaitGroup
	for g := range 8 {
		senders.Go(func() {
			for i := g; i < items; i += 8 {
				id := fmt.Sprintf("item-%04d", i)
				rec := apiRecord("product", id, base.Add(time.Duration(i)*time.Second), 0)
				e.fake.Put("items", rec)
				if i%20 != 0 { // 5 % never delivered
					data, err := json.Marshal(rec)
					if assertNoError(t, err) {
						_, err = e.p.Process(ctx, &tds.Event{EventType: tds.EventUpdate, EntityType: "product", EntityID: id, Data: data})
						assertNoError(t, err)
					}
				}
			}
		})
	}
	senders.Wait()
	e.drain(t)
	later := base.Add(24 * time.Hour)
	for i := range items {
		id := fmt.Sprintf("item-%04d", i)
		switch {
		case i%50 == 1:
			e.fake.Delete("items", id)
		case i%30 == 2:
			e.fake.Put("items", apiRecord("product", id, later.Add(time.Duration(i)*time.Second), 1))
		}
	}

	// The child is stopped on the request that follows its saved step:
	// list page 3, or the 20th detail request.
	var (
		parent           atomic.Bool
		details          atomic.Int32
		parentLists      atomic.Int32
		parentDetails    atomic.Int32
		blocked          atomic.Bool
		reached          = make(chan struct{})
		release          = make(chan struct{})
		releaseOnce      sync.Once
		releaseAll       = func() { releaseOnce.Do(func() { close(release) }) }
		isList, isDetail = func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/items") }, func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/items/") }
	)
	t.Cleanup(releaseAll) // before the fake closes: it waits for its handlers
	e.fake.OnRequest(func(r *http.Request) {
		if parent.Load() {
			switch {
			case isList(r):
				parentLists.Add(1)
			case isDetail(r):
				parentDetails.Add(1)
			}
			return
		}
		stop := false
		switch phase {
		case "list":
			stop = isList(r) && r.URL.Query().Get("page") == fmt.Sprint(stopPage)
		case "repair":
			stop = isDetail(r) && details.Add(1) == 20
		}
		if stop && blocked.CompareAndSwap(false, true) {
			close(reached)
			<-release
		}
	})

	child := startReconcileChild(t, "sweep", tdb.URL, e.fake.URL())
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		_, _ = io.Copy(io.Discard, child.Stdout)
	}()
	select {
	case <-reached:
	case <-exited:
		t.Fatalf("the child ended before it was stopped: %s", child.Stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("the child never reached the stop: %s", child.Stderr)
	}
	require.NoError(t, child.Cmd.Process.Signal(syscall.SIGKILL))
	_ = child.Cmd.Wait()
	<-exited
	parent.Store(true)
	releaseAll()

	// The dead child's run, as it left it.
	var runs []SyncRun
	runs, err = e.rc.ListRuns(ctx, tds.Page{Limit: 10})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	dead := runs[0]
	require.Equal(t, RunRunning, dead.Status)
	// last is the drift item whose resolve is undone, in the repair phase.
	var last struct {
		ID      int64 `bun:"id"`
		EventID int64 `bun:"inbox_event_id"`
	}
	doneBefore := testkit.Count(t, e.db, "SELECT COUNT(*) FROM tds_sync_drift WHERE run_id = ? AND inbox_event_id IS NOT NULL", dead.ID)
	switch phase {
	case "list":
		require.Equal(t, int64(stopPage-1), dead.Pages, "the pages before the stop saved")
		require.Zero(t, doneBefore)
	case "repair":
		require.Equal(t, pages, dead.Pages)
		require.Equal(t, 19, doneBefore, "the repairs before the 20th detail request")
		// As if the kill had fallen between the last repair's ingest and
		// its resolve: the resumed run ingests it again, a duplicate.
		require.NoError(t, e.db.NewRaw(`SELECT id, inbox_event_id FROM tds_sync_drift WHERE run_id = ? AND inbox_event_id IS NOT NULL
		ORDER BY id DESC LIMIT 1`, dead.ID).Scan(ctx, &last))
		_, err = e.db.ExecContext(ctx, `UPDATE tds_sync_drift SET resolved = FALSE, inbox_event_id = NULL, reason = NULL, repair_hash = NULL
		WHERE id = ?`, last.ID)
		require.NoError(t, err)
		doneBefore--
	}
	// Before its hold expires, the run is not resumed.
	_, err = e.rc.Run(ctx, Request{Mode: Full, EntityTypes: []string{"product"}})
	require.ErrorIs(t, err, ErrRunInProgress)

	// A clock past the child's hold (it ran on the real clock).
	e.clock.Advance(time.Now().Add(DefaultRunLease + time.Minute).Sub(e.clock.Now()))
	run, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: []string{"product"}})
	require.NoError(t, err)
	require.Equal(t, dead.ID, run.ID, "the same run resumed")
	require.Equal(t, RunCompleted, run.Status, run.Error)
	require.Equal(t, pages, run.Pages)
	switch phase {
	case "list":
		require.Equal(t, int32(pages)-int32(stopPage)+1, parentLists.Load(), "the pages from the stop on only")
	case "repair":
		require.Zero(t, parentLists.Load(), "no listing again")
	}
	drifted := run.Counts.MissingLocal + run.Counts.StaleLocal + run.Counts.MissingRemote + run.Counts.Changed
	require.Positive(t, run.Counts.MissingLocal)
	require.Positive(t, run.Counts.StaleLocal)
	require.Positive(t, run.Counts.MissingRemote)
	require.Equal(t, drifted, run.Repaired)
	require.Equal(t, int(drifted)-doneBefore, int(parentDetails.Load()), "one detail request per repair not done")
	runs, err = e.rc.ListRuns(ctx, tds.Page{Limit: 10})
	require.NoError(t, err)
	require.Len(t, runs, 1, "no second run")

	e.drain(t)
	e.requireMirrorEqualsFake(t, "product")
	require.Equal(t, int(drifted), testkit.Count(t, e.db, "SELECT COUNT(*) FROM tds_inbox_events WHERE sync_run_id = ?", run.ID))
	var twice []struct {
		EntityType string `bun:"entity_type"`
		EntityID   string `bun:"source_entity_id"`
		N          int    `bun:"n"`
	}
	require.NoError(t, e.db.NewRaw(`SELECT entity_type, source_entity_id, count(*) AS n FROM tds_inbox_events
	WHERE sync_run_id = ? GROUP BY 1, 2 HAVING count(*) > 1`, run.ID).Scan(ctx, &twice))
	require.Empty(t, twice, "entities repaired twice")
	if phase == "repair" {
		require.Equal(t, int(last.EventID), testkit.Count(t, e.db, "SELECT inbox_event_id FROM tds_sync_drift WHERE id = ?", last.ID),
			"resolved with the event ingested before the kill")
	}
	syncer.mu.Lock()
	defer syncer.mu.Unlock()
	// Housekeeping, on the clock moved ahead, may have pruned old events and
	// jobs: the count is of what was ingested.
	require.Equal(t, items-items/20+int(drifted), len(syncer.n), "every webhook's and repair's job applied")
	for job, n := range syncer.n {
		require.Equal(t, 1, n, "job %d applied %d times", job, n)
	}
}

// TestReconcileTwoProcessesStartOneRun: two processes call Start at the
// same moment, released together by a line on their stdin: one gets the
// run, the other ErrRunInProgress, and tds_sync_runs holds one row.
func TestReconcileTwoProcessesStartOneRun(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		fake := zohofake.New(zohofake.Options{})
		t.Cleanup(fake.Close)
		// The run never ends while the test looks: its first request
		// waits for the end of the test.
		hold := make(chan struct{})
		t.Cleanup(func() { close(hold) })
		fake.OnRequest(func(*http.Request) { <-hold })

		children := []*testkit.Child{
			startReconcileChild(t, "start", tdb.URL, fake.URL()),
			startReconcileChild(t, "start", tdb.URL, fake.URL()),
		}
		testkit.Release(t, children...)
		var ids []string
		refused := 0
		for _, c := range children {
			out, _ := io.ReadAll(c.Stdout)
			err := c.Cmd.Wait()
			var exit *exec.ExitError
			switch {
			case err == nil:
				ids = append(ids, strings.TrimSpace(string(out)))
			case errors.As(err, &exit) && exit.ExitCode() == childExitInProgress:
				refused++
			default:
				t.Fatalf("child: %v: %s", err, c.Stderr)
			}
		}
		require.Len(t, ids, 1, "exactly one run started")
		require.Equal(t, 1, refused, "exactly one refused")
		require.Equal(t, 1, testkit.Count(t, tdb.DB, "SELECT COUNT(*) FROM tds_sync_runs"))
		var id int64
		require.NoError(t, tdb.DB.QueryRowContext(context.Background(), "SELECT id FROM tds_sync_runs").Scan(&id))
		require.Equal(t, fmt.Sprintf("STARTED %d", id), ids[0])
	})
}

// TestReconcileTakeOverKeepsToItsSource: a Reconciler of another source
// (other credentials, another organisation) never resumes a dead run of
// this one: it would read the run's entities through the wrong API, find
// them gone, and ingest deletes for them.
func TestReconcileTakeOverKeepsToItsSource(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		st := testdb.Store(t, tdb.DB)
		owner := "dead-process"
		until := e.clock.Now().Add(DefaultRunLease)
		dead := &store.Run{Source: tds.DefaultSource, Mode: string(Full), EntityTypes: []byte(`["product"]`),
			StartedAt: e.clock.Now(), LockedBy: &owner, LockedUntil: &until}
		require.NoError(t, st.StartRun(ctx, tdb.DB, dead))
		e.clock.Advance(2 * DefaultRunLease)

		other := e.newReconciler(t, WithSource("zoho-other"))
		own, err := other.Run(ctx, Request{Mode: Full, EntityTypes: []string{"product"}})
		require.NoError(t, err, "one run at a time per source: the other source runs its own")
		require.NotEqual(t, dead.ID, own.ID, "never another source's run")
		require.Equal(t, "zoho-other", own.Source)
		require.Equal(t, RunCompleted, own.Status, own.Error)
		got, err := st.GetRun(ctx, tdb.DB, dead.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunRunning, got.Status)
		require.Equal(t, owner, *got.LockedBy, "not taken over")

		run, err := e.rc.Run(ctx, Request{Mode: Full, EntityTypes: []string{"product"}})
		require.NoError(t, err)
		require.Equal(t, dead.ID, run.ID, "its own source resumes it")
		require.Equal(t, RunCompleted, run.Status, run.Error)
	})
}
