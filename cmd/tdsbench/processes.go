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
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
)

// childEnv names the database a child process of the processes scenario
// works on; childOptsEnv its Worker's settings.
const (
	childEnv     = "TDSBENCH_CHILD_WORKER"
	childOptsEnv = "TDSBENCH_CHILD_OPTS" // workers,batch,pollOnly
)

// runProcesses burns a backlog down with N worker processes on one
// database, for each N of -processes: the scale-out path. Every process is
// this binary, started before the clock and released together.
func runProcesses(ctx context.Context, db *bun.DB, c config, r *report) error {
	mode := "LISTEN wake-ups"
	if c.pollOnly {
		mode = "poll-only"
	}
	for i, n := range c.processes {
		if i > 0 {
			if err := reset(ctx, db); err != nil {
				return err
			}
		}
		t, err := burnDownProcesses(ctx, db, c, n)
		if err != nil {
			return err
		}
		r.row(fmt.Sprintf("burn-down: no-op Syncer, %d processes", n), fmt.Sprintf("%.0f events/s", t.rate()),
			fmt.Sprintf("%d events in %s; %d workers, batch %d per process; %s", t.events, t.elapsed.Round(time.Millisecond), c.workers, c.batch, mode))
	}
	return nil
}

// child is a worker process of the processes scenario.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func burnDownProcesses(ctx context.Context, db *bun.DB, c config, n int) (throughput, error) {
	k := c.burnDownN
	if err := enqueue(ctx, db, k, 0); err != nil {
		return throughput{}, err
	}
	children := make([]*child, 0, n)
	defer func() {
		for _, ch := range children {
			_ = ch.stdin.Close() // EOF: the child stops its Worker and exits
			_ = ch.cmd.Wait()
		}
	}()
	for range n {
		cmd := exec.CommandContext(ctx, os.Args[0])
		cmd.Env = append(os.Environ(), childEnv+"="+c.database,
			fmt.Sprintf("%s=%d,%d,%t", childOptsEnv, c.workers, c.batch, c.pollOnly))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return throughput{}, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return throughput{}, err
		}
		if err := cmd.Start(); err != nil {
			return throughput{}, err
		}
		ch := &child{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
		children = append(children, ch)
		if !ch.out.Scan() || ch.out.Text() != "ready" {
			return throughput{}, fmt.Errorf("a worker process did not start: %q", ch.out.Text())
		}
	}
	// Each child reports the jobs it finished, by its observer, in lines
	// of "done N": the parent sums them without asking the database.
	finished := make(chan int, 16*n)
	for _, ch := range children {
		go func() {
			for ch.out.Scan() {
				var d int
				if _, err := fmt.Sscanf(ch.out.Text(), "done %d", &d); err == nil {
					finished <- d
				}
			}
		}()
	}
	start := time.Now()
	for _, ch := range children {
		if _, err := io.WriteString(ch.stdin, "go\n"); err != nil {
			return throughput{}, err
		}
	}
	for done := 0; done < k; {
		select {
		case <-ctx.Done():
			return throughput{}, ctx.Err()
		case d := <-finished:
			done += d
		case <-time.After(5 * time.Minute):
			return throughput{}, fmt.Errorf("%d of %d jobs finished after 5 minutes", done, k)
		}
	}
	elapsed := time.Since(start)
	var completed int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'completed'").Scan(&completed); err != nil {
		return throughput{}, err
	}
	if completed != k {
		return throughput{}, fmt.Errorf("%d of %d jobs completed", completed, k)
	}
	return throughput{events: int64(k), elapsed: elapsed}, nil
}

// childWorker is the child's main: a Worker with a no-op Syncer on url,
// started when "go" arrives on stdin and stopped when stdin closes.
func childWorker(url string) error {
	ctx := context.Background()
	parts := strings.Split(os.Getenv(childOptsEnv), ",")
	if len(parts) != 3 {
		return fmt.Errorf("%s: %q", childOptsEnv, os.Getenv(childOptsEnv))
	}
	workers, err1 := strconv.Atoi(parts[0])
	batch, err2 := strconv.Atoi(parts[1])
	pollOnly, err3 := strconv.ParseBool(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return err
	}
	db, err := tds.Open(ctx, url)
	if err != nil {
		return err
	}
	defer db.Close()
	// The observer counts finished jobs and reports them every 500, so the
	// parent's clock stops without polling the database.
	var mu sync.Mutex
	unreported := 0
	observe := func(r tds.JobResult) {
		if r.Status != tds.StatusCompleted && r.Status != tds.StatusDeadLetter {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if unreported++; unreported == 500 {
			fmt.Printf("done %d\n", unreported)
			unreported = 0
		}
	}
	flush := func() {
		mu.Lock()
		defer mu.Unlock()
		if unreported > 0 {
			fmt.Printf("done %d\n", unreported)
			unreported = 0
		}
	}
	opts := []tds.Option{tds.WithConcurrency(workers), tds.WithBatchSize(batch), tds.WithObserver(observe),
		tds.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))}
	if pollOnly {
		opts = append(opts, tds.WithPollOnly())
	}
	noop := tds.SyncFunc(func(context.Context, bun.Tx, *tds.SyncJob) error { return nil })
	w, err := tds.NewWorker(db, noop, opts...)
	if err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	fmt.Println("ready")
	if !in.Scan() || in.Text() != "go" {
		return nil
	}
	stop := runWorker(ctx, w)
	// The last jobs of a run are fewer than 500: flush what is left
	// whenever the Worker idles, every 20 ms, until stdin closes.
	eof := make(chan struct{})
	go func() {
		for in.Scan() {
		}
		close(eof)
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-eof:
			flush()
			return stop()
		case <-tick.C:
			flush()
		}
	}
}
