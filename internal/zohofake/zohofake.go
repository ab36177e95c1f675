// Package zohofake is an in-process fake of the Zoho Books and Zoho
// Inventory APIs and of Zoho's OAuth token endpoint, built from Zoho's
// documented answer shapes (docs/zoho-api.md lists what is documented and
// what is assumed). One httptest.Server serves the token endpoint and the
// API under /books/v3 and /inventory/v1, so a client's accounts and API
// URLs both point at Server.URL. It is safe for concurrent use.
package zohofake

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configures a Server. Every field has a default.
type Options struct {
	// The credentials the token endpoint accepts and the organisation the
	// API serves. Default to "client-id", "client-secret", "refresh-token"
	// and "org-1".
	ClientID, ClientSecret, RefreshToken, OrganizationID string
	// TokenTTL is the access tokens' lifetime, sent as expires_in. Defaults
	// to 1h. (A client refreshing 5 minutes early refreshes on every call
	// when it is shorter than that.)
	TokenTTL time.Duration
	// NotFoundStatus is the HTTP status of a missing record's answer, whose
	// body is {"code":1002,"message":"… does not exist."}. Defaults to 404.
	NotFoundStatus int
	// Now tells the time for token expiry and the refresh limit (an addition
	// to the agreed surface, so tests with a fake clock can move past the
	// 10-minute window). Defaults to time.Now.
	Now func() time.Time
	// Addr is the address to listen on, such as "127.0.0.1:8002", so that a
	// fake run by hand keeps its URL from one start to the next. Defaults
	// to a free loopback port.
	Addr string
}

// Stats counts the traffic a Server answered.
type Stats struct {
	APICalls       int         // API requests answered, any status
	ListCalls      int         // list requests answered with 200
	DetailCalls    int         // detail requests answered (200 or not found)
	TokenRefreshes int         // token endpoint requests, any outcome
	Status         map[int]int // API requests per HTTP status
}

// moduleSpec describes one Zoho module the fake serves. reportName is the
// list's page_context.report_name, sent only where Zoho's API description
// has one (docs/zoho-api.md).
type moduleSpec struct {
	record, idField, noun, reportName string
}

// modules the fake knows, keyed by list path without the slash.
var modules = map[string]moduleSpec{
	"items":       {"item", "item_id", "Item", ""},
	"contacts":    {"contact", "contact_id", "Contact", ""},
	"invoices":    {"invoice", "invoice_id", "Invoice", "Invoices"},
	"bills":       {"bill", "bill_id", "Bill", ""},
	"creditnotes": {"creditnote", "creditnote_id", "Credit Note", ""},
	"pricebooks":  {"pricebook", "pricebook_id", "Price Book", ""},
}

// Modules returns the names of the modules the fake serves (the list
// paths without the slash, such as "items"), sorted.
func Modules() []string { return slices.Sorted(maps.Keys(modules)) }

// IDField returns the field that holds the id of module's records, such as
// "item_id" for "items", and whether the fake serves module.
func IDField(module string) (string, bool) {
	spec, ok := modules[module]
	return spec.idField, ok
}

const (
	maxPerPage    = 200
	refreshLimit  = 10
	refreshWindow = 10 * time.Minute
	// codeInvalidToken is the JSON code of a 401; assumed (see docs/zoho-api.md).
	codeInvalidToken = 14
	codeNotFound     = 1002
	// appliedFilter is page_context.applied_filter: the description has the
	// field, Zoho's reference examples of unfiltered lists this value.
	appliedFilter = "Status.All"
)

// store holds one module's records in insertion order.
type store struct {
	recs   []map[string]any
	idx    map[string]int              // id → position in recs
	sorted map[string][]map[string]any // cached orders by "column/order"
}

// Server is a running fake. Close it when done.
type Server struct {
	srv  *httptest.Server
	opts Options

	mu        sync.Mutex
	data      map[string]*store
	tokens    map[string]time.Time // access token → expiry
	tokenSeq  int
	refreshes []time.Time
	failN     int
	failCode  int
	failAfter string
	down      bool
	onRequest func(*http.Request)
	stats     Stats
}

// New starts a Server. It panics when it cannot listen on opts.Addr; see
// Listen for an error instead.
func New(opts Options) *Server {
	s, err := Listen(opts)
	if err != nil {
		panic(fmt.Sprintf("zohofake: %v", err))
	}
	return s
}

// Listen starts a Server, or says why it cannot listen on opts.Addr.
func Listen(opts Options) (*Server, error) {
	if opts.ClientID == "" {
		opts.ClientID = "client-id"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "client-secret"
	}
	if opts.RefreshToken == "" {
		opts.RefreshToken = "refresh-token"
	}
	if opts.OrganizationID == "" {
		opts.OrganizationID = "org-1"
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.NotFoundStatus == 0 {
		opts.NotFoundStatus = http.StatusNotFound
	}
	s := &Server{
		opts:   opts,
		data:   make(map[string]*store, len(modules)),
		tokens: map[string]time.Time{},
		stats:  Stats{Status: map[int]int{}},
	}
	for name := range modules {
		s.data[name] = &store{idx: map[string]int{}}
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	if opts.Addr != "" {
		l, err := net.Listen("tcp", opts.Addr)
		if err != nil {
			return nil, err
		}
		s.srv.Listener.Close()
		s.srv.Listener = l
	}
	s.srv.Start()
	return s, nil
}

// URL is the base URL of both the token endpoint and the API.
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

func (s *Server) module(name string) *store {
	st, ok := s.data[name]
	if !ok {
		panic(fmt.Sprintf("zohofake: unknown module %q", name))
	}
	return st
}

// Put inserts rec into module (e.g. "items"), or replaces the record with the
// same id field (e.g. item_id) in place, keeping its insertion position. The
// fake keeps a deep copy. It panics on an unknown module or a missing id.
func (s *Server) Put(module string, rec map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.module(module)
	idv, ok := rec[modules[module].idField]
	if !ok || idv == nil {
		panic(fmt.Sprintf("zohofake: Put %s: record has no %s", module, modules[module].idField))
	}
	id := idText(idv)
	cp := deepCopy(rec).(map[string]any)
	if i, ok := st.idx[id]; ok {
		st.recs[i] = cp
	} else {
		st.idx[id] = len(st.recs)
		st.recs = append(st.recs, cp)
	}
	st.sorted = nil
}

// idText is an id as the API's paths carry it: a string as it is, a number
// as JSON writes it. Zoho's reference examples send ids as strings, its API
// description types them as integers; a record decoded from JSON holds
// such a number as a float64, which fmt.Sprint would write as
// 4.60000000026049e+14 and no detail request would find.
func idText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32)
	case json.Number:
		return x.String()
	}
	return fmt.Sprint(v)
}

// Delete removes the record with id from module; a missing id is ignored.
func (s *Server) Delete(module, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.module(module)
	i, ok := st.idx[id]
	if !ok {
		return
	}
	delete(st.idx, id)
	st.recs = slices.Delete(st.recs, i, i+1)
	idField := modules[module].idField
	for j := i; j < len(st.recs); j++ {
		st.idx[idText(st.recs[j][idField])] = j
	}
	st.sorted = nil
}

// Get returns a copy of module's record with id.
func (s *Server) Get(module, id string) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.module(module)
	i, ok := st.idx[id]
	if !ok {
		return nil, false
	}
	return deepCopy(st.recs[i]).(map[string]any), true
}

// All returns copies of module's records in insertion order.
func (s *Server) All(module string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.module(module)
	out := make([]map[string]any, len(st.recs))
	for i, r := range st.recs {
		out[i] = deepCopy(r).(map[string]any)
	}
	return out
}

// Fail makes the next n API requests answer status (e.g. 429 or 503) with a
// Zoho error body, and a Retry-After header when retryAfter is not "".
func (s *Server) Fail(n int, status int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failCode, s.failAfter = n, status, retryAfter
}

// SetDown makes every API request answer 503 while down is true.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// ExpireTokens invalidates every access token issued so far: API requests
// carrying one answer 401 {"code":14,"message":"Invalid OAuth access token."}
// (the code is assumed, not documented).
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// OnRequest sets fn to be called at the start of each API request, before
// the answer is computed and without the fake's lock held (fn may call Put
// or Delete). nil clears it.
func (s *Server) OnRequest(fn func(r *http.Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onRequest = fn
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Status = maps.Clone(s.stats.Status)
	return st
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/oauth/v2/token" {
		s.serveToken(w, r)
		return
	}
	s.mu.Lock()
	fn := s.onRequest
	s.mu.Unlock()
	if fn != nil {
		fn(r)
	}
	status, body, header := s.answer(r)
	for k, v := range header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// answer computes an API answer under the lock and counts it.
func (s *Server) answer(r *http.Request) (int, []byte, map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	status, v, header, kind := s.route(r)
	s.stats.APICalls++
	s.stats.Status[status]++
	switch {
	case kind == "list" && status == http.StatusOK:
		s.stats.ListCalls++
	case kind == "detail":
		s.stats.DetailCalls++
	}
	body, err := json.Marshal(v)
	if err != nil {
		return http.StatusInternalServerError, errBody(1, "zohofake: encoding: "+err.Error()), nil
	}
	return status, body, header
}

func errBody(code int, msg string) []byte {
	b, _ := json.Marshal(map[string]any{"code": code, "message": msg})
	return b
}

func zerr(code int, msg string) map[string]any { return map[string]any{"code": code, "message": msg} }

// route decides the answer; s.mu is held.
func (s *Server) route(r *http.Request) (status int, v any, header map[string]string, kind string) {
	if s.down {
		return http.StatusServiceUnavailable, zerr(503, "Service temporarily unavailable."), nil, ""
	}
	if s.failN > 0 {
		s.failN--
		if s.failAfter != "" {
			header = map[string]string{"Retry-After": s.failAfter}
		}
		msg := "Internal error."
		if s.failCode == http.StatusTooManyRequests {
			msg = "You have made too many requests. Please try again after some time." // assumed wording
		}
		return s.failCode, zerr(s.failCode, msg), header, ""
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/books/v3/")
	if !ok {
		rest, ok = strings.CutPrefix(r.URL.Path, "/inventory/v1/")
	}
	name, id, hasID := strings.Cut(rest, "/")
	spec, known := modules[name]
	if !ok || !known || (hasID && (id == "" || strings.Contains(id, "/"))) {
		return http.StatusNotFound, zerr(5, "Invalid URL Passed"), nil, ""
	}
	if r.Method != http.MethodGet {
		return http.StatusMethodNotAllowed, zerr(5, "Method not allowed"), nil, ""
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Zoho-oauthtoken ")
	if exp, valid := s.tokens[tok]; !ok || !valid || !s.opts.Now().Before(exp) {
		return http.StatusUnauthorized, zerr(codeInvalidToken, "Invalid OAuth access token."), nil, ""
	}
	q := r.URL.Query()
	switch org := q.Get("organization_id"); {
	case org == "":
		return http.StatusBadRequest, zerr(6041, "organization_id is required."), nil, ""
	case org != s.opts.OrganizationID:
		return http.StatusBadRequest, zerr(6041, "This user is not associated with the organization."), nil, ""
	}
	st := s.data[name]
	if hasID {
		i, found := st.idx[id]
		if !found {
			return s.opts.NotFoundStatus, zerr(codeNotFound, spec.noun+" does not exist."), nil, "detail"
		}
		return http.StatusOK, map[string]any{"code": 0, "message": "success", spec.record: st.recs[i]}, nil, "detail"
	}
	return s.list(name, spec, st, q)
}

func (s *Server) list(name string, spec moduleSpec, st *store, q map[string][]string) (int, any, map[string]string, string) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	page, perPage := 1, maxPerPage
	if v := get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return http.StatusBadRequest, zerr(2, "Invalid value passed for page"), nil, "list"
		}
		page = n
	}
	if v := get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPerPage {
			return http.StatusBadRequest, zerr(2, "Invalid value passed for per_page"), nil, "list"
		}
		perPage = n
	}
	col, order := get("sort_column"), get("sort_order")
	switch col {
	case "", "created_time", "last_modified_time":
	default:
		return http.StatusBadRequest, zerr(2, "Invalid value passed for sort_column"), nil, "list"
	}
	switch order {
	case "", "A", "D":
	default:
		return http.StatusBadRequest, zerr(2, "Invalid value passed for sort_order"), nil, "list"
	}
	recs := st.recs
	if col != "" {
		recs = st.order(col, order == "D")
	}
	start := min((page-1)*perPage, len(recs))
	end := min(start+perPage, len(recs))
	out := make([]map[string]any, 0, end-start)
	for _, r := range recs[start:end] {
		out = append(out, summary(r))
	}
	pc := map[string]any{
		"page":           page,
		"per_page":       perPage,
		"has_more_page":  end < len(recs),
		"applied_filter": appliedFilter,
		"sort_column":    col,
		"sort_order":     order,
	}
	if spec.reportName != "" {
		pc["report_name"] = spec.reportName
	}
	return http.StatusOK, map[string]any{
		"code":         0,
		"message":      "success",
		name:           out,
		"page_context": pc,
	}, nil, "list"
}

// order returns recs stably sorted by col (ties keep insertion order),
// cached until the next Put or Delete.
func (st *store) order(col string, desc bool) []map[string]any {
	key := col + "/A"
	if desc {
		key = col + "/D"
	}
	if v, ok := st.sorted[key]; ok {
		return v
	}
	type keyed struct {
		t   time.Time
		s   string
		rec map[string]any
	}
	ks := make([]keyed, len(st.recs))
	for i, r := range st.recs {
		s, _ := r[col].(string)
		t, _ := time.Parse("2006-01-02T15:04:05-0700", s)
		ks[i] = keyed{t, s, r}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		c := a.t.Compare(b.t)
		if c == 0 {
			c = strings.Compare(a.s, b.s)
		}
		if desc {
			c = -c
		}
		return c
	})
	out := make([]map[string]any, len(ks))
	for i, k := range ks {
		out[i] = k.rec
	}
	if st.sorted == nil {
		st.sorted = map[string][]map[string]any{}
	}
	st.sorted[key] = out
	return out
}

// summary keeps a record's top-level scalar fields, as Zoho's lists do.
func summary(rec map[string]any) map[string]any {
	out := make(map[string]any, len(rec))
	for k, v := range rec {
		if isScalar(v) {
			out[k] = v
		}
	}
	return out
}

func isScalar(v any) bool {
	switch v.(type) {
	case nil, string, bool, json.Number, float64, int, int64:
		return true
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.String:
		return true
	}
	return false
}

// deepCopy copies the maps and slices JSON-like values are built from.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	case []map[string]any:
		s := make([]map[string]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e).(map[string]any)
		}
		return s
	}
	return v
}

// serveToken implements POST /oauth/v2/token for grant_type=refresh_token.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.TokenRefreshes++
	s.mu.Unlock()
	write := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	if r.Method != http.MethodPost {
		write(http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request"})
		return
	}
	if err := r.ParseForm(); err != nil {
		write(http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	switch {
	case r.Form.Get("grant_type") != "refresh_token":
		write(http.StatusOK, map[string]string{"error": "unsupported_grant_type"})
		return
	case r.Form.Get("client_id") != s.opts.ClientID || r.Form.Get("client_secret") != s.opts.ClientSecret:
		write(http.StatusOK, map[string]string{"error": "invalid_client"})
		return
	case r.Form.Get("refresh_token") != s.opts.RefreshToken:
		write(http.StatusOK, map[string]string{"error": "invalid_code"})
		return
	}
	s.mu.Lock()
	now := s.opts.Now()
	kept := s.refreshes[:0]
	for _, t := range s.refreshes {
		if now.Sub(t) < refreshWindow {
			kept = append(kept, t)
		}
	}
	s.refreshes = kept
	if len(s.refreshes) >= refreshLimit {
		s.mu.Unlock()
		write(http.StatusBadRequest, map[string]string{
			"error":             "Access Denied",
			"error_description": "You have made too many requests continuously. Please try again after some time.",
		})
		return
	}
	s.refreshes = append(s.refreshes, now)
	s.tokenSeq++
	tok := fmt.Sprintf("1000.fake-access-%d", s.tokenSeq)
	s.tokens[tok] = now.Add(s.opts.TokenTTL)
	s.mu.Unlock()
	write(http.StatusOK, map[string]any{
		"access_token": tok,
		"expires_in":   int(s.opts.TokenTTL / time.Second),
		"api_domain":   s.srv.URL,
		"token_type":   "Bearer",
	})
}
