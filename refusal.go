package tds

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/tdscore/tds/internal/verify"
)

// Defaults of [WithRefusalLimit].
const (
	// DefaultRefusalLimit is how many webhooks from one client address may
	// be refused (401) per [DefaultRefusalPeriod] before the address is
	// answered 429 without its body being read.
	DefaultRefusalLimit = 20
	// DefaultRefusalPeriod is the period of [DefaultRefusalLimit].
	DefaultRefusalPeriod = time.Minute
)

// maxRefusalEntries bounds the addresses the refusal limiter remembers.
const maxRefusalEntries = 10000

// WithRefusalLimit sets how many webhooks one client address may have
// refused for a bad or missing credential (401) in the period per. Past
// that, the address is answered 429 with Retry-After, without its body
// being read, until the allowance refills (n per per, continuously). The
// refusal log lines are limited too: at most one per address per period,
// with the number of refusals it stands for.
//
// Authenticated traffic is never counted. A request whose X-Webhook-Key
// ([WithWebhookKeys]) is valid is admitted even from a limited address,
// since the key is checked before the body is read; a request signed over
// its body ([WithZohoSecret], [WithStandardWebhooksSecrets]) from a limited
// address is answered 429, and its sender retries later. IPv6 addresses
// are counted by their /64. Behind a reverse proxy, give
// [WithTrustedProxies], or every client shares the proxy's address.
// n = 0 turns the limit off.
// Applies to [NewHandler]. Defaults to [DefaultRefusalLimit] per
// [DefaultRefusalPeriod].
func WithRefusalLimit(n int, per time.Duration) Option {
	return newOption("WithRefusalLimit", forHandler, func(c *config) error {
		switch {
		case n < 0:
			return optErr("WithRefusalLimit", "n must be >= 0, got %d", n)
		case n > 0 && per < time.Second:
			return optErr("WithRefusalLimit", "per must be >= 1s, got %s", per)
		}
		c.handler.refusalLimit, c.handler.refusalPeriod, c.handler.refusalSet = n, per, true
		return nil
	})
}

// refusalLimiter counts the refused webhooks of each client address in a
// token bucket: n tokens, refilled at n per period. It starts no
// goroutine: idle entries are dropped when the map is full.
type refusalLimiter struct {
	n      float64
	period time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[netip.Prefix]*refusalEntry
	sweptAt time.Time // the last sweep of idle entries
}

type refusalEntry struct {
	tokens   float64   // refusals left, as of at
	at       time.Time // when tokens was computed
	loggedAt time.Time // the last log line
	unlogged int       // refusals since the last log line
}

// newRefusalLimiter returns nil, which limits nothing, when n is 0.
func newRefusalLimiter(n int, period time.Duration, now func() time.Time) *refusalLimiter {
	if n == 0 {
		return nil
	}
	return &refusalLimiter{n: float64(n), period: period, now: now, entries: make(map[netip.Prefix]*refusalEntry), sweptAt: now()}
}

// refusalKey is what an address is counted by: itself, or its /64 for
// IPv6, which one client usually holds whole.
func refusalKey(ip string) netip.Prefix {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Prefix{}
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// refill brings e's tokens up to now; the caller holds l.mu.
func (l *refusalLimiter) refill(e *refusalEntry, now time.Time) {
	if d := now.Sub(e.at); d > 0 {
		e.tokens = math.Min(l.n, e.tokens+l.n*d.Seconds()/l.period.Seconds())
		e.at = now
	}
}

// limited tells whether ip has no refusal left, and if so how long until
// it has one.
func (l *refusalLimiter) limited(ip string) (time.Duration, bool) {
	if l == nil {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[refusalKey(ip)]
	if !ok {
		return 0, false
	}
	now := l.now()
	l.refill(e, now)
	if e.tokens >= 1 {
		return 0, false
	}
	return time.Duration((1 - e.tokens) * float64(l.period) / l.n), true
}

// refuse counts one refusal of ip, and tells whether to log it and how
// many refusals the line stands for.
func (l *refusalLimiter) refuse(ip string) (logIt bool, count int) {
	if l == nil {
		return true, 1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	key := refusalKey(ip)
	e, ok := l.entries[key]
	if !ok {
		l.makeRoom(now)
		e = &refusalEntry{tokens: l.n, at: now}
		l.entries[key] = e
	}
	l.refill(e, now)
	e.tokens = math.Max(0, e.tokens-1)
	e.unlogged++
	if !e.loggedAt.IsZero() && now.Sub(e.loggedAt) < l.period {
		return false, 0
	}
	count, e.unlogged, e.loggedAt = e.unlogged, 0, now
	return true, count
}

// makeRoom drops the idle entries, whose bucket is full again and whose
// log period is over, once a period or when the map is full; if every
// entry is busy, it drops some anyway: a flood from that many addresses is
// beyond what one process's bookkeeping can stop. The caller holds l.mu.
func (l *refusalLimiter) makeRoom(now time.Time) {
	if len(l.entries) < maxRefusalEntries && now.Sub(l.sweptAt) < l.period {
		return
	}
	l.sweptAt = now
	for k, e := range l.entries {
		l.refill(e, now)
		if e.tokens >= l.n && now.Sub(e.loggedAt) >= l.period {
			delete(l.entries, k)
		}
	}
	for k := range l.entries {
		if len(l.entries) < maxRefusalEntries*9/10 {
			break
		}
		delete(l.entries, k)
	}
}

// gate runs before a webhook's body is read. It admits a request whose
// webhook key is valid, refuses one whose credentials can be judged from
// the headers alone (no credential, or a bad key and nothing else), and
// answers 429 to an address that has used up its refusals. It reports
// whether the request goes on.
func (h *Handler) gate(w http.ResponseWriter, r *http.Request, route, ip string) bool {
	vs := h.dec.verifiers
	if len(vs) == 0 {
		return true
	}
	needsBody := false
	failure := verify.ErrNoCredentials
	for _, v := range vs {
		if !v.Present(r.Header) {
			continue
		}
		if v.Name() != verify.NameKey {
			needsBody = true
			continue
		}
		if v.Verify(r.Header, nil, nil, h.cfg.now()) == nil {
			return true // authenticated traffic is never limited
		}
		failure = verify.ErrBadCredential
	}
	if wait, ok := h.refusals.limited(ip); ok {
		h.refused(r, route, ip, "too many refused requests")
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		writeError(w, http.StatusTooManyRequests, "too many refused requests from this address: retry later")
		return false
	}
	if needsBody {
		return true
	}
	h.refused(r, route, ip, failure.Error())
	writeError(w, http.StatusUnauthorized, failure.Error())
	return false
}

// refused counts a refusal of ip and logs it, at most once per address per
// period.
func (h *Handler) refused(r *http.Request, route, ip, reason string) {
	h.cfg.alerting.alerter.count(counterRefused)
	logIt, n := h.refusals.refuse(ip)
	if !logIt {
		return
	}
	h.cfg.logger.LogAttrs(context.WithoutCancel(r.Context()), slog.LevelWarn, "tds: webhook refused",
		slog.String("route", route), slog.String("client_ip", ip), slog.String("reason", reason),
		slog.Int("refused", n))
}
