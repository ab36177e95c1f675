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
	// DefaultAlertmanagerResend is how often the firing alerts are sent
	// to Alertmanager again, as Prometheus's resend delay.
	DefaultAlertmanagerResend = alert.DefaultAlertmanagerResend
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
	externalURL       string
	alertmanagers     []string
	amResend          time.Duration
	// webhook and slack are built once every option is applied, with
	// the external URL.
	webhook  *webhookSettings
	slackURL string
}

type webhookSettings struct{ url, secret string }

// newSettings applies opts over the defaults; every bad option is
// reported, together.
func newSettings(opts []Option) (*settings, error) {
	s := &settings{
		interval: DefaultEvalInterval, repeat: DefaultRepeat, timeout: DefaultNotifyTimeout,
		now: time.Now, logger: slog.Default(), source: tds.DefaultSource, amResend: DefaultAlertmanagerResend,
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
	if s.webhook != nil {
		s.addNotifier("webhook", alert.NewWebhook(s.webhook.url, s.webhook.secret, nil, alert.WithExternalURL(s.externalURL)))
	}
	if s.slackURL != "" {
		s.addNotifier("slack", alert.NewSlack(s.slackURL, nil))
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
		s.webhook = &webhookSettings{url, secret}
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
		s.slackURL = url
		return nil
	}}
}

// WithAlertmanager sends the alerts to each Alertmanager at urls (base
// URLs such as http://alertmanager:9093; user information is sent as basic
// authentication) through its API v2, POST /api/v2/alerts, as Prometheus
// does: every firing alert, again every [WithAlertmanagerResend] with an
// endsAt four resends ahead, so that Alertmanager keeps it firing while it
// fires and resolves it on its own should tds stop sending; a resolved
// alert with endsAt its resolution. Alertmanager routes, groups, inhibits
// and silences them: acknowledging or silencing an alert in tds holds its
// webhook and Slack notifications only. Several Alertmanagers (an HA pair)
// each receive every alert. Given again, the URLs add up.
// Defaults to no Alertmanager.
func WithAlertmanager(urls ...string) Option {
	return Option{func(s *settings) error {
		if len(urls) == 0 {
			return optErr("WithAlertmanager", "no URL")
		}
		for i, u := range urls {
			if err := checkNotifyURL(u); err != nil {
				return optErr("WithAlertmanager", "URL %d: %v", i+1, err)
			}
		}
		s.alertmanagers = append(s.alertmanagers, urls...)
		return nil
	}}
}

// WithAlertmanagerResend sets how often the firing alerts are sent to
// Alertmanager again ([WithAlertmanager]); the evaluation's interval
// rounds it up, as they are sent after an evaluation. A firing alert sent
// stays valid for four times the longer of the two.
// Defaults to [DefaultAlertmanagerResend].
func WithAlertmanagerResend(d time.Duration) Option {
	return Option{func(s *settings) error {
		if d <= 0 {
			return optErr("WithAlertmanagerResend", "must be > 0, got %s", d)
		}
		s.amResend = d
		return nil
	}}
}

// WithExternalURL sets the address of the console (package tdsui) as
// operators reach it, such as https://tds.example.com: the alerts sent to
// Alertmanager link to their row on the dashboard (generatorURL
// URL/ui/alerts#alert-ID), the webhook payloads to the admin API
// (externalURL, and generatorURL URL/admin/alerts?state=…).
// Defaults to empty: no links.
func WithExternalURL(u string) Option {
	return Option{func(s *settings) error {
		if u != "" {
			if err := checkNotifyURL(u); err != nil {
				return optErr("WithExternalURL", "%v", err)
			}
		}
		s.externalURL = strings.TrimRight(u, "/")
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
