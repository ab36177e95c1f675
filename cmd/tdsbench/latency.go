package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
)

// runWorker runs w until stop is called; stop returns Run's error.
func runWorker(ctx context.Context, w *tds.Worker) (stop func() error) {
	ctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	return func() error {
		cancel()
		err := <-errc
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		return err
	}
}

// spans are one latency run's measurements, each sorted: from the start of
// each POST to the commit of its mirror row (total) and to its answer
// (acked); from the answer to the start of its job's attempt (waited:
// wake-up and claim) and from there to the commit (worked: sync,
// completion and commit). cold holds the totals of the events sent in the
// run's first warmUp, steady those of the rest; events lists every event,
// in the order sent.
type spans struct {
	total, acked, waited, worked []time.Duration
	cold, steady                 []time.Duration
	events                       []eventTimes
}

// eventTimes are one event's times, as offsets from the run's start.
type eventTimes struct {
	sent, answered, started, committed time.Duration
}

// warmUp is the start of a latency run reported apart, as its cold start:
// the pool's first connections, their first plans.
const warmUp = 2 * time.Second

// latency posts webhooks at a fixed rate and measures, per event, the time
// from the start of its POST to the commit of its mirror row, split.
func latency(ctx context.Context, db *bun.DB, rate int, dur time.Duration, workers, batch int, pollOnly bool) (sp spans, err error) {
	var (
		mu        sync.Mutex
		sent      = map[string]time.Time{}
		answered  = map[string]time.Time{}
		started   = map[string]time.Time{}
		committed = map[string]time.Time{}
		all       = make(chan struct{})
		want      = int(float64(rate) * dur.Seconds())
	)
	observer := func(r tds.JobResult) {
		if r.Status != tds.StatusCompleted {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		committed[r.EntityID] = r.CommittedAt
		started[r.EntityID] = r.StartedAt
		if len(committed) == want {
			close(all)
		}
	}
	mirror, err := tds.NewMirrorSyncer()
	if err != nil {
		return sp, err
	}
	wopts := []tds.Option{tds.WithConcurrency(workers), tds.WithBatchSize(batch), tds.WithObserver(observer)}
	hopts := []tds.Option{tds.WithWebhookKeys(benchKey)}
	if pollOnly {
		wopts, hopts = append(wopts, tds.WithPollOnly()), append(hopts, tds.WithPollOnly())
	}
	w, err := tds.NewWorker(db, mirror, wopts...)
	if err != nil {
		return sp, err
	}
	stop := runWorker(ctx, w)
	defer func() { _ = stop() }()

	h, err := tds.NewHandler(db, hopts...)
	if err != nil {
		return sp, err
	}
	defer h.Close()
	srv, err := serve(h)
	if err != nil {
		return sp, err
	}
	defer srv.stop()
	client := newClient(64)
	url := srv.URL + "/webhooks/products"
	run := fmt.Sprintf("lat%d", time.Now().UnixNano())

	// Open loop: one POST per tick, whatever the previous ones are doing.
	var wg sync.WaitGroup
	errs := make(chan error, want)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	modified := time.Now()
	begin := time.Now()
	for n := range want {
		select {
		case <-ctx.Done():
			return sp, ctx.Err()
		case <-tick.C:
		}
		id := fmt.Sprintf("%s-%d", run, n)
		mu.Lock()
		sent[id] = time.Now()
		mu.Unlock()
		wg.Go(func() {
			ok, err := post(ctx, client, url, productBody(run, int64(n), modified))
			mu.Lock()
			answered[id] = time.Now()
			mu.Unlock()
			if err == nil && !ok {
				err = fmt.Errorf("webhook %s not accepted", id)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return sp, err
	}
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		return sp, fmt.Errorf("only %d of %d events synced within a minute", len(committed), want)
	}
	mu.Lock()
	defer mu.Unlock()
	for n := range want {
		id := fmt.Sprintf("%s-%d", run, n)
		t0 := sent[id]
		total := committed[id].Sub(t0)
		sp.total = append(sp.total, total)
		sp.acked = append(sp.acked, answered[id].Sub(t0))
		sp.waited = append(sp.waited, started[id].Sub(answered[id]))
		sp.worked = append(sp.worked, committed[id].Sub(started[id]))
		if t0.Sub(begin) < warmUp {
			sp.cold = append(sp.cold, total)
		} else {
			sp.steady = append(sp.steady, total)
		}
		sp.events = append(sp.events, eventTimes{sent: t0.Sub(begin), answered: answered[id].Sub(begin),
			started: started[id].Sub(begin), committed: committed[id].Sub(begin)})
	}
	for _, d := range [][]time.Duration{sp.total, sp.acked, sp.waited, sp.worked, sp.cold, sp.steady} {
		slices.Sort(d)
	}
	return sp, nil
}

func runLatency(ctx context.Context, db *bun.DB, c config, r *report) error {
	for i, rate := range c.rates {
		if i > 0 {
			if err := reset(ctx, db); err != nil {
				return err
			}
		}
		rssReset := resetPeakRSS()
		sp, err := latency(ctx, db, rate, c.latencyDur, c.workers, c.batch, c.pollOnly)
		if err != nil {
			return err
		}
		rss := "peak RSS " + fmt.Sprintf("%.1f MiB", float64(peakRSS())/(1<<20))
		if !rssReset {
			rss += " (whole run: could not reset it)"
		}
		r.row(fmt.Sprintf("latency at %d events/s: POST to mirror row committed", rate), percentiles(sp.total),
			fmt.Sprintf("%d events over %s; %s; %s", len(sp.total), c.latencyDur, wakeUps(c.pollOnly), rss))
		r.row(fmt.Sprintf("latency at %d events/s: of which the POST (inbox committed, 200 received)", rate),
			percentiles(sp.acked), "the rest is wake-up, claim, sync and the batch's commit")
		r.row(fmt.Sprintf("latency at %d events/s: of which 200 received to the attempt's start", rate),
			percentiles(sp.waited), "the wake-up and the claim")
		r.row(fmt.Sprintf("latency at %d events/s: of which the attempt's start to the commit", rate),
			percentiles(sp.worked), "the sync, the completion and the batch's commit")
		if len(sp.cold) > 0 && len(sp.steady) > 0 {
			r.row(fmt.Sprintf("latency at %d events/s: POST to mirror row committed, first %s", rate, warmUp),
				percentiles(sp.cold), "cold start: the pool's first connections and plans")
			r.row(fmt.Sprintf("latency at %d events/s: POST to mirror row committed, after the first %s", rate, warmUp),
				percentiles(sp.steady), "steady state")
		}
		if os.Getenv("TDSBENCH_SLOW") != "" {
			printSlowest(os.Stderr, sp.events, 20)
		}
	}
	return nil
}

// percentiles formats the p50, p95 and p99 of sorted durations.
func percentiles(d []time.Duration) string {
	return fmt.Sprintf("p50 %s, p95 %s, p99 %s", ms(percentile(d, 50)), ms(percentile(d, 95)), ms(percentile(d, 99)))
}

// claimTime builds a backlog of n waiting events and returns the mean time
// of a claim statement taking a batch from it.
func claimTime(ctx context.Context, db *bun.DB, n, batch, claims int) (time.Duration, error) {
	if err := enqueue(ctx, db, n, 0); err != nil {
		return 0, err
	}
	if _, err := db.ExecContext(ctx, analyzeSQL(db)); err != nil {
		return 0, err
	}
	noop := tds.SyncFunc(func(context.Context, bun.Tx, *tds.SyncJob) error { return nil })
	enough := make(chan struct{})
	var once sync.Once
	var done int
	var mu sync.Mutex
	observer := func(tds.JobResult) {
		mu.Lock()
		defer mu.Unlock()
		done++
		if done >= min(claims*batch, n) {
			once.Do(func() { close(enough) })
		}
	}
	w, err := tds.NewWorker(db, noop, tds.WithConcurrency(1), tds.WithBatchSize(batch), tds.WithObserver(observer))
	if err != nil {
		return 0, err
	}
	stop := runWorker(ctx, w)
	select {
	case <-enough:
	case <-time.After(2 * time.Minute):
	}
	if err := stop(); err != nil {
		return 0, err
	}
	st := w.Stats()
	if st.Claims == 0 {
		return 0, errors.New("no claim ran")
	}
	return st.ClaimTime / time.Duration(st.Claims), nil
}

// analyzeSQL settles a freshly loaded backlog as a long-lived one would be:
// statistics current, and on PostgreSQL the rows vacuumed, so that the
// first claims do not also pay for setting hint bits on a million new rows.
func analyzeSQL(db *bun.DB) string {
	if db.Dialect().Name().String() == "pg" {
		return "VACUUM (ANALYZE) tds_sync_queue, tds_inbox_events"
	}
	return "ANALYZE"
}

func runBacklog(ctx context.Context, db *bun.DB, c config, r *report) error {
	const claims = 30
	small, err := claimTime(ctx, db, c.backlogSmall, c.backlogBatch, claims)
	if err != nil {
		return err
	}
	if err := reset(ctx, db); err != nil {
		return err
	}
	large, err := claimTime(ctx, db, c.backlogLarge, c.backlogBatch, claims)
	if err != nil {
		return err
	}
	r.row(fmt.Sprintf("backlog: claim of %d with %d waiting", c.backlogBatch, c.backlogSmall), ms(small), fmt.Sprintf("mean of the first %d claims", claims))
	r.row(fmt.Sprintf("backlog: claim of %d with %d waiting", c.backlogBatch, c.backlogLarge), ms(large), "")
	r.row("backlog: ratio large / small", fmt.Sprintf("%.2fx", float64(large)/float64(small)), "target <= 1.5x")
	return nil
}

// wakeUps says how the latency run's workers learn of new jobs.
func wakeUps(pollOnly bool) string {
	if pollOnly {
		return fmt.Sprintf("poll-only, every %s", tds.DefaultPollOnlyInterval)
	}
	return fmt.Sprintf("LISTEN wake-ups, worker poll interval %s", tds.DefaultPollInterval)
}

// printSlowest writes the n slowest events of a run with their stages, to
// find what the outliers have in common (TDSBENCH_SLOW=1).
func printSlowest(w io.Writer, evs []eventTimes, n int) {
	idx := make([]int, len(evs))
	for i := range idx {
		idx[i] = i
	}
	total := func(i int) time.Duration { return evs[i].committed - evs[i].sent }
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(total(b), total(a)) })
	fmt.Fprintln(w, "slowest events: #, sent at, total, POST, 200 to start, start to commit")
	for _, i := range idx[:min(n, len(idx))] {
		e := evs[i]
		fmt.Fprintf(w, "%6d %10s %10s %10s %10s %10s\n", i, e.sent.Round(time.Millisecond), ms(total(i)),
			ms(e.answered-e.sent), ms(e.started-e.answered), ms(e.committed-e.started))
	}
}
