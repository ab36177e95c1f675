package tds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/alert"
	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/internal/verify"
)

// Defaults of the alert options.
const (
	// DefaultAlertEvalInterval is how often the built-in alert rules are
	// evaluated.
	DefaultAlertEvalInterval = 15 * time.Second
	// DefaultAlertRepeat is how often a firing alert is notified again.
	DefaultAlertRepeat = alert.DefaultRepeat
	// DefaultAlertNotifyTimeout bounds each attempt to deliver a
	// notification.
	DefaultAlertNotifyTimeout = alert.DefaultTimeout
)

// Alert states.
const (
	AlertPending  = alert.StatePending
	AlertFiring   = alert.StateFiring
	AlertResolved = alert.StateResolved
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

// defaultCountWindow is the window of a counter rule that sets none.
const defaultCountWindow = 15 * time.Minute

// alertSettings are the settings of NewAlerter, and the Alerter given to
// the other constructors ([WithAlerter]).
type alertSettings struct {
	rules     []alert.Rule
	notifiers map[string]alert.Notifier
	interval  time.Duration
	repeat    time.Duration
	timeout   time.Duration
	alerter   *Alerter
}

// Alert is one built-in rule's alert for one label set, from its first
// breaching evaluation to its resolution.
type Alert struct {
	ID             int64             `json:"id"`
	Rule           string            `json:"rule"`
	State          string            `json:"state"`
	Severity       string            `json:"severity"`
	Labels         map[string]string `json:"labels"`
	Value          float64           `json:"value"`
	StartedAt      time.Time         `json:"started_at"`
	FiringAt       *time.Time        `json:"firing_at,omitempty"`
	ResolvedAt     *time.Time        `json:"resolved_at"`
	AcknowledgedAt *time.Time        `json:"acknowledged_at"`
	SilencedUntil  *time.Time        `json:"silenced_until"`
	LastNotifiedAt *time.Time        `json:"last_notified_at,omitempty"`
}

// Alerter evaluates the built-in alert rules against the database and
// notifies their alerts. Its state lives in the database (tds_alerts), so
// alerts hold across processes and restarts: a transition and the claim to
// notify it are written in one statement that only one process can win,
// and the notification is sent afterwards, asynchronously, so that two
// processes evaluating at once send one notification and a slow receiver
// delays no evaluation.
//
// Evaluation runs in the leading Worker's housekeeping when the Worker is
// given [WithAlerter], or in [Alerter.Run] in a process without a Worker.
// Give [WithAlerter] to [NewHandler] (refused requests, the admin API) and
// [NewReconciler] (Zoho 429s, token refresh failures, reconcile_stale) so
// that their counts reach the rules. Its methods are safe for concurrent
// use; call [Alerter.Close] when done.
//
// A delivery is retried with backoff in the background; one given up is
// logged and not sent again before the repeat interval, since the claim
// that keeps other processes from sending it stays. dead_letters counts
// the dead letters since this Alerter's previous evaluation (since one
// interval ago on its first).
type Alerter struct {
	db       *bun.DB
	st       store.Store
	log      *slog.Logger
	now      func() time.Time
	rules    []alert.Rule
	byName   map[string]alert.Rule
	interval time.Duration
	repeat   time.Duration
	disp     *alert.Dispatcher
	process  string
	started  time.Time

	countMu sync.Mutex
	counts  map[countKey]int64

	evalMu   sync.Mutex // one evaluation at a time in this process
	lastEval time.Time

	reconMu sync.Mutex
	recon   *Reconciler

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

type countKey struct {
	name   string
	minute time.Time
}

// NewAlerter returns an Alerter over db. opts are the options that apply
// to NewAlerter; see [Option]. Without a notifier option alerts are
// recorded (and listed by the admin API) but sent nowhere.
func NewAlerter(db *bun.DB, opts ...Option) (*Alerter, error) {
	if db == nil {
		return nil, errors.New("tds: NewAlerter: db is nil")
	}
	st, err := store.For(db)
	if err != nil {
		return nil, err
	}
	cfg, err := newConfig(forAlerter, opts)
	if err != nil {
		return nil, err
	}
	s := cfg.alerting
	if s.rules == nil {
		s.rules = alert.DefaultRules()
	}
	a := &Alerter{
		db: db, st: st, log: cfg.logger, now: func() time.Time { return dbTime(cfg.now()) },
		rules: s.rules, byName: make(map[string]alert.Rule), interval: orDefault(s.interval, DefaultAlertEvalInterval),
		repeat: orDefault(s.repeat, DefaultAlertRepeat), process: defaultWorkerID(),
		counts: make(map[countKey]int64), stop: make(chan struct{}), done: make(chan struct{}),
	}
	for _, r := range a.rules {
		a.byName[r.Name] = r
	}
	a.started = a.now()
	if a.disp, err = alert.NewDispatcher(alert.DispatcherConfig{
		Timeout: orDefault(s.timeout, DefaultAlertNotifyTimeout), Logger: a.log,
	}, s.notifiers); err != nil {
		return nil, fmt.Errorf("tds: NewAlerter: %w", err)
	}
	go a.flushLoop()
	return a, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// WithAlertRules configures the built-in rules from a YAML document such
// as "rules: [{name: queue_oldest_pending, threshold: 300s, for: 60s,
// severity: warning}]"; rules it does not name keep their defaults. An
// unknown rule or field is an error. r is read when the option is
// applied, so an option built on it serves one constructor.
// Applies to [NewAlerter].
// Defaults to the built-in rules' defaults.
func WithAlertRules(r io.Reader) Option {
	return newOption("WithAlertRules", forAlerter, func(c *config) error {
		if r == nil {
			return optErr("WithAlertRules", "reader is nil")
		}
		rules, err := alert.LoadRules(r)
		if err != nil {
			return optErr("WithAlertRules", "%v", err)
		}
		c.alerting.rules = rules
		return nil
	})
}

// WithAlertRulesFile is [WithAlertRules] reading the file at path.
// Applies to [NewAlerter].
// Defaults to the built-in rules' defaults.
func WithAlertRulesFile(path string) Option {
	return newOption("WithAlertRulesFile", forAlerter, func(c *config) error {
		f, err := os.Open(path)
		if err != nil {
			return optErr("WithAlertRulesFile", "%v", err)
		}
		defer f.Close()
		rules, err := alert.LoadRules(f)
		if err != nil {
			return optErr("WithAlertRulesFile", "%s: %v", path, err)
		}
		c.alerting.rules = rules
		return nil
	})
}

// WithAlertWebhook sends alerts to url as Alertmanager webhook payloads
// (version 4), signed with Standard Webhooks headers when secret is set
// ("whsec_" followed by base64; anything else is an error).
// Applies to [NewAlerter].
// Defaults to no webhook.
func WithAlertWebhook(url, secret string) Option {
	return newOption("WithAlertWebhook", forAlerter, func(c *config) error {
		if err := checkNotifyURL(url); err != nil {
			return optErr("WithAlertWebhook", "%v", err)
		}
		if secret != "" {
			if _, err := verify.DecodeStandardSecret(secret); err != nil {
				return optErr("WithAlertWebhook", "%v", err)
			}
		}
		c.alerting.addNotifier("webhook", alert.NewWebhook(url, secret, nil))
		return nil
	})
}

// WithAlertSlack sends alerts to a Slack incoming webhook at url.
// Applies to [NewAlerter].
// Defaults to no Slack messages.
func WithAlertSlack(url string) Option {
	return newOption("WithAlertSlack", forAlerter, func(c *config) error {
		if err := checkNotifyURL(url); err != nil {
			return optErr("WithAlertSlack", "%v", err)
		}
		c.alerting.addNotifier("slack", alert.NewSlack(url, nil))
		return nil
	})
}

// WithAlertEvalInterval sets how often the rules are evaluated.
// Applies to [NewAlerter].
// Defaults to [DefaultAlertEvalInterval].
func WithAlertEvalInterval(d time.Duration) Option {
	return newOption("WithAlertEvalInterval", forAlerter, func(c *config) error {
		if d <= 0 {
			return optErr("WithAlertEvalInterval", "must be > 0, got %s", d)
		}
		c.alerting.interval = d
		return nil
	})
}

// WithAlertRepeat sets how often a firing alert, neither acknowledged nor
// silenced, is notified again.
// Applies to [NewAlerter].
// Defaults to [DefaultAlertRepeat].
func WithAlertRepeat(d time.Duration) Option {
	return newOption("WithAlertRepeat", forAlerter, func(c *config) error {
		if d <= 0 {
			return optErr("WithAlertRepeat", "must be > 0, got %s", d)
		}
		c.alerting.repeat = d
		return nil
	})
}

// WithAlertNotifyTimeout bounds each attempt to deliver a notification;
// a delivery is tried up to 5 times with backoff, in the background.
// Applies to [NewAlerter].
// Defaults to [DefaultAlertNotifyTimeout].
func WithAlertNotifyTimeout(d time.Duration) Option {
	return newOption("WithAlertNotifyTimeout", forAlerter, func(c *config) error {
		if d <= 0 {
			return optErr("WithAlertNotifyTimeout", "must be > 0, got %s", d)
		}
		c.alerting.timeout = d
		return nil
	})
}

// WithAlerter connects a constructor to an [Alerter]: a Worker's
// housekeeping leader evaluates its rules every interval; a Handler counts
// refused requests for it and serves /admin/alerts; a Reconciler counts
// Zoho 429s and token refresh failures for it and enables the
// reconcile_stale rule.
// Applies to [NewWorker], [NewHandler] and [NewReconciler].
// Defaults to no alerting.
func WithAlerter(a *Alerter) Option {
	return newOption("WithAlerter", forWorker|forHandler|forReconciler, func(c *config) error {
		if a == nil {
			return optErr("WithAlerter", "alerter is nil")
		}
		c.alerting.alerter = a
		return nil
	})
}

func (s *alertSettings) addNotifier(name string, n alert.Notifier) {
	if s.notifiers == nil {
		s.notifiers = make(map[string]alert.Notifier)
	}
	s.notifiers[name] = n
}

func checkNotifyURL(u string) error {
	req, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("bad URL: %w", err)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" || req.URL.Host == "" {
		return fmt.Errorf("want an http or https URL, got %q", u)
	}
	return nil
}

// count adds one to a counter of this process; a nil Alerter counts
// nothing.
func (a *Alerter) count(name string) {
	if a == nil {
		return
	}
	k := countKey{name, a.now().Truncate(time.Minute)}
	a.countMu.Lock()
	a.counts[k]++
	a.countMu.Unlock()
}

// attach makes r the Reconciler whose schedule reconcile_stale checks.
func (a *Alerter) attach(r *Reconciler) {
	if a == nil {
		return
	}
	a.reconMu.Lock()
	a.recon = r
	a.reconMu.Unlock()
}

func (a *Alerter) reconciler() *Reconciler {
	a.reconMu.Lock()
	defer a.reconMu.Unlock()
	return a.recon
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
		return wrapDBErr("flushing alert counters", err)
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
				a.log.Error("tds: flushing alert counters", "err", err)
			}
		}
	}
}

// Run evaluates the rules every interval while this process leads, until
// ctx is done. It is for a process without a Worker (a receiver-only
// process); where a Worker runs, give it [WithAlerter] instead, and do not
// call Run in the same process, whose leader it would compete with.
func (a *Alerter) Run(ctx context.Context) error {
	leader := a.st.NewLeader(a.db, a.log)
	defer leader.Release()
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		if leader.Lead(ctx) {
			a.evaluateLogged(ctx)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// evaluateLogged is one evaluation whose error is logged: the housekeeping
// leader's.
func (a *Alerter) evaluateLogged(ctx context.Context) {
	if err := a.Evaluate(ctx); err != nil && ctx.Err() == nil {
		a.log.Error("tds: evaluating alert rules", "err", err)
	}
}

// Evaluate runs one evaluation round: it flushes this process's counts,
// measures every enabled rule, advances the alerts and records them, and
// queues the notifications, which are delivered in the background. The
// leader calls it every interval; tests and operators may call it at any
// time.
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
		return wrapDBErr("reading open alerts", err)
	}
	current := make([]alert.Alert, len(rows))
	revision := make(map[int64]int64, len(rows))
	for i, r := range rows {
		current[i] = fromAlertRow(r)
		revision[r.ID] = r.Revision
	}
	next, send := alert.Step(current, samples, a.rules, now, a.repeat)
	// The claim to notify is written with the transition; only the
	// process whose write wins sends.
	alert.MarkSent(next, send, now)
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
		if n.ID == 0 {
			ok, err = a.st.InsertAlert(ctx, a.db, &row)
			n.ID = row.ID
		} else {
			kept[n.ID] = true
			row.Revision = revision[n.ID]
			ok, err = a.st.UpdateAlert(ctx, a.db, &row)
		}
		if err != nil {
			return wrapDBErr("recording an alert", err)
		}
		if ok && toSend[sendKey(*n)] {
			won = append(won, *n)
		}
	}
	for _, r := range rows {
		if !kept[r.ID] {
			if _, err := a.st.DeleteAlert(ctx, a.db, r.ID, r.Revision); err != nil {
				return wrapDBErr("dropping a pending alert", err)
			}
		}
	}
	a.lastEval = now
	a.disp.Enqueue(won)
	if _, err := a.st.DeleteCounts(ctx, a.db, now.Add(-counterRetention)); err != nil {
		return wrapDBErr("deleting old alert counters", err)
	}
	return nil
}

func sendKey(a alert.Alert) string {
	return a.Fingerprint + "|" + a.State + "|" + a.StartedAt.String()
}

// measure computes a sample of every enabled rule at now.
func (a *Alerter) measure(ctx context.Context, now time.Time) ([]alert.Sample, error) {
	var samples []alert.Sample
	add := func(rule string, labels map[string]string, v float64, breaching bool) {
		samples = append(samples, alert.Sample{Rule: rule, Labels: labels, Value: v, Breaching: breaching})
	}
	source := DefaultSource
	rc := a.reconciler()
	if rc != nil {
		source = rc.cfg.source
	}
	for _, r := range a.rules {
		if !r.Enabled {
			continue
		}
		var err error
		switch r.Name {
		case alert.RuleQueueOldestPending:
			var oldest *time.Time
			if oldest, err = a.st.OldestWaiting(ctx, a.db, now); err == nil {
				age := 0.0
				if oldest != nil {
					age = now.Sub(*oldest).Seconds()
				}
				add(r.Name, nil, age, age > r.Threshold)
			}
		case alert.RuleDeadLetters:
			since := a.lastEval
			if since.IsZero() {
				since = now.Add(-a.interval)
			}
			var dead map[string]int64
			if dead, err = a.st.DeadLettersSince(ctx, a.db, since); err == nil {
				for typ, n := range dead {
					add(r.Name, map[string]string{"entity_type": typ}, float64(n), float64(n) > r.Threshold)
				}
			}
		case alert.RuleSyncFailureRatio:
			var o store.SyncOutcomes
			if o, err = a.st.SyncOutcomesSince(ctx, a.db, now.Add(-window(r, 5*time.Minute))); err == nil {
				total := o.Failed + o.Completed
				ratio := 0.0
				if total > 0 {
					ratio = float64(o.Failed) / float64(total)
				}
				add(r.Name, nil, ratio, total >= int64(r.MinCount) && total > 0 && ratio > r.Threshold)
			}
		case alert.RuleAuthFailures:
			err = a.counter(ctx, r, counterRefused, now, 5*time.Minute, add)
		case alert.RuleZohoRateLimited:
			err = a.counter(ctx, r, counterZoho429, now, defaultCountWindow, add)
		case alert.RuleZohoAuth:
			err = a.counter(ctx, r, counterRefreshFailure, now, defaultCountWindow, add)
		case alert.RuleSourceSilent:
			var last *time.Time
			if last, err = a.st.LastReceived(ctx, a.db, source); err == nil && last != nil {
				v := now.Sub(*last).Seconds()
				add(r.Name, nil, v, v > r.Threshold)
			}
		case alert.RuleZohoDailyWebhooks:
			day := now.UTC().Truncate(24 * time.Hour)
			var n int64
			if n, err = a.st.CountReceived(ctx, a.db, source, day); err == nil {
				add(r.Name, nil, float64(n), float64(n) > r.Threshold)
			}
		case alert.RuleReconcileStale, alert.RuleDrift:
			var last *store.LastRun
			if last, err = a.st.LastCompletedRun(ctx, a.db, source); err != nil {
				break
			}
			if r.Name == alert.RuleDrift {
				if last != nil {
					add(r.Name, nil, float64(last.Repaired), float64(last.Repaired) > r.Threshold)
				}
				break
			}
			if rc == nil || rc.rs.interval <= 0 {
				break // no schedule to be stale against
			}
			since := a.started
			if last != nil {
				since = last.FinishedAt
			}
			v := now.Sub(since).Seconds()
			add(r.Name, nil, v, v > alert.StaleAfter(r, rc.rs.interval).Seconds())
		}
		if err != nil {
			return nil, wrapDBErr("measuring alert rule "+r.Name, err)
		}
	}
	return samples, nil
}

// counter adds the sample of a rule over one of the flushed counters.
func (a *Alerter) counter(ctx context.Context, r alert.Rule, name string, now time.Time, def time.Duration,
	add func(string, map[string]string, float64, bool)) error {
	n, err := a.st.SumCount(ctx, a.db, name, now.Add(-window(r, def)))
	if err != nil {
		return err
	}
	add(r.Name, nil, float64(n), float64(n) > r.Threshold)
	return nil
}

func window(r alert.Rule, def time.Duration) time.Duration {
	if r.Window > 0 {
		return r.Window
	}
	return def
}

// Alerts returns the alerts in state (AlertPending, AlertFiring,
// AlertResolved; every state when ""), newest first, at most 500.
func (a *Alerter) Alerts(ctx context.Context, state string) ([]Alert, error) {
	switch state {
	case "", AlertPending, AlertFiring, AlertResolved:
	default:
		return nil, fmt.Errorf("tds: unknown alert state %q", state)
	}
	rows, err := a.st.ListAlerts(ctx, a.db, state, 500)
	if err != nil {
		return nil, wrapDBErr("listing alerts", err)
	}
	out := make([]Alert, len(rows))
	for i, r := range rows {
		out[i] = publicAlert(r)
	}
	return out, nil
}

// Ack acknowledges alert id: it is not notified again (its resolution
// still is). An unknown id is an error wrapping [ErrNotFound].
func (a *Alerter) Ack(ctx context.Context, id int64) error {
	err := a.st.AckAlert(ctx, a.db, id, a.now())
	if errors.Is(err, store.ErrNoRows) {
		return fmt.Errorf("%w: alert %d", ErrNotFound, id)
	}
	return wrapDBErr("acknowledging an alert", err)
}

// Silence holds every notification of alert id until until. An unknown id
// is an error wrapping [ErrNotFound].
func (a *Alerter) Silence(ctx context.Context, id int64, until time.Time) error {
	err := a.st.SilenceAlert(ctx, a.db, id, dbTime(until), a.now())
	if errors.Is(err, store.ErrNoRows) {
		return fmt.Errorf("%w: alert %d", ErrNotFound, id)
	}
	return wrapDBErr("silencing an alert", err)
}

// Close stops the Alerter: it flushes the counts and waits for the queued
// notifications until ctx is done, then gives them up.
func (a *Alerter) Close(ctx context.Context) error {
	a.closeOnce.Do(func() {
		close(a.stop)
		<-a.done
		a.closeErr = errors.Join(a.flush(ctx), a.disp.Close(ctx))
	})
	return a.closeErr
}

func fromAlertRow(r store.Alert) alert.Alert {
	a := alert.Alert{
		ID: r.ID, Rule: r.Rule, Fingerprint: r.Fingerprint, State: r.State, Severity: r.Severity,
		Value: r.Value, StartedAt: r.StartedAt.UTC(), ResolvedAt: utcPtr(r.ResolvedAt),
		AcknowledgedAt: utcPtr(r.AcknowledgedAt), SilencedUntil: utcPtr(r.SilencedUntil),
		LastNotifiedAt: utcPtr(r.LastNotifiedAt),
	}
	if r.FiringAt != nil {
		a.FiringAt = r.FiringAt.UTC()
	}
	if len(r.Labels) > 0 {
		_ = json.Unmarshal(r.Labels, &a.Labels)
		if len(a.Labels) == 0 {
			a.Labels = nil
		}
	}
	return a
}

func toAlertRow(a alert.Alert, now time.Time) store.Alert {
	r := store.Alert{
		ID: a.ID, Rule: a.Rule, Fingerprint: a.Fingerprint, State: a.State, Severity: a.Severity,
		Value: a.Value, StartedAt: a.StartedAt, ResolvedAt: a.ResolvedAt, LastNotifiedAt: a.LastNotifiedAt,
		UpdatedAt: now,
	}
	if !a.FiringAt.IsZero() {
		f := a.FiringAt
		r.FiringAt = &f
	}
	r.Labels, _ = json.Marshal(a.Labels)
	if a.Labels == nil {
		r.Labels = json.RawMessage(`{}`)
	}
	return r
}

func publicAlert(r store.Alert) Alert {
	a := fromAlertRow(r)
	out := Alert{
		ID: a.ID, Rule: a.Rule, State: a.State, Severity: a.Severity, Labels: a.Labels, Value: a.Value,
		StartedAt: a.StartedAt, ResolvedAt: a.ResolvedAt, AcknowledgedAt: a.AcknowledgedAt,
		SilencedUntil: a.SilencedUntil, LastNotifiedAt: a.LastNotifiedAt,
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if !a.FiringAt.IsZero() {
		f := a.FiringAt
		out.FiringAt = &f
	}
	return out
}

// countResponse is the Reconciler's Zoho client hook counting 429s.
func (r *Reconciler) countResponse(_ string, status int, _ time.Duration) {
	if status == http.StatusTooManyRequests {
		r.cfg.alerting.alerter.count(counterZoho429)
	}
}

// countRefresh is the Reconciler's Zoho client hook counting failed token
// refreshes.
func (r *Reconciler) countRefresh(err error) {
	if err != nil {
		r.cfg.alerting.alerter.count(counterRefreshFailure)
	}
}
