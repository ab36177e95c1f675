// Package zoho is tds's client for the Zoho Books and Zoho Inventory REST
// APIs: the OAuth refresh-token flow, paging through a module's list and
// fetching one record, with client-side pacing and retries that follow
// Zoho's limits. It is internal: the reconciler is its user.
package zoho

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tdscore/tds/internal/backoff"
	"github.com/tdscore/tds/internal/httpx"
)

const (
	// maxBody caps an API answer so a hostile server cannot exhaust memory.
	maxBody = 32 << 20
	// maxRetryAfter caps a server-requested wait.
	maxRetryAfter = 10 * time.Minute
	// retryJitter is the backoff's multiplicative jitter.
	retryJitter = 0.2
	// maxMessage caps a server message kept in an error.
	maxMessage = 512
	// codeNotFound is Zoho's JSON code for a record that does not exist.
	codeNotFound = 1002
)

// ErrNotFound reports a record that does not exist: HTTP 404 or Zoho's JSON
// code 1002. errors.Is(err, ErrNotFound) holds for such an *APIError.
var ErrNotFound = errors.New("zoho: record not found")

// APIError is a non-success answer from the API: its HTTP status and Zoho's
// {"code":…,"message":…} body (Code is 0 and Message the status text when the
// body is not Zoho's JSON).
type APIError struct {
	Endpoint   string // e.g. "GET /items"
	StatusCode int
	Code       int
	Message    string
}

// Error describes the answer; it never contains credentials or tokens.
func (e *APIError) Error() string {
	return fmt.Sprintf("zoho: %s: HTTP %d, code %d: %s", e.Endpoint, e.StatusCode, e.Code, e.Message)
}

// Is reports ErrNotFound for HTTP 404 and for code 1002.
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && (e.StatusCode == http.StatusNotFound || e.Code == codeNotFound)
}

// Client calls one organisation's Zoho Books or Inventory API. It is safe for
// concurrent use; concurrent callers share the token and the limiter.
type Client struct {
	cfg      Config
	accounts string // accounts base URL
	preset   string // API base URL of the data centre
	prefix   string // product path prefix
	limiter  *rate.Limiter

	mu        sync.Mutex
	token     string
	expiry    time.Time
	apiDomain string
	refreshes []time.Time // refresh requests within the window
	inflight  *refreshCall
}

// New validates cfg and returns a client. It makes no request: the first
// call fetches the token. Errors name the offending field and never echo a
// secret.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	dc := dataCenters[cfg.DataCenter]
	prefix, _ := cfg.Product.prefix()
	c := &Client{cfg: cfg, accounts: dc.accounts, preset: dc.api, prefix: prefix}
	if cfg.AccountsURL != "" {
		c.accounts = cfg.AccountsURL
	}
	if cfg.RequestsPerMinute > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(float64(cfg.RequestsPerMinute)/60), 1)
	}
	return c, nil
}

// APIBase returns the base URL calls go to, product prefix included, e.g.
// https://www.zohoapis.com/books/v3: Config.APIURL if set, else the last
// token's api_domain, else the data centre's API host.
func (c *Client) APIBase() string {
	if c.cfg.APIURL != "" {
		return c.cfg.APIURL + c.prefix
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiDomain != "" {
		return c.apiDomain + c.prefix
	}
	return c.preset + c.prefix
}

// Module names the paths and JSON keys of one Zoho module, e.g.
// {ListPath: "/items", ListKey: "items", DetailPath: "/items", RecordKey: "item"}.
type Module struct {
	ListPath, ListKey, DetailPath, RecordKey string
}

// ListRequest selects one page of a list. Page defaults to 1, PerPage to
// 200; SortColumn and SortOrder ("A" or "D") are sent only when set.
type ListRequest struct {
	Page, PerPage         int
	SortColumn, SortOrder string
}

// Page is one page of a list: the records as Zoho sent them (list answers
// carry summary fields only), whether more pages follow, and the page number.
type Page struct {
	Records []json.RawMessage
	HasMore bool
	Page    int
}

// List fetches one page of m's list.
func (c *Client) List(ctx context.Context, m Module, req ListRequest) (Page, error) {
	if req.Page <= 0 {
		req.Page = 1
	}
	if req.PerPage <= 0 {
		req.PerPage = 200
	}
	q := url.Values{}
	q.Set("page", strconv.Itoa(req.Page))
	q.Set("per_page", strconv.Itoa(req.PerPage))
	if req.SortColumn != "" {
		q.Set("sort_column", req.SortColumn)
	}
	if req.SortOrder != "" {
		q.Set("sort_order", req.SortOrder)
	}
	endpoint := "GET " + m.ListPath
	body, err := c.call(ctx, endpoint, m.ListPath, q)
	if err != nil {
		return Page{}, err
	}
	var ans struct {
		PageContext *struct {
			Page        int  `json:"page"`
			HasMorePage bool `json:"has_more_page"`
		} `json:"page_context"`
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return Page{}, fmt.Errorf("zoho: %s: decoding answer: %w", endpoint, err)
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return Page{}, fmt.Errorf("zoho: %s: decoding page_context: %w", endpoint, err)
	}
	raw, ok := fields[m.ListKey]
	if !ok {
		return Page{}, fmt.Errorf("zoho: %s: answer has no %q", endpoint, m.ListKey)
	}
	p := Page{Page: req.Page}
	if err := json.Unmarshal(raw, &p.Records); err != nil {
		return Page{}, fmt.Errorf("zoho: %s: decoding %q: %w", endpoint, m.ListKey, err)
	}
	if ans.PageContext != nil {
		p.HasMore = ans.PageContext.HasMorePage
		if ans.PageContext.Page > 0 {
			p.Page = ans.PageContext.Page
		}
	}
	return p, nil
}

// Get fetches one record of m and returns the object under m.RecordKey. A
// missing record is an error matching ErrNotFound; anything but an object
// under the key (such as the one-element array of Zoho's API description)
// is an error naming what came.
func (c *Client) Get(ctx context.Context, m Module, id string) (json.RawMessage, error) {
	if id == "" {
		return nil, errors.New("zoho: Get: empty id")
	}
	endpoint := "GET " + m.DetailPath + "/{id}"
	body, err := c.call(ctx, endpoint, m.DetailPath+"/"+url.PathEscape(id), nil)
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, fmt.Errorf("zoho: %s: decoding answer: %w", endpoint, err)
	}
	rec, ok := fields[m.RecordKey]
	if !ok || string(rec) == "null" {
		return nil, fmt.Errorf("zoho: %s: answer has no %q", endpoint, m.RecordKey)
	}
	// Zoho's reference answers one object; the Ballerina-published API
	// description has an array under the key (docs/zoho-api.md). Say which
	// shape came rather than hand on something that is not a record.
	if t := bytes.TrimLeft(rec, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, fmt.Errorf("zoho: %s: answer's %q is %s, not an object", endpoint, m.RecordKey, jsonKind(t))
	}
	return rec, nil
}

// jsonKind names the kind of the JSON value v starts.
func jsonKind(v []byte) string {
	if len(v) == 0 {
		return "empty"
	}
	switch v[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

// call sends GET base+path?query with retries and returns the body of a
// successful answer (HTTP 2xx and code 0).
func (c *Client) call(ctx context.Context, endpoint, path string, q url.Values) ([]byte, error) {
	if q == nil {
		q = url.Values{}
	}
	q.Set("organization_id", c.cfg.OrganizationID)
	var (
		retries   int
		stale     string // token refused with a 401
		refreshed bool   // the one 401-refresh has been spent
	)
	for {
		if h := c.cfg.Hooks.Request; h != nil {
			if err := h(ctx, endpoint); err != nil {
				return nil, fmt.Errorf("zoho: %s: %w", endpoint, err)
			}
		}
		if err := c.wait(ctx); err != nil {
			return nil, fmt.Errorf("zoho: %s: %w", endpoint, err)
		}
		tok, err := c.accessToken(ctx, stale)
		if err != nil {
			return nil, fmt.Errorf("zoho: %s: %w", endpoint, err)
		}
		status, body, retryAfter, err := c.send(ctx, endpoint, c.APIBase()+path+"?"+q.Encode(), tok)
		var delay time.Duration
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, fmt.Errorf("zoho: %s: %w", endpoint, ctx.Err())
		case err != nil:
			// Transport error (or an oversized body): retry with backoff.
			delay = c.backoff(retries + 1)
		default:
			apiErr := c.apiError(endpoint, status, body)
			switch {
			case apiErr == nil:
				return body, nil
			case status == http.StatusUnauthorized && !refreshed:
				refreshed, stale = true, tok
				continue // not a retry: the call gets one fresh token
			case status == http.StatusTooManyRequests:
				if d, ok := c.parseRetryAfter(retryAfter); ok {
					delay = d
				} else {
					delay = c.backoff(retries + 1)
				}
			case status >= 500:
				delay = c.backoff(retries + 1)
			default:
				return nil, apiErr
			}
			err = apiErr
		}
		if retries >= c.cfg.MaxRetries {
			if _, ok := err.(*APIError); ok {
				return nil, err
			}
			return nil, fmt.Errorf("zoho: %s: %w", endpoint, err)
		}
		retries++
		if err := c.cfg.Sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("zoho: %s: waiting to retry: %w", endpoint, err)
		}
	}
}

// wait paces requests through the limiter, sleeping via cfg.Sleep.
func (c *Client) wait(ctx context.Context) error {
	if c.limiter == nil {
		return ctx.Err()
	}
	now := c.cfg.Now()
	r := c.limiter.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		if err := c.cfg.Sleep(ctx, d); err != nil {
			r.CancelAt(c.cfg.Now())
			return err
		}
	}
	return ctx.Err()
}

// send performs one request. err is a transport error or an oversized body.
func (c *Client) send(ctx context.Context, endpoint, u, tok string) (status int, body []byte, retryAfter string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, "", err
	}
	req.Header.Set("Authorization", "Zoho-oauthtoken "+tok)
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		if h := c.cfg.Hooks.Response; h != nil {
			h(endpoint, 0, time.Since(start))
		}
		return 0, nil, "", c.scrubErr(err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if h := c.cfg.Hooks.Response; h != nil {
		h(endpoint, resp.StatusCode, time.Since(start))
	}
	if err != nil {
		return 0, nil, "", c.scrubErr(err)
	}
	if len(body) > maxBody {
		return 0, nil, "", fmt.Errorf("answer larger than %d bytes", maxBody)
	}
	return resp.StatusCode, body, resp.Header.Get("Retry-After"), nil
}

// apiError returns nil for a success (2xx with code 0 or no code), else the
// APIError describing the answer.
func (c *Client) apiError(endpoint string, status int, body []byte) *APIError {
	var ans struct {
		Code    *int   `json:"code"`
		Message string `json:"message"`
	}
	jsonErr := json.Unmarshal(body, &ans)
	if status >= 200 && status < 300 && jsonErr == nil && (ans.Code == nil || *ans.Code == 0) {
		return nil
	}
	e := &APIError{Endpoint: endpoint, StatusCode: status}
	if jsonErr == nil && ans.Code != nil {
		e.Code = *ans.Code
		e.Message = c.scrub(truncate(ans.Message))
	}
	if e.Message == "" {
		if jsonErr != nil && status >= 200 && status < 300 {
			e.Message = "answer is not JSON"
		} else {
			e.Message = http.StatusText(status)
		}
	}
	return e
}

// backoff returns the jittered delay before retry number attempt (from 1).
func (c *Client) backoff(attempt int) time.Duration {
	return backoff.Exponential(attempt, c.cfg.RetryBase, c.cfg.RetryMax, retryJitter, rand.Float64())
}

// parseRetryAfter reads delta-seconds or an HTTP date, capped at
// maxRetryAfter.
func (c *Client) parseRetryAfter(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(t.Sub(c.cfg.Now()), 0)
	} else {
		return 0, false
	}
	return min(d, maxRetryAfter), true
}

// scrub removes the credentials and the current token from s.
func (c *Client) scrub(s string) string {
	c.mu.Lock()
	secrets := []string{c.cfg.ClientSecret, c.cfg.RefreshToken, c.cfg.ClientID, c.token}
	c.mu.Unlock()
	for _, v := range secrets {
		if len(v) >= 4 {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}

// scrubErr returns err, or a copy without secrets when its text has any.
// Context errors stay matchable with errors.Is.
func (c *Client) scrubErr(err error) error {
	msg := err.Error()
	clean := c.scrub(msg)
	if clean == msg {
		return err
	}
	return httpx.Scrubbed(clean, err)
}

// truncate caps a server message.
func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage] + "…"
}
