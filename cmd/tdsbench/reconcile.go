package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/internal/zohofake"
	"github.com/tdscore/tds/tdsreconcile"
)

// fakeZohoEnv makes the process a fake Zoho holding the benchmark's
// records (the variable's value is how many), so that the sweep's peak RSS
// is the reconciler's alone.
const fakeZohoEnv = "TDSBENCH_FAKE_ZOHO"

// The benchmark's data: n items in Zoho, every 300th of them newer than
// applied (stale_local), every 300th never applied (missing_local), and as
// many applied items gone from Zoho (missing_remote): 1 % drift.
var benchBase = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func benchVersion(i int) time.Time { return benchBase.Add(time.Duration(i) * time.Second) }

func benchID(i int) string { return fmt.Sprintf("item-%07d", i) }

func benchRemoteVersion(i int) time.Time {
	if i%300 == 1 {
		return benchVersion(i).Add(24 * time.Hour)
	}
	return benchVersion(i)
}

// serveFakeZoho runs a fake Zoho with n items until stdin closes, after
// printing its URL.
func serveFakeZoho(n int) int {
	fake := zohofake.New(zohofake.Options{})
	defer fake.Close()
	for i := range n {
		fake.Put("items", map[string]any{"item_id": benchID(i), "name": "Item " + strconv.Itoa(i), "rate": i % 97,
			"last_modified_time": benchRemoteVersion(i).Format(tds.ZohoTimeLayout)})
	}
	fmt.Println(fake.URL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// startFakeZoho starts this program as a fake Zoho with n items.
func startFakeZoho(ctx context.Context, n int) (url string, stop func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), fakeZohoEnv+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("starting the fake Zoho: %w", err)
	}
	return strings.TrimSpace(line), stop, nil
}

// seedApplied records what tds has applied: the items, less the missing
// ones, plus those gone from Zoho.
func seedApplied(ctx context.Context, db *bun.DB, n int) error {
	st, err := store.For(db)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	var rows []store.Applied
	flush := func() error {
		err := db.RunInTx(ctx, st.TxOptions(), func(ctx context.Context, tx bun.Tx) error {
			return st.RecordApplied(ctx, tx, rows)
		})
		rows = rows[:0]
		return err
	}
	for i := range n {
		if i%300 == 2 {
			continue // missing locally
		}
		rows = append(rows, store.Applied{Source: tds.DefaultSource, EntityType: "product", EntityID: benchID(i),
			Version: benchVersion(i), ContentHash: "seed", SyncedAt: now, InboxEventID: int64(i + 1)})
		if i%300 == 3 {
			rows = append(rows, store.Applied{Source: tds.DefaultSource, EntityType: "product", EntityID: "gone-" + benchID(i),
				Version: benchVersion(i), ContentHash: "seed", SyncedAt: now, InboxEventID: int64(n + i + 1)})
		}
		if len(rows) >= 1000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// runReconcile times a full sweep of n remote items with 1 % drift against
// a fake Zoho in another process, without the client-side limiter, and
// checks that it made no more API calls than the floor.
func runReconcile(ctx context.Context, db *bun.DB, c config, r *report) error {
	n := c.reconcileN
	if _, err := db.ExecContext(ctx, "DELETE FROM tds_applied"); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, "DELETE FROM tds_sync_runs"); err != nil {
		return err
	}
	if err := seedApplied(ctx, db, n); err != nil {
		return err
	}
	url, stop, err := startFakeZoho(ctx, n)
	if err != nil {
		return err
	}
	defer stop()
	proc, err := tds.NewProcessor(db)
	if err != nil {
		return err
	}
	defer proc.Close()
	rc, err := tdsreconcile.New(db, proc, tdsreconcile.ZohoAPI{ClientID: "client-id", ClientSecret: "client-secret",
		RefreshToken: "refresh-token", OrganizationID: "org-1", AccountsURL: url, APIURL: url,
		RequestsPerMinute: -1, DailyBudget: -1}, tdsreconcile.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return err
	}
	defer rc.Close()

	rssReset := resetPeakRSS()
	start := time.Now()
	run, err := rc.Run(ctx, tdsreconcile.Request{Mode: tdsreconcile.Full, EntityTypes: []string{"product"}})
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	rss := peakRSS()
	if run.Status != tdsreconcile.RunCompleted {
		return fmt.Errorf("run %d ended %s: %s", run.ID, run.Status, run.Error)
	}
	drift := run.Counts.MissingLocal + run.Counts.StaleLocal + run.Counts.MissingRemote + run.Counts.Changed
	wantDrift := int64(0)
	for i := range n {
		if i%300 == 1 || i%300 == 2 || i%300 == 3 {
			wantDrift++
		}
	}
	pages := int64((n + 199) / 200)
	floor := pages + wantDrift
	if drift != wantDrift {
		return fmt.Errorf("found %d drifted records, want %d", drift, wantDrift)
	}
	if run.APICalls != floor {
		return fmt.Errorf("made %d API calls, the floor is %d (%d pages, %d details)", run.APICalls, floor, pages, wantDrift)
	}
	rssNote := "peak RSS of the process"
	if !rssReset {
		rssNote = "peak RSS of the whole run (could not reset it)"
	}
	r.row(fmt.Sprintf("reconcile: full sweep, %d remote entities, 1 %% drift", n), elapsed.Round(time.Millisecond).String(),
		fmt.Sprintf("%d API calls = floor (%d pages + %d detail GETs); %d repaired; %s %.1f MiB; limiter off",
			run.APICalls, pages, wantDrift, run.Repaired, rssNote, float64(rss)/(1<<20)))
	if run.Repaired != wantDrift {
		return errors.New("not every drifted record was repaired")
	}
	return nil
}
