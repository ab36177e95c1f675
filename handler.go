package tds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/httpx"
	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/internal/verify"
)

// Defaults of the Handler's options.
const (
	// DefaultMaxBodyBytes is the largest webhook body accepted, 1 MiB.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultRetryAfter is what a 503 answer's Retry-After header asks the
	// sender to wait.
	DefaultRetryAfter = 30 * time.Second
	// healthTimeout bounds the database check of GET /health.
	healthTimeout = 5 * time.Second
)

// maxDeliveryIDBytes bounds a sender's delivery id, which becomes part of
// the idempotency key.
const maxDeliveryIDBytes = 200

// handlerSettings holds the options read by NewHandler.
type handlerSettings struct {
	keys             []string
	zohoSecrets      [][]byte
	standardSecrets  [][]byte
	noAuth           bool
	maxBodyBytes     int64
	trustedProxies   []netip.Prefix
	deliveryIDHeader string
	retryAfter       time.Duration
	refusalLimit     int           // WithRefusalLimit; see refusal.go
	refusalPeriod    time.Duration // WithRefusalLimit
	refusalSet       bool          // WithRefusalLimit was given
	onWebhook        []func(WebhookResult)
}

// Handler is the HTTP face of tds: it receives webhooks and answers the
// health probes. It is an [http.Handler] built on a standard
// [http.ServeMux], so it can be mounted in any router and under any prefix
// (with [http.StripPrefix]):
//
//	POST /webhooks/{route}   a webhook for the registry's route (an unknown
//	                         route is 404 only once authenticated)
//	GET  /health             database ping and cached queue counts, no auth
//	GET  /health/live        the process answers (no database), no auth
//	GET  /health/ready       database reachable and schema current, no auth
//
// Every answer is JSON. A webhook gets its 2xx only after the inbox
// transaction has committed. The operator console (admin API and
// dashboard) is package tdsui's handler, mounted beside this one; metrics
// are package tdsprom's. A Handler is safe for concurrent use.
type Handler struct {
	cfg   *config
	proc  *Processor
	queue *Queue
	dec   *webhookDecoder
	mux   *http.ServeMux

	refusals *httpx.Refusals // nil: no limit
	db       *bun.DB         // pinged by GET /health
	st       store.Store     // its schema read by GET /health/ready
	counts   *countsCache    // the queue counts of GET /health

	// limitedReads holds a slot per body being read for an address past
	// its refusal limit; see gate.
	limitedReads chan struct{}
}

// NewHandler returns a Handler on db. opts are the options that apply to
// NewHandler; see [Option]. They include those of the Processor, Inbox and
// Queue it builds, which share its one configuration: one registry, one
// clock, one logger.
//
// Webhooks fail closed: at least one of [WithWebhookKeys],
// [WithZohoSecret] and [WithStandardWebhooksSecrets] is required, unless
// [WithoutAuthentication] is given explicitly.
func NewHandler(db *bun.DB, opts ...Option) (*Handler, error) {
	if db == nil {
		return nil, errors.New("tds: NewHandler: db is nil")
	}
	st, err := store.For(db)
	if err != nil {
		return nil, err
	}
	cfg, err := newConfig(forHandler, opts)
	if err != nil {
		return nil, err
	}
	s := &cfg.handler
	if s.maxBodyBytes == 0 {
		s.maxBodyBytes = DefaultMaxBodyBytes
	}
	if s.retryAfter == 0 {
		s.retryAfter = DefaultRetryAfter
	}
	if !s.refusalSet {
		s.refusalLimit, s.refusalPeriod = DefaultRefusalLimit, DefaultRefusalPeriod
	}
	vs, err := s.verifiers()
	if err != nil {
		return nil, err
	}
	if s.noAuth {
		cfg.logger.LogAttrs(context.Background(), slog.LevelWarn,
			"tds: WithoutAuthentication: webhooks are accepted without a key or signature; use it only behind a gateway that authenticates")
	}
	// The parts share cfg, so a type registered on h.Processor().Registry()
	// is routed too.
	h := &Handler{
		cfg:   cfg,
		proc:  newProcessor(db, st, cfg),
		queue: newQueue(db, st, cfg),
		dec: &webhookDecoder{
			verifiers:        vs,
			deliveryIDHeader: s.deliveryIDHeader,
			now:              cfg.now,
			reg:              cfg.registry,
		},
		mux:      http.NewServeMux(),
		refusals: httpx.NewRefusals(s.refusalLimit, s.refusalPeriod, cfg.now),
		db:       db,
		st:       st,
	}
	h.counts = newCountsCache(h.healthCountsOf)
	h.limitedReads = make(chan struct{}, maxLimitedBodyReads)
	h.mux.HandleFunc("POST /webhooks/{route}", h.serveWebhook)
	h.mux.HandleFunc("GET /health", h.serveHealth)
	h.mux.HandleFunc("GET /health/live", serveLive)
	h.mux.HandleFunc("GET /health/ready", h.serveReady)
	return h, nil
}

// ServeHTTP routes the request. The mux's own 404 and 405 answers are
// rewritten as JSON.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	httpx.ServeMux(h.mux, w, r)
}

// Close waits for the goroutines the Handler's Processor started (see
// [Processor.Close]). Call it after the HTTP server has shut down, before
// closing the database.
func (h *Handler) Close() error { return h.proc.Close() }

// Processor returns the Processor the Handler ingests webhooks with.
func (h *Handler) Processor() *Processor { return h.proc }

// webhookResponse is the answer to a webhook.
type webhookResponse struct {
	Success          bool             `json:"success"`
	Queued           bool             `json:"queued"`
	Duplicate        bool             `json:"duplicate"`
	EventID          int64            `json:"event_id"`
	IdempotencyKey   string           `json:"idempotency_key"`
	Message          string           `json:"message"`
	ValidationErrors ValidationErrors `json:"validation_errors,omitempty"`
}

// invalidResponse is the 422 answer to a stored but invalid webhook.
type invalidResponse struct {
	Success          bool             `json:"success"`
	Error            string           `json:"error"`
	ValidationErrors ValidationErrors `json:"validation_errors"`
	EventID          int64            `json:"event_id"`
	IdempotencyKey   string           `json:"idempotency_key"`
}

// serveWebhook answers one webhook and reports the answer to the
// WithWebhookObserver functions.
func (h *Handler) serveWebhook(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	res := WebhookResult{Route: r.PathValue("route")}
	status, body := h.receive(w, r, &res)
	if status != 0 {
		httpx.WriteJSON(w, status, body)
	}
	res.Status, res.Duration = status, time.Since(start)
	for _, fn := range h.cfg.handler.onWebhook {
		fn(res)
	}
}

// receive takes a webhook from its route to the inbox commit, and returns
// the answer: status 0 when the sender hung up before its event was
// stored. The entity type is resolved once, from the route, and travels
// with the event.
func (h *Handler) receive(w http.ResponseWriter, r *http.Request, res *WebhookResult) (int, any) {
	// An unknown route is answered 404 only once the request is
	// authenticated, so routes cannot be enumerated (refusal.go).
	et, known := h.cfg.registry.ByRoute(res.Route)
	if !known && len(h.dec.verifiers) == 0 {
		return unknownRoute(res.Route)
	}
	res.EntityType = et.Name
	ip := httpx.ClientIP(r, h.cfg.handler.trustedProxies)
	verified, held, herr := h.gate(w, r, res.Route, ip) // refusal.go: before the body is read
	if herr != nil {
		return herr.status, errorBody(herr.msg)
	}
	if !known && verified != "" {
		return unknownRoute(res.Route)
	}
	body, herr := readBody(w, r, h.cfg.handler.maxBodyBytes)
	if herr != nil {
		h.releaseRead(held)
		return herr.status, errorBody(herr.msg)
	}
	var ev *Event
	if known {
		ev, herr = h.dec.decode(r.Header, r.URL.Query(), body, &et, verified)
	} else {
		herr = h.dec.authenticate(r.Header, r.URL.Query(), body)
	}
	h.releaseRead(held) // the signature is checked
	if herr != nil {
		if herr.status == http.StatusUnauthorized {
			h.refused(r, res.Route, ip, herr.msg)
		}
		return herr.status, errorBody(herr.msg)
	}
	if !known {
		return unknownRoute(res.Route)
	}
	ev.et, ev.etReg = &et, h.cfg.registry // resolved once, from the route
	ev.Metadata.Headers = r.Header.Clone()
	ev.Metadata.ClientIP = ip
	ev.Metadata.URL = r.URL.RequestURI() // redacted before it is stored

	pr, err := h.proc.Process(r.Context(), ev)
	if err != nil {
		return h.notStored(w, r, res.Route, err)
	}
	// DEBUG: one line per webhook would flood a busy server's log and every
	// test's output; the answer, the inbox and the observers record it.
	h.cfg.logger.LogAttrs(r.Context(), slog.LevelDebug, "tds: webhook received",
		slog.String("entity_type", ev.EntityType), slog.String("entity_id", ev.EntityID),
		slog.Int64("event_id", pr.EventID), slog.Bool("duplicate", pr.Duplicate),
		slog.Bool("queued", pr.Queued), slog.Int("validation_errors", len(pr.ValidationErrors)))
	res.EventID, res.Duplicate = pr.EventID, pr.Duplicate
	return answerOf(pr)
}

// notStored is the answer to a webhook whose event was not stored.
func (h *Handler) notStored(w http.ResponseWriter, r *http.Request, route string, err error) (int, any) {
	switch {
	case errors.Is(err, ErrDatabaseUnavailable):
		h.cfg.logger.LogAttrs(r.Context(), slog.LevelError, "tds: webhook not stored: database unavailable",
			slog.String("route", route), slog.Any("error", err))
		httpx.SetRetryAfter(w.Header(), h.cfg.handler.retryAfter)
		return http.StatusServiceUnavailable, errorBody(httpx.Unavailable)
	case errors.Is(err, ErrInvalidEvent):
		return http.StatusBadRequest, errorBody(httpx.PublicError(err))
	case r.Context().Err() != nil:
		// The sender hung up before its event was stored; it will retry.
		h.cfg.logger.LogAttrs(context.WithoutCancel(r.Context()), slog.LevelInfo, "tds: webhook abandoned by the sender",
			slog.String("route", route), slog.Any("error", err))
		return 0, nil
	}
	h.cfg.logger.LogAttrs(r.Context(), slog.LevelError, "tds: webhook not stored",
		slog.String("route", route), slog.Any("error", err))
	return http.StatusInternalServerError, errorBody("internal error")
}

// answerOf is the answer to a webhook whose event is stored: 422 for a new
// invalid event, else 200. A duplicate is a success: the sender must not
// retry it, even when the first delivery was invalid.
func answerOf(res *Result) (int, any) {
	if len(res.ValidationErrors) > 0 && !res.Duplicate {
		return http.StatusUnprocessableEntity, invalidResponse{
			Error:            "the event failed validation: it is stored but not queued",
			ValidationErrors: res.ValidationErrors,
			EventID:          res.EventID,
			IdempotencyKey:   res.IdempotencyKey,
		}
	}
	resp := webhookResponse{
		Success:        true,
		Queued:         res.Queued,
		Duplicate:      res.Duplicate,
		EventID:        res.EventID,
		IdempotencyKey: res.IdempotencyKey,
		Message:        "event stored and queued",
	}
	if res.Duplicate {
		resp.Message = "duplicate delivery: the event was received before"
		resp.ValidationErrors = res.ValidationErrors
	}
	return http.StatusOK, resp
}

func errorBody(msg string) httpx.ErrorBody { return httpx.ErrorBody{Error: msg} }

// httpError is an answer decided before the event reached the database.
type httpError struct {
	status int
	msg    string
}

// readBody reads at most limit bytes of the body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *httpError) {
	body, status, msg := httpx.ReadBody(w, r, limit)
	if status != 0 {
		return nil, &httpError{status, msg}
	}
	return body, nil
}

// webhookDecoder turns a webhook's headers and raw body into an Event, or
// the answer refusing it. It touches no database, so it can be fuzzed.
type webhookDecoder struct {
	verifiers        []verify.Verifier
	deliveryIDHeader string
	now              func() time.Time
	reg              *Registry // the routes, for checkRoute
}

// decode checks, in order, the content type (415), the form's syntax
// (400), the key or signature on the raw bytes and the parameters (401,
// unless the gate verified the key already: verified names its verifier),
// then the payload, its entity type and its route (400, see checkRoute).
// See payload.go for the formats.
func (d *webhookDecoder) decode(h http.Header, query url.Values, body []byte, et *EntityType, verified string) (*Event, *httpError) {
	kind := bodyKindOf(h.Get("Content-Type"))
	if kind == bodyUnsupported {
		return nil, &httpError{http.StatusUnsupportedMediaType, "content type must be application/json or application/x-www-form-urlencoded"}
	}
	params, form := query, url.Values(nil)
	if kind == bodyForm {
		var err error
		if form, err = parseForm(body); err != nil {
			return nil, &httpError{http.StatusBadRequest, httpx.PublicError(err)}
		}
		params = mergeValues(query, form)
	}
	var meta RequestMetadata
	switch {
	case verified != "":
		meta.SignatureVerified, meta.Verifier = true, verified
	case len(d.verifiers) > 0:
		name, err := verify.Request(d.verifiers, h, params, body, d.now())
		if err != nil {
			return nil, &httpError{http.StatusUnauthorized, err.Error()}
		}
		meta.SignatureVerified, meta.Verifier = true, name
	}
	var ev *Event
	var err error
	if kind == bodyForm {
		ev, err = parseFormPayload(form, query, *et)
	} else {
		ev, err = parseJSONPayload(body, query, *et)
	}
	if err != nil {
		return nil, &httpError{http.StatusBadRequest, httpx.PublicError(err)}
	}
	if ev.EntityType != et.Name {
		return nil, &httpError{http.StatusBadRequest,
			fmt.Sprintf("entity_type %q does not match the route %q, which takes %q", ev.EntityType, et.Route, et.Name)}
	}
	if err := checkRoute(d.reg, et, query, form, body, kind, meta.Verifier == VerifierZoho); err != nil {
		return nil, &httpError{http.StatusBadRequest, httpx.PublicError(err)}
	}
	ev.DeliveryID = d.deliveryID(h, meta.Verifier)
	if len(ev.DeliveryID) > maxDeliveryIDBytes {
		return nil, &httpError{http.StatusBadRequest, fmt.Sprintf("delivery id longer than %d bytes", maxDeliveryIDBytes)}
	}
	if meta.Verifier == VerifierZoho {
		ev.checks = versionChecks(ev, et)
	}
	ev.Metadata = meta
	return ev, nil
}

// deliveryID is the sender's delivery id when it may key the event. A
// delivery id counts only if the accepted signature covers it, or else a
// captured delivery re-sent with a fresh id would be stored and queued
// again: only Standard Webhooks signs its webhook-id, which then alone keys
// the event (see idempotencyKey). Under the key or Zoho
// verifier the content hash is the key. With no verifier nothing is signed,
// and the header of WithDeliveryIDHeader is the operator's explicit choice.
func (d *webhookDecoder) deliveryID(h http.Header, verifier string) string {
	switch {
	case verifier == VerifierStandardWebhooks:
		return strings.TrimSpace(h.Get(HeaderWebhookID))
	case len(d.verifiers) == 0 && d.deliveryIDHeader != "":
		return strings.TrimSpace(h.Get(d.deliveryIDHeader))
	}
	return ""
}

// versionChecks reports a record without its type's version field. Under
// Zoho's signature, which signs no delivery id, the version is what stops
// a replayed older record (or delete) from overwriting a newer one, and
// without it the version would be the time of receipt.
func versionChecks(ev *Event, et *EntityType) ValidationErrors {
	if et.VersionField == "" {
		return nil
	}
	data, err := decodeObject(ev.Data)
	if err != nil {
		return nil // the Validator reports it
	}
	if v, ok := data[et.VersionField]; !ok || isEmpty(v) {
		return ValidationErrors{{Field: "data." + et.VersionField,
			Message: "is required under Zoho's signature, which signs no delivery id: the version orders replays"}}
	}
	return nil
}

// mergeValues is the query's parameters and the form's, a key in both
// keeping the query's values first.
func mergeValues(query, form url.Values) url.Values {
	out := make(url.Values, len(query)+len(form))
	for k, vs := range query {
		out[k] = append([]string(nil), vs...)
	}
	for k, vs := range form {
		out[k] = append(out[k], vs...)
	}
	return out
}

// WithMaxBodyBytes sets the largest webhook body accepted; a larger one is
// answered 413.
// Applies to [NewHandler]. Defaults to [DefaultMaxBodyBytes].
func WithMaxBodyBytes(n int64) Option {
	return newOption("WithMaxBodyBytes", forHandler, func(c *config) error {
		if n < 1 {
			return optErr("WithMaxBodyBytes", "must be >= 1, got %d", n)
		}
		c.handler.maxBodyBytes = n
		return nil
	})
}

// WithTrustedProxies names the proxies (addresses or CIDR prefixes, such as
// "10.0.0.0/8") whose X-Forwarded-For header is believed when recording a
// webhook's client IP.
// Applies to [NewHandler]. Defaults to none: the client IP is the peer's.
func WithTrustedProxies(proxies ...string) Option {
	return newOption("WithTrustedProxies", forHandler, func(c *config) error {
		prefixes, bad := httpx.ParsePrefixes(proxies)
		if bad != "" {
			return optErr("WithTrustedProxies", "%q is not an address or CIDR prefix", bad)
		}
		c.handler.trustedProxies = append(c.handler.trustedProxies, prefixes...)
		return nil
	})
}

// WithDeliveryIDHeader names a header carrying the sender's delivery id,
// such as "X-Delivery-Id", under [WithoutAuthentication]: a redelivery
// with the same id is a duplicate even if its content changed. Nothing
// signs such a header, so it is refused with a key or secret, where a
// replay with a fresh id would count as new: there the delivery id is
// Standard Webhooks' signed webhook-id, or none (the content hash keys the
// event).
// Applies to [NewHandler]. Defaults to none.
func WithDeliveryIDHeader(name string) Option {
	return newOption("WithDeliveryIDHeader", forHandler, func(c *config) error {
		if strings.TrimSpace(name) == "" {
			return optErr("WithDeliveryIDHeader", "empty header name")
		}
		c.handler.deliveryIDHeader = http.CanonicalHeaderKey(name)
		return nil
	})
}

// WithRetryAfter sets the Retry-After of a 503 answer, sent when the
// database is unavailable.
// Applies to [NewHandler]. Defaults to [DefaultRetryAfter].
func WithRetryAfter(d time.Duration) Option {
	return newOption("WithRetryAfter", forHandler, func(c *config) error {
		if d < time.Second {
			return optErr("WithRetryAfter", "must be >= 1s, got %s", d)
		}
		c.handler.retryAfter = d
		return nil
	})
}

// healthResponse is the answer of GET /health.
type healthResponse struct {
	Status   string        `json:"status"`
	Database string        `json:"database"`
	Queue    *healthCounts `json:"queue,omitempty"`
	Error    string        `json:"error,omitempty"`
}

// serveHealth pings the database on every call, which anyone may do
// cheaply; the queue counts come from h.counts, at most
// healthCountsMaxAge (5 s) old, and are left out when they cannot be read.
func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	if err := h.db.PingContext(ctx); err != nil {
		h.cfg.logger.LogAttrs(r.Context(), slog.LevelError, "tds: health check failed", slog.Any("error", err))
		httpx.WriteJSON(w, http.StatusServiceUnavailable, healthResponse{
			Status: "unhealthy", Database: "unavailable", Error: "database unavailable",
		})
		return
	}
	counts, err := h.counts.get(ctx)
	if err != nil {
		h.cfg.logger.LogAttrs(r.Context(), slog.LevelWarn, "tds: health check: queue counts unavailable", slog.Any("error", err))
	}
	httpx.WriteJSON(w, http.StatusOK, healthResponse{Status: "healthy", Database: "ok", Queue: counts})
}

// healthCountsOf reads the counts of GET /health.
func (h *Handler) healthCountsOf(ctx context.Context) (*healthCounts, error) {
	s, err := h.queue.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return &healthCounts{
		Pending:    s.ByStatus[StatusPending],
		Processing: s.ByStatus[StatusProcessing],
		Retry:      s.ByStatus[StatusRetry],
		DeadLetter: s.ByStatus[StatusDeadLetter],
	}, nil
}
