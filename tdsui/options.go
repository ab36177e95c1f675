package tdsui

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/httpx"
	"github.com/tdscore/tds/tdsalert"
	"github.com/tdscore/tds/tdsreconcile"
)

// Defaults of the options.
const (
	// DefaultSignInLimit is how many failed dashboard sign-ins one client
	// address may have per [DefaultSignInPeriod] before it is answered 429.
	DefaultSignInLimit = 20
	// DefaultSignInPeriod is the period of [DefaultSignInLimit].
	DefaultSignInPeriod = time.Minute
	// DefaultRetryAfter is what a 503 answer's Retry-After header asks the
	// client to wait when the database is unavailable.
	DefaultRetryAfter = 30 * time.Second
)

// Option configures [New]. Options never panic: a bad value is reported
// by New as an error naming the option, several at once. The zero Option
// does nothing.
type Option struct {
	apply func(*settings) error
}

// settings holds what the options set.
type settings struct {
	tokens       []string
	registry     *tds.Registry
	reconciler   *tdsreconcile.Reconciler
	alerter      *tdsalert.Alerter
	trusted      []netip.Prefix
	signInLimit  int
	signInPeriod time.Duration
	retryAfter   time.Duration
	logger       *slog.Logger
	now          func() time.Time
}

// newSettings applies opts over the defaults.
func newSettings(opts []Option) (*settings, error) {
	s := &settings{
		signInLimit:  DefaultSignInLimit,
		signInPeriod: DefaultSignInPeriod,
		retryAfter:   DefaultRetryAfter,
		logger:       slog.Default(),
		now:          time.Now,
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
	if s.registry == nil {
		s.registry = tds.ZohoRegistry()
	}
	return s, nil
}

// optErr is the error of option name.
func optErr(name, format string, args ...any) error {
	return fmt.Errorf("tdsui: %s: %s", name, fmt.Sprintf(format, args...))
}

// WithAdminToken enables the admin API, GET /queue/stats and the
// dashboard's sign-in for requests carrying "Authorization: Bearer
// <token>" (or, on the dashboard, signing in) with any of tokens, each
// compared in constant time. Several tokens are accepted at once so one
// can be rotated without downtime; each call adds to the list. Each must
// be at least [tds.MinSecretBytes] long, and none should equal a webhook
// key (tdsui does not know them: the host checks).
// Defaults to none: every admin route answers 401 and the dashboard says
// it is off.
func WithAdminToken(tokens ...string) Option {
	return Option{func(s *settings) error {
		if len(tokens) == 0 {
			return optErr("WithAdminToken", "no token given")
		}
		for _, t := range tokens {
			if strings.TrimSpace(t) == "" {
				return optErr("WithAdminToken", "empty token")
			}
			if len(t) < tds.MinSecretBytes {
				return optErr("WithAdminToken", "a token of %d bytes is too short: at least %d", len(t), tds.MinSecretBytes)
			}
			s.tokens = append(s.tokens, t)
		}
		return nil
	}}
}

// WithRegistry sets the entity types the console's queue knows (their
// maximum attempts, for a dead letter queued again).
// Defaults to [tds.ZohoRegistry].
func WithRegistry(r *tds.Registry) Option {
	return Option{func(s *settings) error {
		if r == nil {
			return optErr("WithRegistry", "registry is nil")
		}
		s.registry = r
		return nil
	}}
}

// WithReconciler serves the reconciliation routes (POST /admin/reconcile,
// /admin/sync-runs) and the dashboard's reconciliation pages with r.
// Defaults to none: those routes answer 501 and the pages say
// reconciliation is not configured.
func WithReconciler(r *tdsreconcile.Reconciler) Option {
	return Option{func(s *settings) error {
		if r == nil {
			return optErr("WithReconciler", "reconciler is nil")
		}
		s.reconciler = r
		return nil
	}}
}

// WithAlerter serves the alert routes (/admin/alerts) and the dashboard's
// alerts with a, and tells it of every failed dashboard sign-in (the
// refused-requests rule counts them).
// Defaults to none: those routes answer 501 and the pages say alerting is
// not configured.
func WithAlerter(a *tdsalert.Alerter) Option {
	return Option{func(s *settings) error {
		if a == nil {
			return optErr("WithAlerter", "alerter is nil")
		}
		s.alerter = a
		return nil
	}}
}

// WithTrustedProxies names the proxies (addresses or CIDR prefixes, such
// as "10.0.0.0/8") whose X-Forwarded-For header is believed for the client
// address the sign-in limit counts, and whose X-Forwarded-Proto: https
// makes the session cookie Secure.
// Defaults to none: the client address is the peer's.
func WithTrustedProxies(proxies ...string) Option {
	return Option{func(s *settings) error {
		ps, bad := httpx.ParsePrefixes(proxies)
		if bad != "" {
			return optErr("WithTrustedProxies", "%q is not an address or CIDR prefix", bad)
		}
		s.trusted = append(s.trusted, ps...)
		return nil
	}}
}

// WithSignInLimit sets how many failed dashboard sign-ins one client
// address may have in the period per. Past that, the address is answered
// 429 until the allowance refills (n per per, continuously). IPv6
// addresses are counted by their /64. Behind a reverse proxy, give
// [WithTrustedProxies], or every client shares the proxy's address.
// n = 0 turns the limit off.
// Defaults to [DefaultSignInLimit] per [DefaultSignInPeriod].
func WithSignInLimit(n int, per time.Duration) Option {
	return Option{func(s *settings) error {
		switch {
		case n < 0:
			return optErr("WithSignInLimit", "n must be >= 0, got %d", n)
		case n > 0 && per < time.Second:
			return optErr("WithSignInLimit", "per must be >= 1s, got %s", per)
		}
		s.signInLimit, s.signInPeriod = n, per
		return nil
	}}
}

// WithRetryAfter sets the Retry-After of a 503 answer, sent when the
// database is unavailable.
// Defaults to [DefaultRetryAfter].
func WithRetryAfter(d time.Duration) Option {
	return Option{func(s *settings) error {
		if d < time.Second {
			return optErr("WithRetryAfter", "must be >= 1s, got %s", d)
		}
		s.retryAfter = d
		return nil
	}}
}

// WithLogger sets the logger of failed requests and of every change an
// operator makes (retries, discards, acknowledgements, runs started).
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

// WithClock sets the source of the current time, for tests: sessions'
// expiry, the sign-in limit, and the queue's statistics.
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
