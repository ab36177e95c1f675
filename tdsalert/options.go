package tdsalert

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/alert"
	"github.com/tdscore/tds/internal/verify"
)

// Defaults of the options.
const (
	// DefaultEvalInterval is how often the rules are evaluated.
	DefaultEvalInterval = 15 * time.Second
	// DefaultRepeat is how often a firing alert is notified again.
	DefaultRepeat = alert.DefaultRepeat
	// DefaultNotifyTimeout bounds each attempt to deliver a notification.
	DefaultNotifyTimeout = alert.DefaultTimeout
)

// Option configures [New]. Options never panic: a bad value is reported
// as an error by New, naming the option, every bad one at once. The zero
// Option does nothing.
type Option struct {
	apply func(*settings) error
}

// settings are what the options set.
type settings struct {
	rules             []alert.Rule
	notifiers         map[string]alert.Notifier
	interval          time.Duration
	repeat            time.Duration
	timeout           time.Duration
	now               func() time.Time
	logger            *slog.Logger
	source            string
	reconcileInterval time.Duration
}

// newSettings applies opts over the defaults; every bad option is
// reported, together.
func newSettings(opts []Option) (*settings, error) {
	s := &settings{
		interval: DefaultEvalInterval, repeat: DefaultRepeat, timeout: DefaultNotifyTimeout,
		now: time.Now, logger: slog.Default(), source: tds.DefaultSource,
	}
	var errs []error
	for _, o := range opts {
		if o.apply == nil {
			continue
		}
		if err := o.apply(s); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if s.rules == nil {
		s.rules = alert.DefaultRules()
	}
	return s, nil
}

func optErr(name, format string, args ...any) error {
	return fmt.Errorf("tdsalert: %s: %s", name, fmt.Sprintf(format, args...))
}

// WithRules configures the built-in rules from a YAML document such as
// "rules: [{name: queue_oldest_pending, threshold: 300s, for: 60s,
// severity: warning}]"; rules it does not name keep their defaults. An
// unknown rule or field is an error. r is read when the option is
// applied, so an option built on it serves one call of [New].
// Defaults to the built-in rules' defaults.
func WithRules(r io.Reader) Option {
	return Option{func(s *settings) error {
		if r == nil {
			return optErr("WithRules", "reader is nil")
		}
		rules, err := alert.LoadRules(r)
		if err != nil {
			return optErr("WithRules", "%v", err)
		}
		s.rules = rules
		return nil
	}}
}

// WithRulesFile is [WithRules] reading the file at path.
// Defaults to the built-in rules' defaults.
func WithRulesFile(path string) Option {
	return Option{func(s *settings) error {
		f, err := os.Open(path)
		if err != nil {
			return optErr("WithRulesFile", "%v", err)
		}
		defer f.Close()
		rules, err := alert.LoadRules(f)
		if err != nil {
			return optErr("WithRulesFile", "%s: %v", path, err)
		}
		s.rules = rules
		return nil
	}}
}

// WithWebhook sends alerts to url as Alertmanager webhook payloads
// (version 4), signed with Standard Webhooks headers when secret is set
// ("whsec_" followed by base64; anything else is an error).
// Defaults to no webhook.
func WithWebhook(url, secret string) Option {
	return Option{func(s *settings) error {
		if err := checkNotifyURL(url); err != nil {
			return optErr("WithWebhook", "%v", err)
		}
		if secret != "" {
			if _, err := verify.DecodeStandardSecret(secret); err != nil {
				return optErr("WithWebhook", "%v", err)
			}
		}
		s.addNotifier("webhook", alert.NewWebhook(url, secret, nil))
		return nil
	}}
}

// WithSlack sends alerts to a Slack incoming webhook at url.
// Defaults to no Slack messages.
func WithSlack(url string) Option {
	return Option{func(s *settings) error {
		if err := checkNotifyURL(url); err != nil {
			return optErr("WithSlack", "%v", err)
		}
		s.addNotifier("slack", alert.NewSlack(url, nil))
		return nil
	}}
}

// WithEvalInterval sets how often the rules are evaluated: the interval of
// [Alerter.Task] and of [Alerter.Run].
// Defaults to [DefaultEvalInterval].
func WithEvalInterval(d time.Duration) Option {
	return Option{func(s *settings) error {
		if d <= 0 {
			return optErr("WithEvalInterval", "must be > 0, got %s", d)
		}
		s.interval = d
		return nil
	}}
}

// WithRepeat sets how often a firing alert, neither acknowledged nor
// silenced, is notified again.
// Defaults to [DefaultRepeat].
func WithRepeat(d time.Duration) Option {
	return Option{func(s *settings) error {
		if d <= 0 {
			return optErr("WithRepeat", "must be > 0, got %s", d)
		}
		s.repeat = d
		return nil
	}}
}

// WithNotifyTimeout bounds each attempt to deliver a notification; a
// delivery is tried up to 5 times with backoff, in the background.
// Defaults to [DefaultNotifyTimeout].
func WithNotifyTimeout(d time.Duration) Option {
	return Option{func(s *settings) error {
		if d <= 0 {
			return optErr("WithNotifyTimeout", "must be > 0, got %s", d)
		}
		s.timeout = d
		return nil
	}}
}

// WithClock sets the clock that times evaluations, counts and alerts.
// Defaults to time.Now.
func WithClock(now func() time.Time) Option {
	return Option{func(s *settings) error {
		if now == nil {
			return optErr("WithClock", "clock is nil")
		}
		s.now = now
		return nil
	}}
}

// WithLogger sets the logger.
// Defaults to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return Option{func(s *settings) error {
		if l == nil {
			return optErr("WithLogger", "logger is nil")
		}
		s.logger = l
		return nil
	}}
}

// WithSource sets the source whose events and reconciliation runs the
// rules source_silent, zoho_daily_webhooks, reconcile_stale and drift
// measure.
// Defaults to [tds.DefaultSource].
func WithSource(source string) Option {
	return Option{func(s *settings) error {
		if strings.TrimSpace(source) == "" {
			return optErr("WithSource", "must not be empty")
		}
		s.source = source
		return nil
	}}
}

// WithReconcileInterval sets the reconciliation schedule that the rule
// reconcile_stale measures against (give the interval of the
// Reconciler's incremental runs): with 0, no run is scheduled and the
// rule stays quiet.
// Defaults to 0.
func WithReconcileInterval(d time.Duration) Option {
	return Option{func(s *settings) error {
		if d < 0 {
			return optErr("WithReconcileInterval", "must be >= 0, got %s", d)
		}
		s.reconcileInterval = d
		return nil
	}}
}

func (s *settings) addNotifier(name string, n alert.Notifier) {
	if s.notifiers == nil {
		s.notifiers = make(map[string]alert.Notifier)
	}
	s.notifiers[name] = n
}

// checkNotifyURL accepts an absolute http or https URL. Its messages never
// repeat the URL: a Slack webhook's path or a ?token= is a credential.
func checkNotifyURL(u string) error {
	p, err := url.Parse(u)
	switch {
	case err != nil:
		return errors.New("not a valid URL (value not shown: it may hold a secret)")
	case p.Scheme != "http" && p.Scheme != "https":
		return errors.New("want an http or https URL (value not shown: it may hold a secret)")
	case p.Host == "":
		return errors.New("URL has no host (value not shown: it may hold a secret)")
	}
	return nil
}
