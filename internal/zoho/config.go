package zoho

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Defaults applied by New when the Config field is zero.
const (
	DefaultDataCenter        = "com"
	DefaultRequestsPerMinute = 100
	DefaultMaxRetries        = 5
	DefaultRetryBase         = time.Second
	DefaultRetryMax          = 60 * time.Second
	DefaultHTTPTimeout       = 30 * time.Second
)

// dataCenters maps a data centre to its accounts and API hosts.
var dataCenters = map[string]struct{ accounts, api string }{
	"com":    {"https://accounts.zoho.com", "https://www.zohoapis.com"},
	"eu":     {"https://accounts.zoho.eu", "https://www.zohoapis.eu"},
	"in":     {"https://accounts.zoho.in", "https://www.zohoapis.in"},
	"com.au": {"https://accounts.zoho.com.au", "https://www.zohoapis.com.au"},
	"jp":     {"https://accounts.zoho.jp", "https://www.zohoapis.jp"},
	"ca":     {"https://accounts.zohocloud.ca", "https://www.zohoapis.ca"},
	"com.cn": {"https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"},
	"sa":     {"https://accounts.zoho.sa", "https://www.zohoapis.sa"},
}

// isAPIHost reports whether base is one of the data centres' API hosts.
func isAPIHost(base string) bool {
	for _, dc := range dataCenters {
		if dc.api == base {
			return true
		}
	}
	return false
}

// DataCenters returns the data centres Config.DataCenter accepts, sorted.
func DataCenters() []string {
	out := make([]string, 0, len(dataCenters))
	for dc := range dataCenters {
		out = append(out, dc)
	}
	slices.Sort(out)
	return out
}

// Product is the Zoho product whose API the client calls.
type Product string

// Products tds syncs.
const (
	// Books is Zoho Books; its API lives under /books/v3.
	Books Product = "books"
	// Inventory is Zoho Inventory; its API lives under /inventory/v1.
	Inventory Product = "inventory"
)

func (p Product) prefix() (string, bool) {
	switch p {
	case Books:
		return "/books/v3", true
	case Inventory:
		return "/inventory/v1", true
	}
	return "", false
}

// Hooks let the caller observe and veto the client's traffic. Each hook may
// be nil and must be safe for concurrent use.
type Hooks struct {
	// Request is called before every API request (not token requests), each
	// retry included; a non-nil error stops the call and is returned wrapped.
	Request func(ctx context.Context, endpoint string) error
	// Response is called after every API response with the endpoint
	// ("GET /items", or "GET /items/{id}" for a detail call, so labels stay
	// bounded), the HTTP status (0 on a transport error) and the elapsed time.
	Response func(endpoint string, status int, elapsed time.Duration)
	// Refresh is called after every token refresh request with its outcome
	// (nil on success). It is not called when ErrRefreshLimit prevents the
	// request.
	Refresh func(err error)
}

// Config configures a Client. ClientID, ClientSecret, RefreshToken and
// OrganizationID are required; every other field has a default.
type Config struct {
	// ClientID, ClientSecret and RefreshToken are the OAuth credentials of a
	// self client. They never appear in errors.
	ClientID, ClientSecret, RefreshToken string
	// OrganizationID is sent as organization_id on every API call.
	OrganizationID string
	// DataCenter is one of DataCenters(). Defaults to "com".
	DataCenter string
	// Product selects the API path prefix. Defaults to Books.
	Product Product
	// AccountsURL overrides the data centre's accounts host (scheme and
	// host[:port], no path).
	AccountsURL string
	// APIURL overrides the API host (scheme and host[:port], no path). It
	// wins over the token's api_domain, which wins over the data centre;
	// api_domain is adopted only when it is a data centre's API host over
	// https.
	APIURL string
	// RequestsPerMinute paces API requests (burst 1). Negative disables the
	// limiter. Defaults to 100.
	RequestsPerMinute int
	// MaxRetries bounds the retries of one call after 429, 5xx and transport
	// errors. Negative means no retry. Defaults to 5.
	MaxRetries int
	// RetryBase and RetryMax shape the jittered exponential backoff used
	// when no Retry-After header says otherwise. Default to 1s and 60s.
	RetryBase, RetryMax time.Duration
	// HTTPClient sends every request. Redirects are never followed (New
	// uses a copy whose CheckRedirect stops at the 3xx, a failure): a 307
	// would re-send the client secret and refresh token, or the access
	// token, to another address. Defaults to a client with a 30 s timeout.
	HTTPClient *http.Client
	// Now tells the time for token expiry and the refresh limit. Defaults to
	// time.Now.
	Now func() time.Time
	// Sleep performs every wait (rate limiter, backoff, Retry-After); it must
	// return early with an error when ctx ends. Defaults to a timer that
	// honours ctx.
	Sleep func(ctx context.Context, d time.Duration) error
	// Hooks observe the traffic.
	Hooks Hooks
}

// withDefaults validates cfg and fills in its defaults. Messages name the
// field and never echo a secret.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("zoho: "+format, args...))
	}
	for _, f := range []struct{ name, v string }{
		{"ClientID", cfg.ClientID}, {"ClientSecret", cfg.ClientSecret},
		{"RefreshToken", cfg.RefreshToken}, {"OrganizationID", cfg.OrganizationID},
	} {
		if strings.TrimSpace(f.v) == "" {
			bad("%s is required", f.name)
		}
	}
	if cfg.DataCenter == "" {
		cfg.DataCenter = DefaultDataCenter
	}
	if _, ok := dataCenters[cfg.DataCenter]; !ok {
		bad("DataCenter %q unknown (want one of %s)", cfg.DataCenter, strings.Join(DataCenters(), ", "))
	}
	if cfg.Product == "" {
		cfg.Product = Books
	}
	if _, ok := cfg.Product.prefix(); !ok {
		bad("Product %q unknown (want %q or %q)", cfg.Product, Books, Inventory)
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"AccountsURL", &cfg.AccountsURL}, {"APIURL", &cfg.APIURL}} {
		if *f.v == "" {
			continue
		}
		base, err := parseBase(*f.v)
		if err != nil {
			bad("%s: %v", f.name, err)
			continue
		}
		*f.v = base
	}
	if cfg.RequestsPerMinute == 0 {
		cfg.RequestsPerMinute = DefaultRequestsPerMinute
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	} else if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}
	if cfg.RetryBase < 0 {
		bad("RetryBase must be >= 0")
	} else if cfg.RetryBase == 0 {
		cfg.RetryBase = DefaultRetryBase
	}
	if cfg.RetryMax < 0 {
		bad("RetryMax must be >= 0")
	} else if cfg.RetryMax == 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	if cfg.RetryMax < cfg.RetryBase && cfg.RetryMax > 0 {
		bad("RetryMax (%v) must be >= RetryBase (%v)", cfg.RetryMax, cfg.RetryBase)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	hc := *cfg.HTTPClient
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.HTTPClient = &hc
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	return cfg, errors.Join(errs...)
}

// parseBase accepts "scheme://host[:port]" with an optional trailing slash.
// The message never repeats the value: a URL may carry credentials.
func parseBase(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", errors.New("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", errors.New("scheme must be http or https")
	case u.Host == "":
		return "", errors.New("host missing")
	case u.User != nil:
		return "", errors.New("must not carry credentials")
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return "", errors.New("must be scheme://host[:port] without a path or query")
	}
	return u.Scheme + "://" + u.Host, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
