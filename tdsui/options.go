package tdsui

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
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
	// address may have per [DefaultSignInPeriod] before a wrong token from
	// it is answered 429.
	DefaultSignInLimit = 20
	// DefaultSignInPeriod is the period of [DefaultSignInLimit].
	DefaultSignInPeriod = time.Minute
	// DefaultAdminRefusalLimit is how many refused admin requests (no
	// valid bearer token) one client address may have per
	// [DefaultAdminRefusalPeriod] before it is answered 429.
	DefaultAdminRefusalLimit = 20
	// DefaultAdminRefusalPeriod is the period of [DefaultAdminRefusalLimit].
	DefaultAdminRefusalPeriod = time.Minute
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
	metrics      []string // WithMetricsToken
	registry     *tds.Registry
	reconciler   *tdsreconcile.Reconciler
	alerter      *tdsalert.Alerter
	trusted      []netip.Prefix
	signInLimit  int
	signInPeriod time.Duration
	refuseLimit  int
	refusePeriod time.Duration
	retryAfter   time.Duration
	logger       *slog.Logger
	now          func() time.Time
}

// newSettings applies opts over the defaults.
func newSettings(opts []Option) (*settings, error) {
	s := &settings{
		signInLimit:  DefaultSignInLimit,
		signInPeriod: DefaultSignInPeriod,
		refuseLimit:  DefaultAdminRefusalLimit,
		refusePeriod: DefaultAdminRefusalPeriod,
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
	for _, m := range s.metrics {
		if slices.Contains(s.tokens, m) {
			return nil, optErr("WithMetricsToken", "a metrics token must differ from every admin token")
		}
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
// be at least [tds.MinSecretBytes] long and not made by hand: one with
// fewer than 8 distinct characters, or under 48 bits by the frequencies of
// its characters (aaaaaaaaaaaaaaaa, abababab…), is refused. None should
// equal a webhook key (tdsui does not know them: the host checks).
// Defaults to none: every admin route answers 401 and the dashboard says
// it is off.
func WithAdminToken(tokens ...string) Option {
	return Option{func(s *settings) error {
		return addTokens("WithAdminToken", &s.tokens, tokens)
	}}
}

// WithMetricsToken gives read-only access to what [Handler.RequireMetrics]
// guards (the reference server's GET /metrics) to requests carrying
// "Authorization: Bearer <token>" with any of tokens, so a Prometheus
// scraper need not hold an admin token, which can retry dead letters and
// spend the Zoho budget. A metrics token opens no admin route and no
// dashboard; an admin token opens /metrics too. Several tokens are
// accepted at once (rotation); each call adds to the list. Each must pass
// the checks of [WithAdminToken] and differ from every admin token.
// Defaults to none: only an admin token opens /metrics.
func WithMetricsToken(tokens ...string) Option {
	return Option{func(s *settings) error {
		return addTokens("WithMetricsToken", &s.metrics, tokens)
	}}
}

// The least a token must have to be accepted: a cheap check against
// tokens made by hand (aaaaaaaaaaaaaaaa, abababab…), not a measure of
// randomness. A random 16-character token from 62 characters passes it
// (about 64 bits); tokens should be generated, as the reference server
// does.
const (
	minTokenDistinct = 8
	minTokenBits     = 48
)

// tokenStrength counts t's distinct bytes and estimates its bits as its
// length times the Shannon entropy of its bytes' frequencies.
func tokenStrength(t string) (distinct int, bits float64) {
	var counts [256]int
	for i := 0; i < len(t); i++ {
		counts[t[i]]++
	}
	n := float64(len(t))
	for _, c := range counts {
		if c > 0 {
			distinct++
			p := float64(c) / n
			bits -= float64(c) * math.Log2(p)
		}
	}
	return distinct, bits
}

// addTokens checks the bearer tokens of option name and appends them to
// list.
func addTokens(name string, list *[]string, tokens []string) error {
	if len(tokens) == 0 {
		return optErr(name, "no token given")
	}
	for _, t := range tokens {
		if strings.TrimSpace(t) == "" {
			return optErr(name, "empty token")
		}
		if len(t) < tds.MinSecretBytes {
			return optErr(name, "a token of %d bytes is too short: at least %d", len(t), tds.MinSecretBytes)
		}
		if distinct, bits := tokenStrength(t); distinct < minTokenDistinct || bits < minTokenBits {
			return optErr(name, "a token of %d bytes with %d distinct characters is too easy to guess: "+
				"use a random one (at least %d distinct characters and %d bits by their frequencies)",
				len(t), distinct, minTokenDistinct, minTokenBits)
		}
		*list = append(*list, t)
	}
	return nil
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
// alerts with a, and tells it of every failed dashboard sign-in and every
// refused admin request (the auth_failures rule counts them).
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
// address may have in the period per. Past that, a wrong token from the
// address is answered 429 until the allowance refills (n per per,
// continuously); the token is checked first, so the right one is always
// admitted, even from an address others have used up. The limit slows no
// guessing: that is what the token's entropy is for. IPv6
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

// WithAdminRefusalLimit sets how many refused admin requests (a missing
// or wrong bearer token, on the admin API, /queue/ and what
// [Handler.RequireAdmin] guards) one client address may have in the
// period per. Past that, a request from the address without a valid token
// is answered 429 with Retry-After until the allowance refills (n per per,
// continuously); a request with a valid token is never limited. Refusals
// are logged at most once per address and period, with their count. IPv6
// addresses are counted by their /64; behind a reverse proxy, give
// [WithTrustedProxies]. The dashboard's sign-in has its own limit
// ([WithSignInLimit]). n = 0 turns the limit off (every refusal is still
// logged, and told to the [WithAlerter] Alerter).
// Defaults to [DefaultAdminRefusalLimit] per [DefaultAdminRefusalPeriod].
func WithAdminRefusalLimit(n int, per time.Duration) Option {
	return Option{func(s *settings) error {
		switch {
		case n < 0:
			return optErr("WithAdminRefusalLimit", "n must be >= 0, got %d", n)
		case n > 0 && per < time.Second:
			return optErr("WithAdminRefusalLimit", "per must be >= 1s, got %s", per)
		}
		s.refuseLimit, s.refusePeriod = n, per
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
