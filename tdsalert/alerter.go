package tdsalert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/alert"
	"github.com/tdscore/tds/internal/dberr"
	"github.com/tdscore/tds/internal/record"
	"github.com/tdscore/tds/internal/store"
)

// counterFlushInterval is how often each process flushes its in-memory
// counts into tds_alert_counters.
const counterFlushInterval = time.Minute

// counterRetention is how long flushed counts are kept: longer than any
// rule's window.
const counterRetention = 48 * time.Hour

// The in-memory counters each process flushes.
const (
	counterRefused        = "refused_requests"
	counterZoho429        = "zoho_429"
	counterRefreshFailure = "zoho_token_refresh_failures"
)

// listLimit is the most alerts [Alerter.Alerts] returns.
const listLimit = 500

// Alerter evaluates the built-in alert rules against the database and
// notifies their alerts. Its state lives in the database (tds_alerts), so
// alerts hold across processes and restarts: a transition and the claim to
// notify it are written in one statement that only one process can win,
// and the notification is sent afterwards, asynchronously, so that two
// processes evaluating at once send one notification and a slow receiver
// delays no evaluation.
//
// Evaluation runs in the housekeeping of the leading Worker when every
// Worker is given tds.WithLeaderTask(a.Task()) (see [Alerter.Task]), or in
// [Alerter.Run] in a process without a Worker. The counts of refused requests and of Zoho's
// answers reach the rules through [Alerter.ObserveWebhook],
// [Alerter.Refused] and [Alerter.ReconcileHooks]. Its methods are safe for
// concurrent use; call [Alerter.Close] when done.
//
// A delivery is retried with backoff in the background; one given up is
// logged and not sent again before the repeat interval, since the claim
// that keeps other processes from sending it stays. An alert's
// LastNotifiedAt is set once a receiver accepted a notification, never
// by the claim: without a receiver it stays nil.
//
// Alertmanager ([WithAlertmanager]) needs no claim: the evaluating
// process sends it every firing alert, again every resend interval, and
// Alertmanager de-duplicates them.
type Alerter struct {
	db       *bun.DB
	st       store.Store
	log      *slog.Logger
	now      func() time.Time
	rules    []alert.Rule
	interval time.Duration
	repeat   time.Duration
	disp     *alert.Dispatcher
	am       *amState // nil without WithAlertmanager
	process  string
	started  time.Time

	source            string
	reconcileInterval time.Duration

	countMu sync.Mutex
	counts  map[countKey]int64

	evalMu   sync.Mutex // one evaluation at a time in this process
	lastEval time.Time

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

type countKey struct {
	name   string
	minute time.Time
}

// New returns an Alerter over db, configured by opts. Without
// [WithWebhook], [WithSlack] or [WithAlertmanager] alerts are recorded
// (and listed by [Alerter.Alerts]) but sent nowhere.
func New(db *bun.DB, opts ...Option) (*Alerter, error) {
	if db == nil {
		return nil, errors.New("tdsalert: New: db is nil")
	}
	st, err := store.For(db)
	if err != nil {
		return nil, fmt.Errorf("tdsalert: New: %w", err)
	}
	s, err := newSettings(opts)
	if err != nil {
		return nil, err
	}
	clock := s.now
	a := &Alerter{
		db: db, st: st, log: s.logger, now: func() time.Time { return record.DBTime(clock()) },
		rules: s.rules, interval: s.interval, repeat: s.repeat, process: record.ProcessID(),
		source: s.source, reconcileInterval: s.reconcileInterval,
		counts: make(map[countKey]int64), stop: make(chan struct{}), done: make(chan struct{}),
	}
	a.started = a.now()
	cfg := alert.DispatcherConfig{Timeout: s.timeout, Logger: a.log, OnResult: a.delivered}
	if a.disp, err = alert.NewDispatcher(cfg, s.notifiers); err != nil {
		return nil, fmt.Errorf("tdsalert: New: %w", err)
	}
	if a.am, err = a.newAMState(s); err != nil {
		_ = a.disp.Close(context.Background())
		return nil, fmt.Errorf("tdsalert: New: %w", err)
	}
	go a.flushLoop()
	return a, nil
}

// Task is the evaluation as a leader task: give it to every Worker with
// [tds.WithLeaderTask], and the Worker leading housekeeping evaluates the
// rules every [WithEvalInterval]. Do not call [Alerter.Run] in a process
// whose Workers have the task: it would compete with their leader.
func (a *Alerter) Task() tds.LeaderTask {
	return tds.LeaderTask{Name: "alerts", Interval: a.interval, Run: func(ctx context.Context) error {
		a.evaluateLogged(ctx)
		return nil
	}}
}

// ObserveWebhook counts a webhook refused as unauthorized (401) or for too
// many refusals (429) towards the rule auth_failures. Give it to the
// Handler: tds.NewHandler(db, ..., tds.WithWebhookObserver(a.ObserveWebhook)).
func (a *Alerter) ObserveWebhook(r tds.WebhookResult) {
	if r.Status == http.StatusUnauthorized || r.Status == http.StatusTooManyRequests {
		a.count(counterRefused)
	}
}

// Refused counts one refused sign-in (a wrong admin token) towards the
// rule auth_failures; the console calls it.
func (a *Alerter) Refused() { a.count(counterRefused) }

// count adds one to a counter of this process.
func (a *Alerter) count(name string) {
	k := countKey{name, a.now().Truncate(time.Minute)}
	a.countMu.Lock()
	a.counts[k]++
	a.countMu.Unlock()
}

// countZohoResponse counts a Zoho API answer of status: a 429 counts
// towards zoho_rate_limited.
func (a *Alerter) countZohoResponse(status int) {
	if status == http.StatusTooManyRequests {
		a.count(counterZoho429)
	}
}

// countTokenRefresh counts a failed Zoho token refresh towards zoho_auth.
func (a *Alerter) countTokenRefresh(err error) {
	if err != nil {
		a.count(counterRefreshFailure)
	}
}

// flush writes this process's counts to the database; on failure they are
// kept for the next flush.
func (a *Alerter) flush(ctx context.Context) error {
	a.countMu.Lock()
	counts := a.counts
	a.counts = make(map[countKey]int64)
	a.countMu.Unlock()
	if len(counts) == 0 {
		return nil
	}
	rows := make([]store.Count, 0, len(counts))
	for k, n := range counts {
		rows = append(rows, store.Count{Name: k.name, Minute: k.minute, N: n})
	}
	err := a.st.AddCounts(ctx, a.db, a.process, rows)
	if err != nil {
		a.countMu.Lock()
		for k, n := range counts {
			a.counts[k] += n
		}
		a.countMu.Unlock()
		return dberr.Wrap("flushing alert counters", err)
	}
	return nil
}

func (a *Alerter) flushLoop() {
	defer close(a.done)
	t := time.NewTicker(counterFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			if err := a.flush(context.Background()); err != nil {
				a.log.Error("tdsalert: flushing alert counters", "err", err)
			}
		}
	}
}

// Run evaluates the rules every interval while this process leads, until
// ctx is done, and returns ctx's error. It is for a process without a
// Worker (a receiver-only process); where Workers run, give them
// [Alerter.Task] instead, and do not call Run in the same process, whose
// leader it would compete with.
func (a *Alerter) Run(ctx context.Context) error {
	// The lease is the Workers' (tds.DefaultLeaderLease), renewed at
	// every evaluation: with an interval longer than a third of it, the
	// lead may pass to a Worker between evaluations, which then evaluates.
	leader := a.st.NewLeader(a.db, "tdsalert/"+record.ProcessID(), tds.DefaultLeaderLease)
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = leader.Release(rctx)
	}()
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		if ok, _ := leader.Lead(ctx); ok {
			a.evaluateLogged(ctx)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// evaluateLogged is one evaluation whose error is logged: the leader's.
func (a *Alerter) evaluateLogged(ctx context.Context) {
	if err := a.Evaluate(ctx); err != nil && ctx.Err() == nil {
		a.log.Error("tdsalert: evaluating alert rules", "err", err)
	}
}

// Evaluate runs one evaluation round: it flushes this process's counts,
// measures every enabled rule, advances the alerts and records them, and
// queues the notifications, which are delivered in the background. The
// leader calls it every interval; tests and operators may call it at any
// time. An error from the database wraps [tds.ErrDatabaseUnavailable] when
// the database is unreachable.
func (a *Alerter) Evaluate(ctx context.Context) error {
	a.evalMu.Lock()
	defer a.evalMu.Unlock()
	if err := a.flush(ctx); err != nil {
		return err
	}
	now := a.now()
	samples, err := a.measure(ctx, now)
	if err != nil {
		return err
	}
	rows, err := a.st.OpenAlerts(ctx, a.db)
	if err != nil {
		return dberr.Wrap("reading open alerts", err)
	}
	won, next, err := a.record(ctx, rows, samples, now)
	if err != nil {
		return err
	}
	a.lastEval = now
	a.disp.Enqueue(won)
	a.am.push(next, now)
	if _, err := a.st.DeleteCounts(ctx, a.db, now.Add(-counterRetention)); err != nil {
		return dberr.Wrap("deleting old alert counters", err)
	}
	return nil
}

// record advances the open alerts rows with samples and writes them, each
// with the claim to notify its transition, and returns the alerts whose
// claim this process won: those it must send; and the alerts after the
// step, with their ids.
func (a *Alerter) record(ctx context.Context, rows []store.Alert, samples []alert.Sample, now time.Time) ([]alert.Alert, []alert.Alert, error) {
	current := make([]alert.Alert, len(rows))
	revision := make(map[int64]int64, len(rows))
	for i, r := range rows {
		current[i] = fromAlertRow(r)
		revision[r.ID] = r.Revision
	}
	next, send := alert.Step(current, samples, a.rules, now, a.repeat)
	// The claim to notify is written with the transition; only the
	// process whose write wins sends.
	alert.MarkClaimed(next, send, now)
	toSend := make(map[string]bool, len(send))
	for _, s := range send {
		toSend[sendKey(s)] = true
	}
	kept := make(map[int64]bool, len(next))
	var won []alert.Alert
	for i := range next {
		n := &next[i]
		row := toAlertRow(*n, now)
		var ok bool
		var err error
		if n.ID == 0 {
			ok, err = a.st.InsertAlert(ctx, a.db, &row)
			n.ID = row.ID
		} else {
			kept[n.ID] = true
			row.Revision = revision[n.ID]
			ok, err = a.st.UpdateAlert(ctx, a.db, &row)
		}
		if err != nil {
			return nil, nil, dberr.Wrap("recording an alert", err)
		}
		if ok && toSend[sendKey(*n)] {
			won = append(won, *n)
		}
	}
	for _, r := range rows {
		if !kept[r.ID] {
			if _, err := a.st.DeleteAlert(ctx, a.db, r.ID, r.Revision); err != nil {
				return nil, nil, dberr.Wrap("dropping a pending alert", err)
			}
		}
	}
	return won, next, nil
}

// markTimeout bounds the write that records a delivery.
const markTimeout = 10 * time.Second

// delivered records, once a notifier delivered alerts, that they were
// notified; it runs on the notifier's goroutine. A failed delivery
// records nothing: LastNotifiedAt says what a receiver accepted.
func (a *Alerter) delivered(notifier string, alerts []alert.Alert, err error) {
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), markTimeout)
	defer cancel()
	at := a.now()
	for _, al := range alerts {
		if al.ID == 0 {
			continue
		}
		if err := a.st.MarkAlertNotified(ctx, a.db, al.ID, at); err != nil {
			a.log.Error("tdsalert: recording a delivered notification", "notifier", notifier, "alert_id", al.ID,
				"err", dberr.Wrap("recording a delivered notification", err))
			return
		}
	}
}

func sendKey(a alert.Alert) string {
	return a.Fingerprint + "|" + a.State + "|" + a.StartedAt.String()
}

// Alerts returns the alerts in state ([StatePending], [StateFiring],
// [StateResolved]; every state when ""), newest first, at most 500.
func (a *Alerter) Alerts(ctx context.Context, state string) ([]Alert, error) {
	switch state {
	case "", StatePending, StateFiring, StateResolved:
	default:
		return nil, fmt.Errorf("tdsalert: unknown alert state %q", state)
	}
	rows, err := a.st.ListAlerts(ctx, a.db, state, listLimit)
	if err != nil {
		return nil, dberr.Wrap("listing alerts", err)
	}
	out := make([]Alert, len(rows))
	for i, r := range rows {
		out[i] = publicAlert(r)
	}
	return out, nil
}

// Ack acknowledges alert id: it is not notified again (its resolution
// still is). An unknown id is an error wrapping [tds.ErrNotFound].
func (a *Alerter) Ack(ctx context.Context, id int64) error {
	err := a.st.AckAlert(ctx, a.db, id, a.now())
	if errors.Is(err, store.ErrNoRows) {
		return fmt.Errorf("tdsalert: acknowledging alert %d: %w", id, tds.ErrNotFound)
	}
	return dberr.Wrap("acknowledging an alert", err)
}

// Silence holds every notification of alert id until until. An unknown id
// is an error wrapping [tds.ErrNotFound].
func (a *Alerter) Silence(ctx context.Context, id int64, until time.Time) error {
	err := a.st.SilenceAlert(ctx, a.db, id, record.DBTime(until), a.now())
	if errors.Is(err, store.ErrNoRows) {
		return fmt.Errorf("tdsalert: silencing alert %d: %w", id, tds.ErrNotFound)
	}
	return dberr.Wrap("silencing an alert", err)
}

// Close stops the Alerter: it flushes the counts and waits for the queued
// notifications until ctx is done, then gives them up. Calling it again
// returns the first call's error.
func (a *Alerter) Close(ctx context.Context) error {
	a.closeOnce.Do(func() {
		close(a.stop)
		<-a.done
		a.closeErr = errors.Join(a.flush(ctx), a.disp.Close(ctx), a.am.close(ctx))
	})
	return a.closeErr
}
