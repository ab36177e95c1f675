package tds

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"strconv"
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

// gate runs before a webhook's body is read. It admits a request whose
// webhook key is valid (verified names the key's verifier, so the key is
// not checked again), refuses one whose credentials can be judged from the
// headers alone (no credential, or a bad key and nothing else), and
// answers 429 to an address that has used up its refusals. A non-nil
// error is the answer refusing the request.
func (h *Handler) gate(w http.ResponseWriter, r *http.Request, route, ip string) (verified string, refusal *httpError) {
	vs := h.dec.verifiers
	if len(vs) == 0 {
		return "", nil
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
			return v.Name(), nil // authenticated traffic is never limited
		}
		failure = verify.ErrBadCredential
	}
	if wait, ok := h.refusals.Limited(ip); ok {
		h.refused(r, route, ip, "too many refused requests")
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		return "", &httpError{http.StatusTooManyRequests, "too many refused requests from this address: retry later"}
	}
	if needsBody {
		return "", nil
	}
	h.refused(r, route, ip, failure.Error())
	return "", &httpError{http.StatusUnauthorized, failure.Error()}
}

// refused counts a refusal of ip and logs it, at most once per address per
// period.
func (h *Handler) refused(r *http.Request, route, ip, reason string) {
	logIt, n := h.refusals.Refuse(ip)
	if !logIt {
		return
	}
	h.cfg.logger.LogAttrs(context.WithoutCancel(r.Context()), slog.LevelWarn, "tds: webhook refused",
		slog.String("route", route), slog.String("client_ip", ip), slog.String("reason", reason),
		slog.Int("refused", n))
}
