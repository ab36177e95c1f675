package zoho

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tdscore/tds/internal/backoff"
	"github.com/tdscore/tds/internal/zohofake"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var items = Module{ListPath: "/items", ListKey: "items", DetailPath: "/items", RecordKey: "item"}

// clock is a fake time source; sleeps advance it and are recorded.
type clock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *clock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

func (c *clock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

type bundle struct {
	fake   *zohofake.Server
	clock  *clock
	client *Client
}

// setup starts a fake Zoho and a client for it; edit adjusts the config.
func setup(t *testing.T, opts zohofake.Options, edit func(*Config)) bundle {
	t.Helper()
	clk := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	opts.Now = clk.Now
	fake := zohofake.New(opts)
	t.Cleanup(fake.Close)
	cfg := Config{
		ClientID: "client-id", ClientSecret: "client-secret", RefreshToken: "refresh-token",
		OrganizationID: "org-1", AccountsURL: fake.URL(), APIURL: fake.URL(),
		RequestsPerMinute: -1, Now: clk.Now, Sleep: clk.Sleep,
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(cfg)
	require.NoError(t, err)
	return bundle{fake: fake, clock: clk, client: c}
}

func putItems(fake *zohofake.Server, n int) {
	for i := range n {
		fake.Put("items", map[string]any{
			"item_id":            fmt.Sprintf("%d", 1000+i),
			"name":               fmt.Sprintf("item %d", i),
			"rate":               float64(i) + 0.5,
			"created_time":       time.Date(2025, 1, 1, 0, 0, i, 0, time.UTC).Format("2006-01-02T15:04:05-0700"),
			"last_modified_time": time.Date(2025, 2, 1, 0, 0, n-i, 0, time.UTC).Format("2006-01-02T15:04:05-0700"),
			"tags":               []any{map[string]any{"tag_id": "t"}},
		})
	}
}

func TestNewValidation(t *testing.T) {
	t.Parallel()
	valid := func() Config {
		return Config{ClientID: "id-123456", ClientSecret: "secret-abcdef", RefreshToken: "1000.refresh-xyz", OrganizationID: "42"}
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"missing all", func(c *Config) { *c = Config{} }, []string{"ClientID is required", "ClientSecret is required", "RefreshToken is required", "OrganizationID is required"}},
		{"unknown dc", func(c *Config) { c.DataCenter = "xx" }, []string{`DataCenter "xx" unknown (want one of ca, com, com.au, com.cn, eu, in, jp, sa)`}},
		{"unknown product", func(c *Config) { c.Product = "crm" }, []string{`Product "crm" unknown`}},
		{"accounts url path", func(c *Config) { c.AccountsURL = "https://x.example/oauth" }, []string{"AccountsURL: must be scheme://host[:port]"}},
		{"api url scheme", func(c *Config) { c.APIURL = "ftp://x.example" }, []string{"APIURL: scheme must be http or https"}},
		{"api url credentials", func(c *Config) { c.APIURL = "https://user:secret-abcdef@x.example" }, []string{"APIURL: must not carry credentials"}},
		{"negative backoff", func(c *Config) { c.RetryBase = -1 }, []string{"RetryBase must be >= 0"}},
		{"max below base", func(c *Config) { c.RetryBase, c.RetryMax = time.Minute, time.Second }, []string{"RetryMax (1s) must be >= RetryBase (1m0s)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.edit(&cfg)
			_, err := New(cfg)
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), "zoho: "+w)
			}
			for _, secret := range []string{"secret-abcdef", "1000.refresh-xyz"} {
				require.NotContains(t, err.Error(), secret)
			}
		})
	}
	c, err := New(valid())
	require.NoError(t, err)
	require.Equal(t, DefaultMaxRetries, c.cfg.MaxRetries)
	require.Equal(t, DefaultRetryBase, c.cfg.RetryBase)
	require.Equal(t, DefaultRetryMax, c.cfg.RetryMax)
	require.Equal(t, DefaultHTTPTimeout, c.cfg.HTTPClient.Timeout)
	require.NotNil(t, c.limiter)
}

func TestDataCenterPresets(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"ca", "com", "com.au", "com.cn", "eu", "in", "jp", "sa"}, DataCenters())
	for _, tc := range []struct {
		dc       string
		product  Product
		accounts string
		base     string
	}{
		{"", "", "https://accounts.zoho.com", "https://www.zohoapis.com/books/v3"},
		{"eu", Inventory, "https://accounts.zoho.eu", "https://www.zohoapis.eu/inventory/v1"},
		{"in", Books, "https://accounts.zoho.in", "https://www.zohoapis.in/books/v3"},
		{"com.au", Books, "https://accounts.zoho.com.au", "https://www.zohoapis.com.au/books/v3"},
		{"jp", Books, "https://accounts.zoho.jp", "https://www.zohoapis.jp/books/v3"},
		{"ca", Books, "https://accounts.zohocloud.ca", "https://www.zohoapis.ca/books/v3"},
		{"com.cn", Books, "https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn/books/v3"},
		{"sa", Books, "https://accounts.zoho.sa", "https://www.zohoapis.sa/books/v3"},
	} {
		c, err := New(Config{ClientID: "a", ClientSecret: "b", RefreshToken: "c", OrganizationID: "d", DataCenter: tc.dc, Product: tc.product})
		require.NoError(t, err, tc.dc)
		require.Equal(t, tc.accounts, c.accounts, tc.dc)
		require.Equal(t, tc.base, c.APIBase(), tc.dc)
	}
}

// TestBasePrecedence: APIURL > the token's api_domain (a known API host,
// see TestAPIDomainAccepted) > the preset.
func TestBasePrecedence(t *testing.T) {
	t.Parallel()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, `{"code":0,"message":"success","item":{"item_id":"1","path":%q}}`, r.URL.EscapedPath())
	}))
	t.Cleanup(other.Close)
	accounts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprint(w, `{"access_token":"tok-1","expires_in":3600,"api_domain":"https://www.zohoapis.eu","token_type":"Bearer"}`)
	}))
	t.Cleanup(accounts.Close)

	base := Config{ClientID: "a", ClientSecret: "b", RefreshToken: "c", OrganizationID: "d", AccountsURL: accounts.URL, RequestsPerMinute: -1}

	// api_domain beats the preset.
	c, err := New(base)
	require.NoError(t, err)
	require.Equal(t, "https://www.zohoapis.com/books/v3", c.APIBase())
	_, err = c.accessToken(t.Context(), "")
	require.NoError(t, err)
	require.Equal(t, "https://www.zohoapis.eu/books/v3", c.APIBase())

	// APIURL beats api_domain.
	cfg := base
	cfg.APIURL = other.URL + "/"
	cfg.Product = Inventory
	c, err = New(cfg)
	require.NoError(t, err)
	rec, err := c.Get(t.Context(), items, "a b/c")
	require.NoError(t, err)
	require.JSONEq(t, `{"item_id":"1","path":"/inventory/v1/items/a%20b%2Fc"}`, string(rec))
	require.Equal(t, other.URL+"/inventory/v1", c.APIBase())
}

func TestRefreshBeforeExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t, zohofake.Options{}, nil)
	putItems(b.fake, 1)
	ctx := t.Context()
	_, err := b.client.Get(ctx, items, "1000")
	require.NoError(t, err)
	require.Equal(t, 1, b.fake.Stats().TokenRefreshes)
	require.Equal(t, b.fake.URL()+"/books/v3", b.client.APIBase())

	b.clock.Advance(54 * time.Minute) // 6 minutes left: keep the token
	_, err = b.client.Get(ctx, items, "1000")
	require.NoError(t, err)
	require.Equal(t, 1, b.fake.Stats().TokenRefreshes)

	b.clock.Advance(2 * time.Minute) // 4 minutes left: refresh first
	_, err = b.client.Get(ctx, items, "1000")
	require.NoError(t, err)
	st := b.fake.Stats()
	require.Equal(t, 2, st.TokenRefreshes)
	require.Equal(t, map[int]int{200: 3}, st.Status, "no request was refused")
}

func TestRefreshOnceOn401(t *testing.T) {
	t.Parallel()
	t.Run("expired token is refreshed once and the call retried", func(t *testing.T) {
		t.Parallel()
		var refreshErrs []error
		b := setup(t, zohofake.Options{}, func(c *Config) {
			c.Hooks.Refresh = func(err error) { refreshErrs = append(refreshErrs, err) }
		})
		putItems(b.fake, 1)
		_, err := b.client.Get(t.Context(), items, "1000")
		require.NoError(t, err)
		b.fake.ExpireTokens()
		_, err = b.client.Get(t.Context(), items, "1000")
		require.NoError(t, err)
		st := b.fake.Stats()
		require.Equal(t, 2, st.TokenRefreshes)
		require.Equal(t, map[int]int{200: 2, 401: 1}, st.Status)
		require.Equal(t, []error{nil, nil}, refreshErrs)
		require.Empty(t, b.clock.Sleeps(), "a 401 is not a backoff retry")
	})
	t.Run("second 401 is an APIError", func(t *testing.T) {
		t.Parallel()
		var tokens, calls int
		var mu sync.Mutex
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if r.URL.Path == "/oauth/v2/token" {
				tokens++
				_, _ = fmt.Fprintf(w, `{"access_token":"tok-%d","expires_in":3600,"token_type":"Bearer"}`, tokens)
				return
			}
			calls++
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = fmt.Fprint(w, `{"code":14,"message":"Invalid OAuth access token."}`)
		}))
		t.Cleanup(srv.Close)
		c, err := New(Config{ClientID: "a", ClientSecret: "b", RefreshToken: "c", OrganizationID: "d",
			AccountsURL: srv.URL, APIURL: srv.URL, RequestsPerMinute: -1, Sleep: (&clock{}).Sleep})
		require.NoError(t, err)
		_, err = c.List(t.Context(), items, ListRequest{})
		var apiErr *APIError
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, APIError{Endpoint: "GET /items", StatusCode: 401, Code: 14, Message: "Invalid OAuth access token."}, *apiErr)
		require.Equal(t, 2, tokens)
		require.Equal(t, 2, calls)
	})
}

func TestRefreshLimit(t *testing.T) {
	t.Parallel()
	var hookErrs []error
	b := setup(t, zohofake.Options{}, func(c *Config) {
		c.Hooks.Refresh = func(err error) { hookErrs = append(hookErrs, err) }
	})
	putItems(b.fake, 1)
	ctx := t.Context()
	for i := range 10 {
		b.fake.ExpireTokens()
		_, err := b.client.Get(ctx, items, "1000")
		require.NoError(t, err, "call %d", i)
		b.clock.Advance(30 * time.Second)
	}
	require.Equal(t, 10, b.fake.Stats().TokenRefreshes)
	b.fake.ExpireTokens()
	_, err := b.client.Get(ctx, items, "1000")
	require.ErrorIs(t, err, ErrRefreshLimit)
	require.Equal(t, 10, b.fake.Stats().TokenRefreshes, "the 11th refresh is never sent")
	require.Len(t, hookErrs, 10)

	// Once the first refresh is 10 minutes old, one more is allowed.
	b.clock.Advance(10*time.Minute - 10*30*time.Second)
	_, err = b.client.Get(ctx, items, "1000")
	require.NoError(t, err)
	require.Equal(t, 11, b.fake.Stats().TokenRefreshes)
}

func TestTokenAnswerErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"200 with error", 200, `{"error":"invalid_code"}`, "zoho: GET /items: zoho: refreshing token: HTTP 200: invalid_code"},
		{"400 too many", 400, `{"error":"Access Denied","error_description":"You have made too many requests continuously."}`, "HTTP 400: Access Denied: You have made too many requests continuously."},
		{"500 html", 500, `<html>oops</html>`, "refreshing token: HTTP 500"},
		{"no token", 200, `{"expires_in":3600}`, "answer has no access_token"},
		{"not json", 200, `nope`, "answer is not JSON"},
		{"error echoing secrets", 200, `{"error":"bad client_secret=secret-abcdef refresh=1000.refresh-xyz"}`, "bad client_secret=[redacted] refresh=[redacted]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			apiCalls := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/oauth/v2/token" {
					apiCalls++
					return
				}
				require.NoError(t, r.ParseForm())
				require.Equal(t, "refresh_token", r.PostForm.Get("grant_type"))
				require.Equal(t, "1000.refresh-xyz", r.PostForm.Get("refresh_token"))
				require.Equal(t, "id-123456", r.PostForm.Get("client_id"))
				require.Equal(t, "secret-abcdef", r.PostForm.Get("client_secret"))
				w.WriteHeader(tc.status)
				_, _ = fmt.Fprint(w, tc.body)
			}))
			t.Cleanup(srv.Close)
			var hookErr error
			c, err := New(Config{ClientID: "id-123456", ClientSecret: "secret-abcdef", RefreshToken: "1000.refresh-xyz",
				OrganizationID: "d", AccountsURL: srv.URL, APIURL: srv.URL, RequestsPerMinute: -1,
				Hooks: Hooks{Refresh: func(err error) { hookErr = err }}})
			require.NoError(t, err)
			_, err = c.List(t.Context(), items, ListRequest{})
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, err.Error()[len("zoho: GET /items: "):], hookErr.Error())
			requireNoSecrets(t, err)
			require.Zero(t, apiCalls)
		})
	}
}

func requireNoSecrets(t *testing.T, err error) {
	t.Helper()
	for _, s := range []string{"secret-abcdef", "1000.refresh-xyz", "client-secret", "refresh-token", "id-123456", "1000.fake-access", "tok-secret"} {
		require.NotContains(t, err.Error(), s)
		require.NotContains(t, fmt.Sprintf("%+v", err), s)
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	lo1, hi1 := backoff.Bounds(1, time.Second, time.Minute, retryJitter)
	lo2, hi2 := backoff.Bounds(2, time.Second, time.Minute, retryJitter)
	date := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(42 * time.Second).Format(http.TimeFormat)
	for _, tc := range []struct {
		name       string
		fail       int
		status     int
		retryAfter string
		maxRetries int
		wantErr    string
		wantCalls  int
		bounds     [][2]time.Duration // each recorded sleep within [lo, hi]
	}{
		{name: "429 with seconds", fail: 2, status: 429, retryAfter: "7", wantCalls: 3,
			bounds: [][2]time.Duration{{7 * time.Second, 7 * time.Second}, {7 * time.Second, 7 * time.Second}}},
		{name: "429 with date", fail: 1, status: 429, retryAfter: date, wantCalls: 2,
			bounds: [][2]time.Duration{{42 * time.Second, 42 * time.Second}}},
		{name: "429 capped", fail: 1, status: 429, retryAfter: "86400", wantCalls: 2,
			bounds: [][2]time.Duration{{10 * time.Minute, 10 * time.Minute}}},
		{name: "429 without header", fail: 2, status: 429, wantCalls: 3,
			bounds: [][2]time.Duration{{lo1, hi1}, {lo2, hi2}}},
		{name: "429 with junk header", fail: 1, status: 429, retryAfter: "soon", wantCalls: 2,
			bounds: [][2]time.Duration{{lo1, hi1}}},
		{name: "503 then success", fail: 2, status: 503, wantCalls: 3,
			bounds: [][2]time.Duration{{lo1, hi1}, {lo2, hi2}}},
		{name: "500 gives up", fail: 10, status: 500, maxRetries: 3, wantCalls: 4,
			wantErr: "zoho: GET /items: HTTP 500, code 500: Internal error.",
			bounds:  [][2]time.Duration{{lo1, hi1}, {lo2, hi2}, {4 * time.Second * 8 / 10, 4 * time.Second * 12 / 10}}},
		{name: "no retries", fail: 1, status: 502, maxRetries: -1, wantCalls: 1, wantErr: "HTTP 502"},
		{name: "400 is final", fail: 3, status: 400, wantCalls: 1, wantErr: "HTTP 400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var statuses []int
			var mu sync.Mutex
			b := setup(t, zohofake.Options{}, func(c *Config) {
				c.MaxRetries = tc.maxRetries
				c.RetryMax = time.Minute
				c.Hooks.Response = func(endpoint string, status int, _ time.Duration) {
					mu.Lock()
					defer mu.Unlock()
					require.Equal(t, "GET /items", endpoint)
					statuses = append(statuses, status)
				}
			})
			putItems(b.fake, 3)
			b.fake.Fail(tc.fail, tc.status, tc.retryAfter)
			p, err := b.client.List(t.Context(), items, ListRequest{})
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				var apiErr *APIError
				require.ErrorAs(t, err, &apiErr)
				require.Equal(t, tc.status, apiErr.StatusCode)
			} else {
				require.NoError(t, err)
				require.Len(t, p.Records, 3)
			}
			require.Equal(t, tc.wantCalls, b.fake.Stats().APICalls)
			require.Len(t, statuses, tc.wantCalls)
			sleeps := b.clock.Sleeps()
			require.Len(t, sleeps, len(tc.bounds))
			for i, bd := range tc.bounds {
				require.GreaterOrEqual(t, sleeps[i], bd[0], "sleep %d", i)
				require.LessOrEqual(t, sleeps[i], bd[1], "sleep %d", i)
			}
		})
	}
}

func TestTransportErrorRetriesThenGivesUp(t *testing.T) {
	t.Parallel()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	var statuses []int
	b := setup(t, zohofake.Options{}, func(c *Config) {
		c.APIURL = deadURL
		c.MaxRetries = 2
		c.Hooks.Response = func(_ string, status int, _ time.Duration) { statuses = append(statuses, status) }
	})
	_, err := b.client.List(t.Context(), items, ListRequest{})
	require.ErrorContains(t, err, "zoho: GET /items: ")
	require.Equal(t, []int{0, 0, 0}, statuses)
	require.Len(t, b.clock.Sleeps(), 2)
	requireNoSecrets(t, err)
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	for _, status := range []int{404, 400} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			b := setup(t, zohofake.Options{NotFoundStatus: status}, nil)
			_, err := b.client.Get(t.Context(), items, "missing")
			require.ErrorIs(t, err, ErrNotFound)
			var apiErr *APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, APIError{Endpoint: "GET /items/{id}", StatusCode: status, Code: 1002, Message: "Item does not exist."}, *apiErr)
			require.Empty(t, b.clock.Sleeps())
		})
	}
	t.Run("plain 404", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/oauth/v2/token" {
				_, _ = fmt.Fprint(w, `{"access_token":"t","expires_in":3600}`)
				return
			}
			http.NotFound(w, r)
		}))
		t.Cleanup(srv.Close)
		c, err := New(Config{ClientID: "a", ClientSecret: "b", RefreshToken: "c", OrganizationID: "d", AccountsURL: srv.URL, APIURL: srv.URL})
		require.NoError(t, err)
		_, err = c.Get(t.Context(), items, "x")
		require.ErrorIs(t, err, ErrNotFound)
		require.ErrorContains(t, err, "HTTP 404, code 0: Not Found")
	})
}

// scripted serves tokens and answers every API request with status and body.
func scripted(t *testing.T, status int, body string) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oauth/v2/token" {
			_, _ = fmt.Fprint(w, `{"access_token":"1000.tok-secret","expires_in":3600}`)
			return
		}
		require.Equal(t, "Zoho-oauthtoken 1000.tok-secret", r.Header.Get("Authorization"))
		require.Equal(t, "org-9", r.URL.Query().Get("organization_id"))
		w.WriteHeader(status)
		_, _ = fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{ClientID: "id-123456", ClientSecret: "secret-abcdef", RefreshToken: "1000.refresh-xyz",
		OrganizationID: "org-9", AccountsURL: srv.URL, APIURL: srv.URL, RequestsPerMinute: -1,
		Sleep: func(context.Context, time.Duration) error { t.Error("unexpected sleep"); return nil }})
	require.NoError(t, err)
	return c
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   APIError
	}{
		{"non-zero code with 200", 200, `{"code":57,"message":"You are not authorized to perform this operation"}`,
			APIError{"GET /items", 200, 57, "You are not authorized to perform this operation"}},
		{"code 1002 with 200", 200, `{"code":1002,"message":"Item does not exist."}`,
			APIError{"GET /items", 200, 1002, "Item does not exist."}},
		{"200 not json", 200, `<html>`, APIError{"GET /items", 200, 0, "answer is not JSON"}},
		{"403", 403, `{"code":57,"message":"no"}`, APIError{"GET /items", 403, 57, "no"}},
		{"message echoing the token", 400, `{"code":2,"message":"bad token 1000.tok-secret"}`,
			APIError{"GET /items", 400, 2, "bad token [redacted]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := scripted(t, tc.status, tc.body)
			_, err := c.List(t.Context(), items, ListRequest{})
			var apiErr *APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, tc.want, *apiErr)
			require.Equal(t, tc.want.Code == 1002, errors.Is(err, ErrNotFound))
			requireNoSecrets(t, err)
		})
	}
	t.Run("record key missing", func(t *testing.T) {
		t.Parallel()
		c := scripted(t, 200, `{"code":0,"message":"success","contact":{}}`)
		_, err := c.Get(t.Context(), items, "1")
		require.ErrorContains(t, err, `zoho: GET /items/{id}: answer has no "item"`)
	})
	// Zoho Books' API description (ballerina-platform/openapi-connectors)
	// puts an array under the record key; Zoho's reference, one object.
	for body, kind := range map[string]string{
		`{"code":0,"message":"success","item":[{"item_id":"1"}]}`: "an array",
		`{"code":0,"message":"success","item":"1"}`:               "a string",
		`{"code":0,"message":"success","item":1}`:                 "a number",
	} {
		t.Run("record is "+kind, func(t *testing.T) {
			t.Parallel()
			c := scripted(t, 200, body)
			_, err := c.Get(t.Context(), items, "1")
			require.EqualError(t, err, `zoho: GET /items/{id}: answer's "item" is `+kind+`, not an object`)
		})
	}
	t.Run("list key missing", func(t *testing.T) {
		t.Parallel()
		c := scripted(t, 200, `{"code":0,"message":"success"}`)
		_, err := c.List(t.Context(), items, ListRequest{})
		require.ErrorContains(t, err, `answer has no "items"`)
	})
}

func TestOversizedBody(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oauth/v2/token" {
			_, _ = fmt.Fprint(w, `{"access_token":"t","expires_in":3600}`)
			return
		}
		chunk := []byte(strings.Repeat(" ", 1<<20))
		for range 33 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{ClientID: "a", ClientSecret: "b", RefreshToken: "c", OrganizationID: "d",
		AccountsURL: srv.URL, APIURL: srv.URL, MaxRetries: -1, RequestsPerMinute: -1})
	require.NoError(t, err)
	_, err = c.List(t.Context(), items, ListRequest{})
	require.ErrorContains(t, err, "answer larger than 33554432 bytes")
}

func TestPaging(t *testing.T) {
	t.Parallel()
	b := setup(t, zohofake.Options{}, func(c *Config) { c.Product = Inventory })
	putItems(b.fake, 450)
	var ids []string
	for page := 1; ; page++ {
		p, err := b.client.List(t.Context(), items, ListRequest{Page: page, SortColumn: "last_modified_time", SortOrder: "D"})
		require.NoError(t, err)
		require.Equal(t, page, p.Page)
		for _, r := range p.Records {
			var rec map[string]any
			require.NoError(t, json.Unmarshal(r, &rec))
			require.NotContains(t, rec, "tags", "lists carry summary fields only")
			ids = append(ids, rec["item_id"].(string))
		}
		if !p.HasMore {
			require.Equal(t, 3, page)
			break
		}
	}
	require.Len(t, ids, 450)
	// last_modified_time falls as the insertion index grows: descending is insertion order.
	require.Equal(t, "1000", ids[0])
	require.Equal(t, "1449", ids[449])

	p, err := b.client.List(t.Context(), items, ListRequest{Page: 2, PerPage: 25})
	require.NoError(t, err)
	require.Len(t, p.Records, 25)
	require.True(t, p.HasMore)
	require.Contains(t, string(p.Records[0]), `"item_id":"1025"`)

	rec, err := b.client.Get(t.Context(), items, "1007")
	require.NoError(t, err)
	require.Contains(t, string(rec), `"tags":[{"tag_id":"t"}]`, "details carry the whole record")
	require.Equal(t, 4, b.fake.Stats().ListCalls)
}

func TestConcurrentCallersShareOneRefresh(t *testing.T) {
	t.Parallel()
	b := setup(t, zohofake.Options{}, nil)
	putItems(b.fake, 5)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := b.client.List(t.Context(), items, ListRequest{})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	st := b.fake.Stats()
	require.Equal(t, 1, st.TokenRefreshes)
	require.Equal(t, 20, st.ListCalls)
}

func TestHooks(t *testing.T) {
	t.Parallel()
	budget := 2
	var endpoints []string
	b := setup(t, zohofake.Options{}, func(c *Config) {
		c.Hooks.Request = func(_ context.Context, endpoint string) error {
			endpoints = append(endpoints, endpoint)
			if budget == 0 {
				return errors.New("daily budget spent")
			}
			budget--
			return nil
		}
	})
	putItems(b.fake, 1)
	b.fake.Fail(1, 503, "")
	_, err := b.client.Get(t.Context(), items, "1000")
	require.NoError(t, err)
	_, err = b.client.List(t.Context(), items, ListRequest{})
	require.EqualError(t, err, "zoho: GET /items: daily budget spent")
	require.Equal(t, []string{"GET /items/{id}", "GET /items/{id}", "GET /items"}, endpoints)
	require.Equal(t, 2, b.fake.Stats().APICalls)
}

func TestRateLimiter(t *testing.T) {
	t.Parallel()
	b := setup(t, zohofake.Options{}, func(c *Config) { c.RequestsPerMinute = 60 })
	putItems(b.fake, 1)
	// The fake clock stands still but for sleeps, so requests are one second apart.
	for range 3 {
		_, err := b.client.Get(t.Context(), items, "1000")
		require.NoError(t, err)
	}
	require.Equal(t, []time.Duration{time.Second, time.Second}, b.clock.Sleeps())
}

func TestContextCancelDuringWait(t *testing.T) {
	t.Parallel()
	b := setup(t, zohofake.Options{}, nil)
	putItems(b.fake, 1)
	b.fake.Fail(5, 503, "")
	ctx, cancel := context.WithCancel(t.Context())
	var slept []time.Duration
	c := b.client
	c.cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		slept = append(slept, d)
		cancel()
		return sleep(ctx, time.Hour) // the real sleeper returns as soon as ctx ends
	}
	start := time.Now()
	_, err := c.Get(ctx, items, "1000")
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "waiting to retry")
	require.Less(t, time.Since(start), 10*time.Second)
	require.Len(t, slept, 1)
	require.Equal(t, 1, b.fake.Stats().APICalls)

	// A context already done stops the call before any request.
	_, err = c.Get(ctx, items, "1000")
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, b.fake.Stats().APICalls)
}

func TestDefaultSleep(t *testing.T) {
	t.Parallel()
	require.NoError(t, sleep(t.Context(), time.Millisecond))
	require.NoError(t, sleep(t.Context(), 0))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, sleep(ctx, time.Hour), context.Canceled)
}

// TestNoRedirects: a 307 from the accounts host would re-POST the client
// secret and the refresh token, and one from the API host the access token,
// to an address nobody configured. Neither is followed, with the default
// HTTP client or the caller's.
func TestNoRedirects(t *testing.T) {
	t.Parallel()
	var stolen sync.Map
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		stolen.Store(r.URL.Path, r.Form.Encode()+" "+r.Header.Get("Authorization"))
		_, _ = fmt.Fprint(w, `{"access_token":"tok-x","expires_in":3600,"code":0,"item":{"item_id":"1"}}`)
	}))
	t.Cleanup(elsewhere.Close)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirect.Close)
	accounts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprint(w, `{"access_token":"tok-1","expires_in":3600,"token_type":"Bearer"}`)
	}))
	t.Cleanup(accounts.Close)

	for _, hc := range []*http.Client{nil, http.DefaultClient} {
		cfg := Config{ClientID: "a", ClientSecret: "client-secret", RefreshToken: "refresh-token", OrganizationID: "d",
			AccountsURL: redirect.URL, APIURL: redirect.URL, RequestsPerMinute: -1, MaxRetries: -1, HTTPClient: hc}
		c, err := New(cfg)
		require.NoError(t, err)
		_, err = c.Get(t.Context(), items, "1")
		require.ErrorContains(t, err, "refreshing token: HTTP 307")

		cfg.AccountsURL = accounts.URL
		c, err = New(cfg)
		require.NoError(t, err)
		_, err = c.Get(t.Context(), items, "1")
		var apiErr *APIError
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusTemporaryRedirect, apiErr.StatusCode)
	}
	stolen.Range(func(k, v any) bool {
		t.Errorf("a redirect was followed: %v %v", k, v)
		return true
	})
}

// TestAPIDomainAccepted: a token answer's api_domain is adopted only when
// it is a data centre's API host over https (or the configured APIURL); a
// tampered answer cannot send the access token to plain http or elsewhere.
func TestAPIDomainAccepted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		domain string
		want   string
	}{
		{"https://www.zohoapis.eu", "https://www.zohoapis.eu/books/v3"},
		{"https://www.zohoapis.com.au/", "https://www.zohoapis.com.au/books/v3"},
		{"http://localhost", "https://www.zohoapis.com/books/v3"},
		{"http://www.zohoapis.eu", "https://www.zohoapis.com/books/v3"},
		{"https://www.zohoapis.eu.evil.example", "https://www.zohoapis.com/books/v3"},
		{"https://www.zohoapis.eu:8443", "https://www.zohoapis.com/books/v3"},
		{"https://127.0.0.1", "https://www.zohoapis.com/books/v3"},
	} {
		accounts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = fmt.Fprintf(w, `{"access_token":"tok-1","expires_in":3600,"api_domain":%q,"token_type":"Bearer"}`, tc.domain)
		}))
		c, err := New(Config{ClientID: "a", ClientSecret: "b", RefreshToken: "c", OrganizationID: "d",
			AccountsURL: accounts.URL, RequestsPerMinute: -1})
		require.NoError(t, err)
		_, err = c.accessToken(t.Context(), "")
		accounts.Close()
		require.NoError(t, err)
		require.Equal(t, tc.want, c.APIBase(), tc.domain)
	}
}
