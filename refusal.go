package tds

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tdscore/tds/internal/httpx"
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

// maxLimitedBodyReads bounds the bodies read at once for requests from
// addresses past their refusal limit: such a request may carry a valid
// signature over its body, so it is verified, but the body read and HMAC
// that the limit saves are bounded here instead.
const maxLimitedBodyReads = 4

// WithRefusalLimit sets how many webhooks one client address may have
// refused for a bad or missing credential (401) in the period per. Past
// that, the address is answered 429 with Retry-After, without its body
// being read, until the allowance refills (n per per, continuously). The
// refusal log lines are limited too: at most one per address per period,
// with the number of refusals it stands for.
//
// Authenticated traffic is never counted, and a request whose credential
// verifies is never answered 429 for others' refusals: senders such as
// Zoho share egress addresses across customers. A request whose
// X-Webhook-Key ([WithWebhookKeys]) is valid is admitted from a limited
// address, since the key is checked before the body is read; a request
// signed over its body ([WithZohoSecret], [WithStandardWebhooksSecrets])
// from a limited address is read and verified too, but at most 4 such
// bodies are read at once across all limited addresses: past that bound it
// is answered 429, and its sender retries later. Addresses that are not
// limited are not bounded. IPv6 addresses are counted by their /64. Behind
// a reverse proxy, give [WithTrustedProxies], or every client shares the
// proxy's address. n = 0 turns the limit off.
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
// answers 429 to an address that has used up its refusals, unless the
// request carries a signature over its body and one of the
// maxLimitedBodyReads slots is free: then held is true, and the caller
// calls releaseRead once the signature is checked. A non-nil error is the
// answer refusing the request.
func (h *Handler) gate(w http.ResponseWriter, r *http.Request, route, ip string) (verified string, held bool, refusal *httpError) {
	vs := h.dec.verifiers
	if len(vs) == 0 {
		return "", false, nil
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
			return v.Name(), false, nil // authenticated traffic is never limited
		}
		failure = verify.ErrBadCredential
	}
	if wait, ok := h.refusals.Limited(ip); ok {
		if needsBody && h.acquireRead() {
			return "", true, nil // it may be valid: verify it, within the bound
		}
		h.refused(r, route, ip, "too many refused requests")
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		return "", false, &httpError{http.StatusTooManyRequests, "too many refused requests from this address: retry later"}
	}
	if needsBody {
		return "", false, nil
	}
	h.refused(r, route, ip, failure.Error())
	return "", false, &httpError{http.StatusUnauthorized, failure.Error()}
}

// acquireRead takes one of the maxLimitedBodyReads slots without waiting,
// and tells whether it got one.
func (h *Handler) acquireRead() bool {
	select {
	case h.limitedReads <- struct{}{}:
		return true
	default:
		return false
	}
}

// releaseRead gives back the slot gate took when held is true.
func (h *Handler) releaseRead(held bool) {
	if held {
		<-h.limitedReads
	}
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

// unknownRoute is the answer to an authenticated webhook for a route the
// registry does not have.
func unknownRoute(route string) (int, any) {
	return http.StatusNotFound, errorBody(fmt.Sprintf("unknown webhook route %q", route))
}

// authenticate checks the credentials of a webhook to an unknown route as
// decode does for a known one, in the same order and with the same
// answers (415, 400 for a form, 401), so that an unauthenticated sender
// cannot tell the two apart. A signature over the body needs the body:
// it is read as on a known route, within the same limits (gate).
func (d *webhookDecoder) authenticate(h http.Header, query url.Values, body []byte) *httpError {
	kind := bodyKindOf(h.Get("Content-Type"))
	if kind == bodyUnsupported {
		return &httpError{http.StatusUnsupportedMediaType, "content type must be application/json or application/x-www-form-urlencoded"}
	}
	params := query
	if kind == bodyForm {
		form, err := parseForm(body)
		if err != nil {
			return &httpError{http.StatusBadRequest, httpx.PublicError(err)}
		}
		params = mergeValues(query, form)
	}
	if _, err := verify.Request(d.verifiers, h, params, body, d.now()); err != nil {
		return &httpError{http.StatusUnauthorized, err.Error()}
	}
	return nil
}
