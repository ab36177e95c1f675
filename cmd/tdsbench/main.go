// Command tdsbench measures tds on a PostgreSQL or SQLite database and prints
// a table: ingest over HTTP against a one-commit-per-event baseline,
// worker burn-down, end-to-end latency at a fixed rate, claim time under a
// deep backlog, a full reconciliation sweep against a fake Zoho, and peak
// RSS. See BENCHMARKS.md.
//
//	go run ./cmd/tdsbench -database postgres://postgres@127.0.0.1:5432/tdsbench
//
// It empties the tds tables of the database it is given: point it at a
// database of its own.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
)

type config struct {
	database     string
	scenarios    map[string]bool
	senders      int
	duration     time.Duration
	burnDownN    int
	workers      int
	batch        int
	rates        []int
	work         string
	latencyDur   time.Duration
	backlogSmall int
	backlogLarge int
	backlogBatch int
	reconcileN   int
	dashboardN   int
	metrics      []bool   // runs of ingest and burn-down: metrics off and/or on
	pollOnly     bool     // tds.WithPollOnly in latency and processes
	processes    []int    // processes: worker processes per run
	trace        *tracing // -trace: tdsotel on ingest and burn-down; nil when off
}

func main() {
	if n, err := strconv.Atoi(os.Getenv(fakeZohoEnv)); err == nil {
		os.Exit(serveFakeZoho(n))
	}
	if url := os.Getenv(childEnv); url != "" {
		if err := childWorker(url); err != nil {
			fmt.Fprintln(os.Stderr, "tdsbench worker process:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tdsbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tdsbench", flag.ContinueOnError)
	var c config
	var scenarios string
	var short bool
	fs.StringVar(&c.database, "database", "", "database URL: postgres://... or sqlite:PATH (default: a SQLite file in a temp dir)")
	fs.StringVar(&scenarios, "scenarios", "ingest,burndown,latency,backlog,reconcile", "comma-separated scenarios to run (also: dashboard, the /ui/ pages on 1,000,000 events; processes, burn-down by several worker processes)")
	fs.IntVar(&c.reconcileN, "reconcile-n", 100000, "reconcile: remote entities swept")
	fs.IntVar(&c.dashboardN, "dashboard-events", 1000000, "dashboard: inbox events seeded (10,000 of them dead letters)")
	fs.IntVar(&c.senders, "senders", 64, "ingest: concurrent HTTP senders (and baseline writers)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "ingest: how long each side runs")
	fs.IntVar(&c.burnDownN, "n", 200000, "burn-down: events to drain")
	fs.IntVar(&c.workers, "workers", 4, "burn-down and latency: worker concurrency")
	fs.IntVar(&c.batch, "batch", 1000, "burn-down and latency: worker claim batch size")
	rates := fs.String("rates", "300,1000", "latency: events per second, comma-separated (one run each)")
	fs.StringVar(&c.work, "work", "both", "burn-down: noop, upsert (MirrorSyncer, the peer of River's -work upsert) or both")
	fs.DurationVar(&c.latencyDur, "latency-duration", 10*time.Second, "latency: how long to send")
	fs.IntVar(&c.backlogSmall, "backlog-small", 10000, "backlog: the small backlog")
	fs.IntVar(&c.backlogLarge, "backlog-large", 1000000, "backlog: the large backlog")
	fs.IntVar(&c.backlogBatch, "backlog-batch", tds.DefaultBatchSize, "backlog: jobs per claim (the Worker's default batch size)")
	fs.BoolVar(&c.pollOnly, "poll-only", false, "latency and processes: workers poll (tds.WithPollOnly), as behind a transaction pooler")
	procs := fs.String("processes", "1,2,4", "processes: worker processes on the database, comma-separated (one run each, -n events)")
	fs.BoolVar(&short, "short", false, "tiny sizes, to check the tool works (CI)")
	metricsMode := fs.String("metrics", "off", "ingest and burn-down: Prometheus metrics off, on (scraped every second) or both (off then on, with their ratio)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	traceOn := fs.Bool("trace", false, "ingest and burn-down: trace with tdsotel (every span sampled, a batch span processor, an exporter that discards)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if short {
		c.duration, c.burnDownN, c.latencyDur = time.Second, 2000, time.Second
		c.backlogSmall, c.backlogLarge, *rates = 100, 1000, "100"
		c.reconcileN = 2000
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	for _, v := range strings.Split(*rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			return fmt.Errorf("-rates: %q is not a positive number", v)
		}
		c.rates = append(c.rates, n)
	}
	for _, v := range strings.Split(*procs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			return fmt.Errorf("-processes: %q is not a positive number", v)
		}
		c.processes = append(c.processes, n)
	}
	var err error
	if c.metrics, err = metricsModes(*metricsMode); err != nil {
		return err
	}
	if c.trace, err = startTracing(*traceOn); err != nil {
		return err
	}
	defer c.trace.stop()
	if c.work != "noop" && c.work != "upsert" && c.work != "both" {
		return fmt.Errorf("-work must be noop, upsert or both, got %q", c.work)
	}
	c.scenarios = map[string]bool{}
	for _, s := range strings.Split(scenarios, ",") {
		c.scenarios[strings.TrimSpace(s)] = true
	}
	if c.database == "" {
		dir, err := os.MkdirTemp("", "tdsbench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c.database = "sqlite:" + filepath.Join(dir, "bench.db")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	db, err := tds.Open(ctx, c.database)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := tds.Migrate(ctx, db); err != nil {
		return err
	}
	if os.Getenv("TDSBENCH_SQLSTATS") != "" {
		st := &sqlStats{dur: map[string]time.Duration{}, n: map[string]int{}}
		db = db.WithQueryHook(st)
		defer st.print(os.Stderr)
	}
	if err := tds.MigrateMirror(ctx, db, tds.ZohoRegistry()); err != nil {
		return err
	}
	r := &report{out: out}
	r.header(db, c)
	for _, sc := range []struct {
		name string
		fn   func(context.Context, *bun.DB, config, *report) error
	}{
		{"ingest", runIngest},
		{"burndown", runBurnDown},
		{"latency", runLatency},
		{"backlog", runBacklog},
		{"reconcile", runReconcile},
		{"dashboard", runDashboard},
		{"processes", runProcesses},
	} {
		if !c.scenarios[sc.name] {
			continue
		}
		if err := reset(ctx, db); err != nil {
			return err
		}
		if err := sc.fn(ctx, db, c, r); err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
	}
	if os.Getenv("TDSBENCH_KEEP") != "" {
		return nil // left for inspection (psql, EXPLAIN)
	}
	return reset(ctx, db)
}

// reset empties the tds and mirror tables between scenarios.
func reset(ctx context.Context, db *bun.DB) error {
	tables := []string{"tds_sync_attempts", "tds_sync_queue", "tds_inbox_events",
		"tds_sync_drift", "tds_sync_remote", "tds_sync_runs", "tds_sync_calls", "tds_applied", "tds_sync_watermarks", "tds_alerts", "tds_ui_revoked"}
	for _, t := range tds.ZohoRegistry().Types() {
		tables = append(tables, t.MirrorTable)
	}
	if db.Dialect().Name().String() == "pg" {
		_, err := db.ExecContext(ctx, "TRUNCATE "+strings.Join(tables, ", ")+" RESTART IDENTITY")
		return err
	}
	for _, t := range tables {
		if _, err := db.ExecContext(ctx, "DELETE FROM "+t); err != nil {
			return err
		}
	}
	return nil
}

func runIngest(ctx context.Context, db *bun.DB, c config, r *report) error {
	base, err := baseline(ctx, db, c.senders, c.duration)
	if err != nil {
		return err
	}
	if err := reset(ctx, db); err != nil {
		return err
	}
	r.row("ingest: baseline (1 tx/event, no HTTP)", fmt.Sprintf("%.0f events/s", base.rate()),
		fmt.Sprintf("p50 %s, p99 %s, %d senders", ms(base.p50), ms(base.p99), c.senders))
	var rates []float64
	var rssReset bool
	var rss int64
	for i, on := range c.metrics {
		if i > 0 {
			if err := reset(ctx, db); err != nil {
				return err
			}
		}
		opts, stop, err := withMetrics(on, db)
		if err != nil {
			return err
		}
		if i == 0 {
			rssReset = resetPeakRSS()
		}
		t, err := ingest(ctx, db, c.senders, c.duration, c.trace, append(opts.handler, c.trace.handlerOptions()...)...)
		stop()
		if err != nil {
			return err
		}
		if i == 0 {
			rss = peakRSS()
		}
		r.row("ingest: tds Handler over HTTP"+metricsSuffix(on), fmt.Sprintf("%.0f events/s", t.rate()),
			fmt.Sprintf("p50 %s, p99 %s", ms(t.p50), ms(t.p99)))
		r.row("ingest: ratio tds / baseline"+metricsSuffix(on), fmt.Sprintf("%.2fx", t.rate()/base.rate()), "target >= 1.5x, p99 <= 50 ms")
		rates = append(rates, t.rate())
	}
	if len(rates) == 2 {
		r.row("ingest: metrics on / off", fmt.Sprintf("%.3f", rates[1]/rates[0]), "target >= 0.95")
	}
	if rssReset {
		r.row("peak RSS during ingest", fmt.Sprintf("%.1f MiB", float64(rss)/(1<<20)), "whole process, senders included; target <= 100 MiB")
	} else {
		r.row("peak RSS (whole run)", fmt.Sprintf("%.1f MiB", float64(rss)/(1<<20)), "could not reset the peak before ingest")
	}
	return nil
}

func runBurnDown(ctx context.Context, db *bun.DB, c config, r *report) error {
	base := []tds.Option{tds.WithConcurrency(c.workers), tds.WithBatchSize(c.batch)}
	// one burns down once with metrics on or off; rates holds each
	// syncer's rates, off then on.
	rates := map[string][]float64{}
	one := func(name string, s tds.Syncer, on bool, notes func(t throughput) string) error {
		mopts, stop, err := withMetrics(on, db)
		if err != nil {
			return err
		}
		wopts := append(append(append([]tds.Option{}, base...), mopts.worker...), c.trace.workerOptions()...)
		t, err := burnDown(ctx, db, c.burnDownN, s, c.trace, wopts...)
		stop()
		if err != nil {
			return err
		}
		r.row(name+metricsSuffix(on), fmt.Sprintf("%.0f events/s", t.rate()), notes(t))
		rates[name] = append(rates[name], t.rate())
		return reset(ctx, db)
	}
	for _, on := range c.metrics {
		if c.work != "upsert" {
			noop := tds.SyncFunc(func(context.Context, bun.Tx, *tds.SyncJob) error { return nil })
			err := one("burn-down: no-op Syncer", noop, on, func(t throughput) string {
				return fmt.Sprintf("%d events in %s, %d workers, batch %d", t.events, t.elapsed.Round(time.Millisecond), c.workers, c.batch)
			})
			if err != nil {
				return err
			}
		}
		if c.work != "noop" {
			mirror, err := tds.NewMirrorSyncer()
			if err != nil {
				return err
			}
			err = one("burn-down: MirrorSyncer (batched upserts)", mirror, on, func(t throughput) string {
				return fmt.Sprintf("%d events in %s; the peer of River's -work upsert", t.events, t.elapsed.Round(time.Millisecond))
			})
			if err != nil {
				return err
			}
		}
	}
	for _, name := range []string{"burn-down: no-op Syncer", "burn-down: MirrorSyncer (batched upserts)"} {
		if rs := rates[name]; len(rs) == 2 {
			r.row(name+": metrics on / off", fmt.Sprintf("%.3f", rs[1]/rs[0]), "target >= 0.95")
		}
	}
	return nil
}

// report prints the results as a Markdown table.
type report struct {
	out io.Writer
}

func (r *report) header(db *bun.DB, c config) {
	fmt.Fprintf(r.out, "tdsbench on %s (%s)\n\n", db.Dialect().Name(), redact(c.database))
	if c.trace != nil {
		fmt.Fprintf(r.out, "tracing on (-trace): ingest and burn-down with tdsotel, every span sampled, batch span processor, discarding exporter\n\n")
	}
	fmt.Fprintln(r.out, "| scenario | result | notes |")
	fmt.Fprintln(r.out, "|---|---|---|")
}

func (r *report) row(name, result, notes string) {
	fmt.Fprintf(r.out, "| %s | %s | %s |\n", name, result, notes)
}

func redact(u string) string {
	if i := strings.Index(u, "@"); i > 0 {
		if j := strings.Index(u, "://"); j > 0 && j < i {
			return u[:j+3] + "…" + u[i:]
		}
	}
	return u
}
