package tdsui

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/httpx"
)

// MaxListLimit is the largest page the admin API lists.
const MaxListLimit = 1000

// maxAdminBodyBytes bounds the JSON body of an admin request.
const maxAdminBodyBytes = 64 << 10

// adminDigests are the SHA-256 digests of the admin tokens: comparing
// digests of equal length keeps the comparison's time independent of the
// tokens' lengths.
func adminDigests(tokens []string) [][sha256.Size]byte {
	out := make([][sha256.Size]byte, len(tokens))
	for i, t := range tokens {
		out[i] = sha256.Sum256([]byte(t))
	}
	return out
}

// validAdminToken compares got with every token, without stopping at a
// match, so the time taken does not tell which token matched.
func validAdminToken(digests [][sha256.Size]byte, got string) bool {
	_, ok := adminTokenIndex(digests, got)
	return ok
}

// adminTokenIndex is the index of the token got among the digests', for
// the log lines of what its holder does; like validAdminToken it compares
// with every token.
func adminTokenIndex(digests [][sha256.Size]byte, got string) (int, bool) {
	sum := sha256.Sum256([]byte(got))
	index := -1
	for i := range digests {
		eq := subtle.ConstantTimeCompare(sum[:], digests[i][:])
		index = subtle.ConstantTimeSelect(eq, i, index)
	}
	return index, index >= 0
}

// adminUnauthorized is the one answer to every refused admin request: it
// does not tell a missing token from a wrong one, nor whether the admin API
// has a token at all.
const adminUnauthorized = "missing or invalid admin bearer token"

// bearerToken is the token of r's "Authorization: Bearer" header; found
// is false without one.
func bearerToken(r *http.Request) (token string, found bool) {
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(got), true
}

// adminLimited is the answer to an address past its refused admin
// requests ([WithAdminRefusalLimit]).
const adminLimited = "too many refused requests from this address: retry later"

// admin guards an admin route with the bearer token. A request without a
// valid one is counted against its address, logged (at most once per
// address and period) and told to the Alerter; past the limit it is
// answered 429. A valid token is never limited, and its index and the
// client address name the actor of what the request changes.
func (h *Handler) admin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ip := httpx.ClientIP(r, h.trusted)
		index, ok := -1, false
		if got, found := bearerToken(r); found {
			index, ok = adminTokenIndex(h.admins, got)
		}
		if !ok {
			h.refuseAdmin(w, r, ip)
			return
		}
		if r.Method == http.MethodPost && !isAdminJSON(r.Header.Get("Content-Type")) {
			httpx.WriteError(w, http.StatusUnsupportedMediaType, "content type must be application/json")
			return
		}
		next(w, withActor(r, slog.String("client_ip", ip), slog.Int("token", index)))
	}
}

// refuseAdmin answers a request without a valid admin token: 401, or 429
// once its address has used up its refusals; both count as a refusal.
func (h *Handler) refuseAdmin(w http.ResponseWriter, r *http.Request, ip string) {
	wait, limited := h.refusals.Limited(ip)
	if a := h.alerter; a != nil {
		a.Refused()
	}
	if logIt, n := h.refusals.Refuse(ip); logIt {
		h.logger.LogAttrs(context.WithoutCancel(r.Context()), slog.LevelWarn, "tds: admin request refused",
			slog.String("client_ip", ip), slog.String("path", r.URL.Path), slog.Int("refused", n))
	}
	if limited {
		w.Header().Set("Retry-After", strconv.Itoa(max(int(math.Ceil(wait.Seconds())), 1)))
		httpx.WriteError(w, http.StatusTooManyRequests, adminLimited)
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="tds"`)
	httpx.WriteError(w, http.StatusUnauthorized, adminUnauthorized)
}

// isAdminJSON tells whether an admin POST is declared JSON. Every admin
// POST must be, even one without a body: a browser sends that content type
// across origins only after a CORS preflight, which tds never approves, so
// no other site can make a logged-in browser change the queue.
func isAdminJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// adminError answers an error of the core: 404, 503 or, logged, 500.
func (h *Handler) adminError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, tds.ErrNotFound):
		httpx.WriteError(w, http.StatusNotFound, httpx.PublicError(err))
	case errors.Is(err, tds.ErrDatabaseUnavailable):
		httpx.WriteUnavailable(w, h.retryAfter)
	default:
		h.logger.LogAttrs(r.Context(), slog.LevelError, "tds: admin request failed",
			slog.String("path", r.URL.Path), slog.Any("error", err))
		httpx.WriteError(w, http.StatusInternalServerError, "internal error")
	}
}

// statsResponse is the answer of GET /queue/stats: the queue's statistics
// and, under the name the first version of tds gave it, the number of
// jobs, so a client written against it reads the answer unchanged.
type statsResponse struct {
	*tds.QueueStats
	TotalEvents int64 `json:"total_events"`
}

func (h *Handler) serveQueueStats(w http.ResponseWriter, r *http.Request) {
	s, err := h.queue.Stats(r.Context())
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, statsResponse{QueueStats: s, TotalEvents: s.TotalJobs})
}

// eventsResponse is a page of inbox events; NextBeforeID, when set, is the
// before_id of the next page.
type eventsResponse struct {
	Success      bool             `json:"success"`
	Events       []tds.InboxEvent `json:"events"`
	NextBeforeID int64            `json:"next_before_id,omitempty"`
}

// throughputResponse is the answer of GET /queue/throughput.
type throughputResponse struct {
	Success bool                   `json:"success"`
	Minutes []tds.ThroughputMinute `json:"minutes"`
}

func (h *Handler) serveThroughput(w http.ResponseWriter, r *http.Request) {
	m, err := h.queue.Throughput(r.Context())
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, throughputResponse{Success: true, Minutes: m})
}

func (h *Handler) serveListEvents(w http.ResponseWriter, r *http.Request) {
	f, err := eventFilterOf(r.URL.Query())
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	evs, err := h.inbox.List(r.Context(), f)
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	resp := eventsResponse{Success: true, Events: evs}
	if len(evs) == f.Limit {
		resp.NextBeforeID = evs[len(evs)-1].ID
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}

// eventFilterOf reads the filter of GET /admin/events (and the
// dashboard's events page).
func eventFilterOf(v url.Values) (tds.InboxFilter, error) {
	q := queryParams{v: v}
	f := tds.InboxFilter{
		Source:     q.text("source"),
		EntityType: q.text("entity_type"),
		EntityID:   q.text("entity_id"),
		EventType:  q.text("event_type"),
		Valid:      q.boolean("valid"),
		Queued:     q.boolean("queued"),
		Processed:  q.boolean("processed"),
		Status:     q.eventStatus("status"),
		Since:      q.time("since"),
		Until:      q.time("until"),
		Page:       q.page(),
	}
	return f, q.err
}

// eventResponse is one inbox event with its queue entry, if it was queued,
// and every failed attempt.
type eventResponse struct {
	Success  bool            `json:"success"`
	Event    *tds.InboxEvent `json:"event"`
	Job      *tds.Job        `json:"job"`
	Attempts []tds.Attempt   `json:"attempts"`
}

func (h *Handler) serveEvent(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	resp, err := h.eventDetail(r.Context(), id)
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}

// eventDetail reads event id, its job if it was queued, and the job's
// failed attempts.
func (h *Handler) eventDetail(ctx context.Context, id int64) (*eventResponse, error) {
	ev, err := h.inbox.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	resp := &eventResponse{Success: true, Event: ev, Attempts: []tds.Attempt{}}
	job, err := h.queue.GetByInboxEvent(ctx, id)
	switch {
	case errors.Is(err, tds.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		resp.Job = job
		attempts, err := h.queue.Attempts(ctx, job.ID)
		if err != nil {
			return nil, err
		}
		if attempts != nil {
			resp.Attempts = attempts
		}
	}
	return resp, nil
}

type deadLettersResponse struct {
	Success      bool      `json:"success"`
	DeadLetters  []tds.Job `json:"dead_letters"`
	NextBeforeID int64     `json:"next_before_id,omitempty"`
}

// deadLetterFilterOf reads the filter of GET /admin/dead-letters (and the
// dashboard's dead letters page).
func deadLetterFilterOf(v url.Values) (tds.DeadLetterFilter, error) {
	q := queryParams{v: v}
	f := tds.DeadLetterFilter{
		EntityType: q.text("entity_type"),
		ErrorCode:  q.text("error_code"),
		Since:      q.time("since"),
		Until:      q.time("until"),
		Page:       q.page(),
	}
	return f, q.err
}

func (h *Handler) serveListDeadLetters(w http.ResponseWriter, r *http.Request) {
	f, err := deadLetterFilterOf(r.URL.Query())
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	jobs, err := h.queue.ListDeadLetters(r.Context(), f)
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	resp := deadLettersResponse{Success: true, DeadLetters: jobs}
	if resp.DeadLetters == nil {
		resp.DeadLetters = []tds.Job{}
	}
	if len(jobs) == f.Limit {
		resp.NextBeforeID = jobs[len(jobs)-1].ID
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}

// errorCodesResponse is the answer of GET /admin/dead-letters/error-codes.
type errorCodesResponse struct {
	Success    bool                 `json:"success"`
	ErrorCodes []tds.ErrorCodeCount `json:"error_codes"`
}

// serveDeadLetterCodes lists the error codes of the dead letters there,
// with their counts: the values the error_code filter can take.
func (h *Handler) serveDeadLetterCodes(w http.ResponseWriter, r *http.Request) {
	codes, err := h.queue.DeadLetterErrorCodes(r.Context())
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, errorCodesResponse{Success: true, ErrorCodes: codes})
}

type jobResponse struct {
	Success bool     `json:"success"`
	Message string   `json:"message"`
	Job     *tds.Job `json:"job"`
}

func (h *Handler) serveRetryDeadLetter(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	job, err := h.queue.RetryDeadLetter(r.Context(), id)
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: dead letter retried", slog.Int64("job_id", id), actor(r))
	httpx.WriteJSON(w, http.StatusOK, jobResponse{Success: true, Message: "dead letter queued again", Job: job})
}

// retryRequest is the body of POST /admin/dead-letters/retry. It names a
// filter, or says "all": true; an empty body retries nothing, so a stray
// request cannot requeue every dead letter.
type retryRequest struct {
	EntityType string    `json:"entity_type"`
	ErrorCode  string    `json:"error_code"`
	Since      time.Time `json:"since"`
	Until      time.Time `json:"until"`
	All        bool      `json:"all"`
	DryRun     bool      `json:"dry_run"`
}

// hasFilter tells whether the request narrows the dead letters down.
func (r *retryRequest) hasFilter() bool {
	return r.EntityType != "" || r.ErrorCode != "" || !r.Since.IsZero() || !r.Until.IsZero()
}

type retryResponse struct {
	Success bool   `json:"success"`
	DryRun  bool   `json:"dry_run"`
	Count   int64  `json:"count"`
	Message string `json:"message"`
}

func (h *Handler) serveRetryDeadLetters(w http.ResponseWriter, r *http.Request) {
	var req retryRequest
	if !readJSONBody(w, r, &req) {
		return
	}
	if dry := r.URL.Query().Get("dry_run"); dry != "" {
		b, err := strconv.ParseBool(dry)
		if err != nil {
			httpx.WriteError(w, http.StatusBadRequest, "dry_run must be true or false")
			return
		}
		req.DryRun = req.DryRun || b
	}
	switch {
	case !req.All && !req.hasFilter():
		httpx.WriteError(w, http.StatusBadRequest, `name a filter (entity_type, error_code, since, until) or say "all": true`)
		return
	case req.All && req.hasFilter():
		httpx.WriteError(w, http.StatusBadRequest, `"all": true retries every dead letter: give it without a filter`)
		return
	}
	if err := errors.Join(checkFilterText("entity_type", req.EntityType), checkFilterText("error_code", req.ErrorCode),
		checkFilterTime("since", req.Since), checkFilterTime("until", req.Until)); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	f := tds.DeadLetterFilter{EntityType: req.EntityType, ErrorCode: req.ErrorCode, Since: req.Since, Until: req.Until}
	n, err := h.queue.RetryDeadLetters(r.Context(), f, req.DryRun)
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	msg := fmt.Sprintf("%d dead letters queued again", n)
	if req.DryRun {
		msg = fmt.Sprintf("dry run: %d dead letters would be queued again", n)
	} else {
		h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: dead letters retried", slog.Int64("count", n), actor(r))
	}
	httpx.WriteJSON(w, http.StatusOK, retryResponse{Success: true, DryRun: req.DryRun, Count: n, Message: msg})
}

// discardRequest is the body of POST /admin/dead-letters/{id}/discard.
type discardRequest struct {
	Reason string `json:"reason"`
}

func (h *Handler) serveDiscardDeadLetter(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var req discardRequest
	if !readJSONBody(w, r, &req) {
		return
	}
	if strings.TrimSpace(req.Reason) == "" {
		httpx.WriteError(w, http.StatusBadRequest, `a reason is required: {"reason": "..."}`)
		return
	}
	if err := h.queue.DiscardDeadLetter(r.Context(), id, req.Reason); err != nil {
		h.adminError(w, r, err)
		return
	}
	job, err := h.queue.Get(r.Context(), id)
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: dead letter discarded",
		slog.Int64("job_id", id), slog.String("reason", req.Reason), actor(r))
	httpx.WriteJSON(w, http.StatusOK, jobResponse{Success: true, Message: "dead letter discarded", Job: job})
}

// pathID parses the {id} path value, answering 400 when it is not a
// positive integer.
func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		httpx.WriteError(w, http.StatusBadRequest, "id must be a positive integer")
		return 0, false
	}
	return id, true
}

// readJSONBody decodes an optional JSON body into v, answering 400 or 413
// when it cannot.
func readJSONBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, status, msg := httpx.ReadBody(w, r, maxAdminBodyBytes)
	ok := status == 0
	if !ok {
		httpx.WriteError(w, status, msg)
	}
	if !ok {
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return true
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "malformed JSON body: "+httpx.JSONErrText(err))
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		httpx.WriteError(w, http.StatusBadRequest, "malformed JSON body: data after the object")
		return false
	}
	return true
}

// queryParams parses query parameters, keeping the first error.
type queryParams struct {
	v   url.Values
	err error
}

func (q *queryParams) fail(format string, args ...any) {
	if q.err == nil {
		q.err = fmt.Errorf(format, args...)
	}
}

func (q *queryParams) boolean(name string) *bool {
	s := q.v.Get(name)
	if s == "" {
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		q.fail("%s must be true or false", name)
		return nil
	}
	return &b
}

func (q *queryParams) time(name string) time.Time {
	s := q.v.Get(name)
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		q.fail("%s must be an RFC 3339 time such as 2026-11-20T10:00:00Z", name)
		return time.Time{}
	}
	if err := checkFilterTime(name, t); err != nil {
		q.fail("%s", err)
	}
	return t
}

// eventStatus is an event status parameter: one of [tds.EventStatuses].
func (q *queryParams) eventStatus(name string) tds.EventStatus {
	s := tds.EventStatus(q.v.Get(name))
	if s != "" && !slices.Contains(tds.EventStatuses, s) {
		names := make([]string, len(tds.EventStatuses))
		for i, st := range tds.EventStatuses {
			names[i] = string(st)
		}
		q.fail("%s must be one of %s", name, strings.Join(names, ", "))
		return ""
	}
	return s
}

// text is a string parameter, which must be one the databases can hold.
func (q *queryParams) text(name string) string {
	s := q.v.Get(name)
	if err := checkFilterText(name, s); err != nil {
		q.fail("%s", err)
	}
	return s
}

// The range of a filter's times: what both databases hold (PostgreSQL has
// no year 0, and a time is compared in UTC), so that a filter outside it is
// the client's 400, not the database's 500. Nothing tds stores is outside.
var (
	minFilterTime = time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC)
	maxFilterTime = time.Date(10000, time.January, 1, 0, 0, 0, 0, time.UTC)
)

// checkFilterTime refuses a filter time outside years 1 to 9999 in UTC.
// The zero time means no bound.
func checkFilterTime(name string, t time.Time) error {
	if t.IsZero() || (!t.Before(minFilterTime) && t.Before(maxFilterTime)) {
		return nil
	}
	return fmt.Errorf("%s must be a time from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z", name)
}

// checkFilterText refuses a filter string no database column holds: one
// with a NUL byte (PostgreSQL's text cannot) or that is not UTF-8.
func checkFilterText(name, s string) error {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%s must not contain a NUL byte", name)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s must be UTF-8 text", name)
	}
	return nil
}

// page is the page named by limit and before_id.
func (q *queryParams) page() tds.Page {
	return tds.Page{Limit: q.limit(), BeforeID: q.id("before_id")}
}

func (q *queryParams) id(name string) int64 {
	s := q.v.Get(name)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		q.fail("%s must be a positive integer", name)
	}
	return n
}

// limit is the page size: limit, or [tds.DefaultListLimit], at most
// [MaxListLimit].
func (q *queryParams) limit() int {
	s := q.v.Get("limit")
	if s == "" {
		return tds.DefaultListLimit
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxListLimit {
		q.fail("limit must be an integer from 1 to %d", MaxListLimit)
		return tds.DefaultListLimit
	}
	return n
}
