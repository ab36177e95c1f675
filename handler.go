package tds

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"

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
	// DefaultHealthTimeout bounds the database check of GET /health.
	DefaultHealthTimeout = 5 * time.Second
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
	adminTokens      []string
	maxBodyBytes     int64
	trustedProxies   []netip.Prefix
	deliveryIDHeader string
	retryAfter       time.Duration
	refusalLimit     int           // WithRefusalLimit; see refusal.go
	refusalPeriod    time.Duration // WithRefusalLimit
	refusalSet       bool          // WithRefusalLimit was given
}

// Handler is the HTTP face of tds: it receives webhooks and serves the
// health check, the queue statistics and the admin API. It is an
// [http.Handler] built on a standard [http.ServeMux], so it can be mounted
// in any router and under any prefix (with [http.StripPrefix]):
//
//	POST /webhooks/{route}                   a webhook for the registry's route
//	GET  /health                             database ping and cached queue counts, no auth
//	GET  /health/live                        the process answers (no database), no auth
//	GET  /health/ready                       database reachable and schema current, no auth
//	GET  /queue/stats                        queue statistics (admin)
//	GET  /queue/throughput                   jobs completed and their latency, per minute of the last hour (admin)
//	GET  /admin/events                       inbox events, filtered, paginated
//	GET  /admin/events/{id}                  one event, its job and attempts
//	GET  /admin/dead-letters                 dead letters
//	POST /admin/dead-letters/retry           retry dead letters by filter, or all
//	POST /admin/dead-letters/{id}/retry      retry one dead letter
//	POST /admin/dead-letters/{id}/discard    give up on one dead letter
//	GET  /ui/                                the operator dashboard (HTML; sign in with an admin token)
//
// Every answer but the dashboard's is JSON. Admin POSTs must be sent as application/json (415
// otherwise). A webhook gets its 2xx only after the inbox
// transaction has committed. A Handler is safe for concurrent use.
type Handler struct {
	cfg   *config
	proc  *Processor
	inbox *Inbox
	queue *Queue
	dec   *webhookDecoder
	mux   *http.ServeMux

	refusals *refusalLimiter     // nil: no limit
	admins   [][sha256.Size]byte // digests of the admin tokens (adminDigests)
	db       *bun.DB             // pinged by GET /health
	st       store.Store         // its schema read by GET /health/ready; the dashboard's sessions
	counts   *countsCache        // the queue counts of GET /health
}

// NewHandler returns a Handler on db. opts are the options that apply to
// NewHandler; see [Option]. They include those of the Processor, Inbox and
// Queue it builds, which share its one configuration: one registry, one
// clock, one logger.
//
// Webhooks fail closed: at least one of [WithWebhookKeys],
// [WithZohoSecret] and [WithStandardWebhooksSecrets] is required, unless
// [WithoutAuthentication] is given explicitly. The admin API answers 401
// until [WithAdminToken] is given.
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
	if err := s.checkAdminTokens(); err != nil {
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
		inbox: newInbox(db, st, cfg),
		queue: newQueue(db, st, cfg),
		dec: &webhookDecoder{
			verifiers:        vs,
			deliveryIDHeader: s.deliveryIDHeader,
			now:              cfg.now,
		},
		mux:      http.NewServeMux(),
		refusals: newRefusalLimiter(s.refusalLimit, s.refusalPeriod, cfg.now),
		admins:   adminDigests(s.adminTokens),
		db:       db,
		st:       st,
	}
	h.counts = newCountsCache(h.healthCountsOf)
	h.mux.HandleFunc("POST /webhooks/{route}", cfg.metrics.instrumentWebhook(cfg.registry, h.serveWebhook))
	h.mux.HandleFunc("GET /health", h.serveHealth)
	h.mux.HandleFunc("GET /health/live", serveLive)
	h.mux.HandleFunc("GET /health/ready", h.serveReady)
	h.mux.HandleFunc("GET /queue/stats", h.admin(h.serveQueueStats))
	h.mux.HandleFunc("GET /queue/throughput", h.admin(h.serveThroughput))
	h.mux.HandleFunc("GET /admin/events", h.admin(h.serveListEvents))
	h.mux.HandleFunc("GET /admin/events/{id}", h.admin(h.serveEvent))
	h.mux.HandleFunc("GET /admin/dead-letters", h.admin(h.serveListDeadLetters))
	h.mux.HandleFunc("POST /admin/dead-letters/retry", h.admin(h.serveRetryDeadLetters))
	h.mux.HandleFunc("POST /admin/dead-letters/{id}/retry", h.admin(h.serveRetryDeadLetter))
	h.mux.HandleFunc("POST /admin/dead-letters/{id}/discard", h.admin(h.serveDiscardDeadLetter))
	h.mux.HandleFunc("POST /admin/reconcile", h.admin(h.serveReconcile))
	h.mux.HandleFunc("GET /admin/sync-runs", h.admin(h.serveListRuns))
	h.mux.HandleFunc("GET /admin/sync-runs/{id}", h.admin(h.serveRun))
	h.mux.HandleFunc("POST /admin/sync-runs/{id}/cancel", h.admin(h.serveCancelRun))
	h.mux.HandleFunc("GET /admin/alerts", h.admin(h.serveListAlerts))
	h.mux.HandleFunc("POST /admin/alerts/{id}/ack", h.admin(h.serveAckAlert))
	h.mux.HandleFunc("POST /admin/alerts/{id}/silence", h.admin(h.serveSilenceAlert))
	if err := h.mountDashboard(); err != nil {
		return nil, err
	}
	return h, nil
}

// ServeHTTP routes the request. The mux's own 404 and 405 answers are
// rewritten as JSON.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := h.mux.Handler(r); pattern == "" {
		w = &muxErrorWriter{ResponseWriter: w}
	}
	h.mux.ServeHTTP(w, r)
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

// errorResponse is every error answer.
type errorResponse struct {
	Success bool   `json:"success"`
	Error   string `json:"error"`
}

func (h *Handler) serveWebhook(w http.ResponseWriter, r *http.Request) {
	route := r.PathValue("route")
	et, ok := h.cfg.registry.ByRoute(route)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown webhook route %q", route))
		return
	}
	ip := h.clientIP(r)
	if !h.gate(w, r, route, ip) { // refusal.go: before the body is read
		return
	}
	body, herr := readBody(w, r, h.cfg.handler.maxBodyBytes)
	if herr != nil {
		writeError(w, herr.status, herr.msg)
		return
	}
	ev, herr := h.dec.decode(r.Header, r.URL.Query(), body, et)
	if herr != nil {
		if herr.status == http.StatusUnauthorized {
			h.refused(r, route, ip, herr.msg)
		}
		writeError(w, herr.status, herr.msg)
		return
	}
	ev.Metadata.Headers = r.Header.Clone()
	ev.Metadata.ClientIP = ip
	ev.Metadata.URL = r.URL.RequestURI() // redacted before it is stored

	res, err := h.proc.Process(r.Context(), ev)
	switch {
	case errors.Is(err, ErrDatabaseUnavailable):
		h.cfg.logger.LogAttrs(r.Context(), slog.LevelError, "tds: webhook not stored: database unavailable",
			slog.String("route", route), slog.Any("error", err))
		h.writeUnavailable(w)
		return
	case errors.Is(err, ErrInvalidEvent):
		writeError(w, http.StatusBadRequest, publicError(err))
		return
	case err != nil && r.Context().Err() != nil:
		// The sender hung up before its event was stored; it will retry.
		h.cfg.logger.LogAttrs(context.WithoutCancel(r.Context()), slog.LevelInfo, "tds: webhook abandoned by the sender",
			slog.String("route", route), slog.Any("error", err))
		return
	case err != nil:
		h.cfg.logger.LogAttrs(r.Context(), slog.LevelError, "tds: webhook not stored",
			slog.String("route", route), slog.Any("error", err))
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	h.cfg.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: webhook received",
		slog.String("entity_type", ev.EntityType), slog.String("entity_id", ev.EntityID),
		slog.Int64("event_id", res.EventID), slog.Bool("duplicate", res.Duplicate),
		slog.Bool("queued", res.Queued), slog.Int("validation_errors", len(res.ValidationErrors)))

	if len(res.ValidationErrors) > 0 && !res.Duplicate {
		writeJSON(w, http.StatusUnprocessableEntity, invalidResponse{
			Error:            "the event failed validation: it is stored but not queued",
			ValidationErrors: res.ValidationErrors,
			EventID:          res.EventID,
			IdempotencyKey:   res.IdempotencyKey,
		})
		return
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
		markDuplicate(w)
		// A duplicate is a success: the sender must not retry it, even when
		// the first delivery was invalid.
		resp.Message = "duplicate delivery: the event was received before"
		resp.ValidationErrors = res.ValidationErrors
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *Handler) writeUnavailable(w http.ResponseWriter) {
	secs := int((h.cfg.handler.retryAfter + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusServiceUnavailable, "database unavailable: retry later")
}

// httpError is an answer decided before the event reached the database.
type httpError struct {
	status int
	msg    string
}

// readBody reads at most limit bytes of the body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *httpError) {
	tooLarge := &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit)}
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		return nil, &httpError{http.StatusBadRequest, "could not read the body"}
	}
	return body, nil
}

// webhookDecoder turns a webhook's headers and raw body into an Event, or
// the answer refusing it. It touches no database, so it can be fuzzed.
type webhookDecoder struct {
	verifiers        []verify.Verifier
	deliveryIDHeader string
	now              func() time.Time
}

// decode checks, in order, the content type (415), the form's syntax
// (400), the key or signature on the raw bytes and the parameters (401),
// then the payload and its entity type (400). See payload.go for the
// formats.
func (d *webhookDecoder) decode(h http.Header, query url.Values, body []byte, et EntityType) (*Event, *httpError) {
	kind := bodyKindOf(h.Get("Content-Type"))
	if kind == bodyUnsupported {
		return nil, &httpError{http.StatusUnsupportedMediaType, "content type must be application/json or application/x-www-form-urlencoded"}
	}
	params, form := query, url.Values(nil)
	if kind == bodyForm {
		var err error
		if form, err = parseForm(body); err != nil {
			return nil, &httpError{http.StatusBadRequest, publicError(err)}
		}
		params = mergeValues(query, form)
	}
	var meta RequestMetadata
	if len(d.verifiers) > 0 {
		name, err := verify.Request(d.verifiers, h, params, body, d.now())
		if err != nil {
			return nil, &httpError{http.StatusUnauthorized, err.Error()}
		}
		meta.SignatureVerified, meta.Verifier = true, name
	}
	var ev *Event
	var err error
	if kind == bodyForm {
		ev, err = parseFormPayload(form, query, et)
	} else {
		ev, err = parseJSONPayload(body, query, et)
	}
	if err != nil {
		return nil, &httpError{http.StatusBadRequest, publicError(err)}
	}
	if ev.EntityType != et.Name {
		return nil, &httpError{http.StatusBadRequest,
			fmt.Sprintf("entity_type %q does not match the route %q, which takes %q", ev.EntityType, et.Route, et.Name)}
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
// again: only Standard Webhooks signs its webhook-id. Under the key or Zoho
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
func versionChecks(ev *Event, et EntityType) ValidationErrors {
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

// publicError is err's message without the package prefix. Only errors
// that describe the request itself are shown to senders.
func publicError(err error) string {
	return strings.TrimPrefix(err.Error(), "tds: ")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorResponse{Success: false, Error: msg})
}

// muxErrorWriter replaces the text body of the mux's own 404 and 405
// answers (Allow header kept) with the JSON error shape.
type muxErrorWriter struct {
	http.ResponseWriter
	replaced bool
}

func (m *muxErrorWriter) WriteHeader(code int) {
	var msg string
	switch code {
	case http.StatusNotFound:
		msg = "not found"
	case http.StatusMethodNotAllowed:
		msg = "method not allowed"
	default:
		m.ResponseWriter.WriteHeader(code)
		return
	}
	m.replaced = true
	m.ResponseWriter.Header().Del("Content-Length")
	writeError(m.ResponseWriter, code, msg)
}

func (m *muxErrorWriter) Write(b []byte) (int, error) {
	if m.replaced {
		return len(b), nil
	}
	return m.ResponseWriter.Write(b)
}

// clientIP is the address the request came from: the peer, or, when the
// peer is a trusted proxy, the nearest untrusted address of X-Forwarded-For.
func (h *Handler) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	trusted := h.cfg.handler.trustedProxies
	if !inPrefixes(trusted, addr) {
		return addr.String()
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		addr = a.Unmap()
		if !inPrefixes(trusted, addr) {
			break
		}
	}
	return addr.String()
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
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
		for _, p := range proxies {
			var prefix netip.Prefix
			if strings.Contains(p, "/") {
				pp, err := netip.ParsePrefix(p)
				if err != nil {
					return optErr("WithTrustedProxies", "%q is not an address or CIDR prefix", p)
				}
				prefix = pp.Masked()
			} else {
				a, err := netip.ParseAddr(p)
				if err != nil {
					return optErr("WithTrustedProxies", "%q is not an address or CIDR prefix", p)
				}
				a = a.Unmap()
				prefix = netip.PrefixFrom(a, a.BitLen())
			}
			c.handler.trustedProxies = append(c.handler.trustedProxies, prefix)
		}
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
// [HealthCountsMaxAge] old, and are left out when they cannot be read.
func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), DefaultHealthTimeout)
	defer cancel()
	if err := h.db.PingContext(ctx); err != nil {
		h.cfg.logger.LogAttrs(r.Context(), slog.LevelError, "tds: health check failed", slog.Any("error", err))
		writeJSON(w, http.StatusServiceUnavailable, healthResponse{
			Status: "unhealthy", Database: "unavailable", Error: "database unavailable",
		})
		return
	}
	counts, err := h.counts.get(ctx)
	if err != nil {
		h.cfg.logger.LogAttrs(r.Context(), slog.LevelWarn, "tds: health check: queue counts unavailable", slog.Any("error", err))
	}
	writeJSON(w, http.StatusOK, healthResponse{Status: "healthy", Database: "ok", Queue: counts})
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
