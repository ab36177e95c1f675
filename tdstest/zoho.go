package tdstest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tdscore/tds/internal/zohofake"
)

// The credentials a Zoho accepts, as Zoho.API returns them.
const (
	zohoClientID       = "tdstest-client-id"
	zohoClientSecret   = "tdstest-client-secret"
	zohoRefreshToken   = "tdstest-refresh-token"
	zohoOrganizationID = "tdstest-org"
)

// Zoho is a fake of Zoho's OAuth token endpoint and of the Zoho Books and
// Zoho Inventory REST APIs, served in-process on a loopback HTTP server, for
// testing a reconciler (package tdsreconcile) without a Zoho account. Point a Reconciler at
// it with [Zoho.API]; give it records with [Zoho.Put]; make it fail with
// [Zoho.Fail], [Zoho.SetDown] and [Zoho.ExpireTokens]; count the calls with
// [Zoho.Stats]. Its methods are safe for concurrent use.
//
// It reproduces what tds relies on, from Zoho's documentation where it
// says something and from assumptions where it does not (docs/zoho-api.md
// in the tds repository marks each row documented or assumed; the assumed
// ones are where the real API may differ):
//
//   - the refresh-token grant at POST /oauth/v2/token, whose access tokens
//     live an hour ([ZohoTokenTTL]), and at most 10 refreshes in 10
//     minutes, then 400 "Access Denied" (status and wording assumed);
//   - the API under both /books/v3 and /inventory/v1, with the header
//     "Authorization: Zoho-oauthtoken …" (401 code 14 without a valid
//     one; the code assumed) and organization_id on every call (400 code
//     6041 without it; assumed);
//   - the answer envelope {"code":0,"message":"success",…} and errors as
//     {"code":…,"message":…};
//   - lists paged by page and per_page (200 at most, the default), with
//     page_context (page, per_page, has_more_page, applied_filter,
//     sort_column, sort_order, and report_name on invoices, as Zoho Books'
//     API description has it), sorted by sort_column created_time or
//     last_modified_time and sort_order A or D (ties and unsorted lists
//     in the order records were first put), carrying each record's
//     top-level scalar fields only (assumed); the detail answer carries
//     the whole record, and a missing one answers 404 with code 1002 (the
//     body documented, the status assumed).
//
// It does not reproduce Zoho's rate limits (use [Zoho.Fail] for a 429),
// writes, search filters, other modules or webhooks (send those with
// [Send]).
//
// Records live in Zoho's modules, named as in the API's paths and in
// [tds.EntityAPI].ListKey: "items", "contacts", "invoices", "bills",
// "creditnotes" and "pricebooks". In [tds.ZohoRegistry] the entity types
// product and stock both read "items", customer "contacts", invoice
// "invoices", bill "bills", credit_note "creditnotes" and price_list
// "pricebooks".
type Zoho struct {
	t   testing.TB // nil for StartZoho
	srv *zohofake.Server
}

// ZohoOption changes the [Zoho] that [NewZoho] or [StartZoho] starts.
type ZohoOption func(*zohoSettings)

type zohoSettings struct {
	now func() time.Time
	ttl time.Duration
}

// ZohoClock sets the clock by which a [Zoho] expires its access tokens and
// counts refreshes: give it the one given to the Reconciler with
// [tds.WithClock], so that both agree on when a token has expired and on
// the 10-minute refresh window. Defaults to time.Now.
func ZohoClock(now func() time.Time) ZohoOption {
	return func(s *zohoSettings) { s.now = now }
}

// ZohoTokenTTL sets how long a [Zoho]'s access tokens live (the expires_in
// of its token answer). Zoho's last an hour. Defaults to one hour.
func ZohoTokenTTL(d time.Duration) ZohoOption {
	return func(s *zohoSettings) { s.ttl = d }
}

// NewZoho starts a fake [Zoho] for the test t and closes it when the test
// ends (t.Cleanup).
func NewZoho(t testing.TB, opts ...ZohoOption) *Zoho {
	t.Helper()
	z := StartZoho(opts...)
	z.t = t
	t.Cleanup(z.Close)
	return z
}

// StartZoho starts a fake [Zoho] outside a test, such as in a runnable
// example or a local demonstration; Close it when done. In a test, use
// [NewZoho].
func StartZoho(opts ...ZohoOption) *Zoho {
	var set zohoSettings
	for _, o := range opts {
		o(&set)
	}
	return &Zoho{srv: zohofake.New(zohofake.Options{
		ClientID: zohoClientID, ClientSecret: zohoClientSecret,
		RefreshToken: zohoRefreshToken, OrganizationID: zohoOrganizationID,
		Now: set.now, TokenTTL: set.ttl,
	})}
}

// Close stops the server, waiting for the requests it is answering. A
// [NewZoho] closes itself when its test ends.
func (z *Zoho) Close() { z.srv.Close() }

// URL is the base URL of both its token endpoint and its API, for
// tdsreconcile.ZohoAPI's AccountsURL and APIURL.
func (z *Zoho) URL() string { return z.srv.URL() }

// API returns the ZohoAPI that reaches this fake: the credentials
// and organisation it accepts, AccountsURL and APIURL set to [Zoho.URL],
// the Books API (the fake serves Inventory's too: set Product to
// "inventory"), and RequestsPerMinute -1, so that a test does not wait for the client's
// pacing (the fake sets no limit of its own). DailyBudget is left at its
// default. Change any field to test your own settings.
func (z *Zoho) API() ZohoAPI {
	return ZohoAPI{
		ClientID: zohoClientID, ClientSecret: zohoClientSecret, RefreshToken: zohoRefreshToken,
		OrganizationID: zohoOrganizationID,
		AccountsURL:    z.URL(), APIURL: z.URL(),
		RequestsPerMinute: -1,
	}
}

// ZohoAPI is the shape of tdsreconcile.ZohoAPI: the same fields in the
// same order, so that a value of it is assignable to one
// (tdsreconcile.New(db, proc, zoho.API())). It is not that type because
// tdsreconcile's own tests use this package, which therefore cannot import
// tdsreconcile. A test in tdsreconcile keeps the two shapes equal.
type ZohoAPI = struct {
	ClientID, ClientSecret, RefreshToken string
	OrganizationID                       string
	DataCenter                           string
	Product                              string
	AccountsURL, APIURL                  string
	RequestsPerMinute                    int
	DailyBudget                          int
	HTTPClient                           *http.Client
}

// idField checks module and returns its records' id field.
func (z *Zoho) idField(method, module string) (string, bool) {
	if z.t != nil {
		z.t.Helper()
	}
	f, ok := zohofake.IDField(module)
	if !ok {
		z.fail("tdstest: Zoho.%s: unknown module %q (known: %s)", method, module, strings.Join(zohofake.Modules(), ", "))
	}
	return f, ok
}

// fail fails the test, or panics outside one (StartZoho).
func (z *Zoho) fail(format string, args ...any) {
	if z.t == nil {
		panic(fmt.Sprintf(format, args...))
	}
	z.t.Helper()
	z.t.Fatalf(format, args...)
}

// Put adds rec to module ("items", "contacts", …; see [Zoho]) as the
// record Zoho holds, or replaces the record with the same id (rec's
// "item_id" for items, "contact_id" for contacts, and so on; a number or a
// string) where it stands in the list order. rec is the detail record,
// as Zoho's API would answer it, nested objects included; lists carry its
// top-level scalar fields. Give it a "last_modified_time" in Zoho's format
// (2026-11-02T10:00:00+0100, [tds.ZohoTimeLayout]) for the types whose
// version it is. The fake keeps a copy. An unknown module or a record
// without its id field fails the test (or panics, from [StartZoho]).
func (z *Zoho) Put(module string, rec map[string]any) {
	if z.t != nil {
		z.t.Helper()
	}
	f, ok := z.idField("Put", module)
	if !ok {
		return
	}
	if rec[f] == nil {
		z.fail("tdstest: Zoho.Put: the %s record has no %s", module, f)
		return
	}
	z.srv.Put(module, rec)
}

// Delete removes the record with id from module, as a deletion in Zoho
// does: lists leave it out and its detail answers 404. A missing id is
// ignored.
func (z *Zoho) Delete(module, id string) {
	if z.t != nil {
		z.t.Helper()
	}
	if _, ok := z.idField("Delete", module); ok {
		z.srv.Delete(module, id)
	}
}

// Get returns a copy of module's record with id, and whether there is one.
func (z *Zoho) Get(module, id string) (map[string]any, bool) {
	if z.t != nil {
		z.t.Helper()
	}
	if _, ok := z.idField("Get", module); !ok {
		return nil, false
	}
	return z.srv.Get(module, id)
}

// Fail makes the next n API requests (not token refreshes) answer status,
// such as 429 for Zoho's rate limit or 500, with Zoho's error body and a
// Retry-After header of retryAfter when it is not "" (seconds, or an HTTP
// date). tds' client retries a 429 after the Retry-After it is sent, and a
// 5xx or a 429 without one after an exponential backoff from one second:
// "0" makes a test's retries immediate. A call replaces the previous one's
// count.
func (z *Zoho) Fail(n, status int, retryAfter string) { z.srv.Fail(n, status, retryAfter) }

// SetDown makes every API request answer 503 while down is true, as Zoho
// does during an outage; tokens are still issued.
func (z *Zoho) SetDown(down bool) { z.srv.SetDown(down) }

// ExpireTokens revokes every access token issued so far: API requests
// carrying one answer 401 {"code":14,"message":"Invalid OAuth access
// token."} (the code is assumed), as after Zoho revokes or expires a
// token early. tds' client then refreshes its token once and repeats the
// call.
func (z *Zoho) ExpireTokens() { z.srv.ExpireTokens() }

// ZohoStats counts the requests a [Zoho] answered.
type ZohoStats struct {
	// APICalls counts API requests, whatever their answer; Status counts
	// them by HTTP status.
	APICalls int
	Status   map[int]int
	// ListCalls counts the list pages answered with 200, DetailCalls the
	// detail requests answered (found or not).
	ListCalls, DetailCalls int
	// TokenRefreshes counts the requests to the token endpoint, whatever
	// their answer.
	TokenRefreshes int
}

// Stats returns the counters so far.
func (z *Zoho) Stats() ZohoStats {
	s := z.srv.Stats()
	return ZohoStats{APICalls: s.APICalls, Status: s.Status, ListCalls: s.ListCalls,
		DetailCalls: s.DetailCalls, TokenRefreshes: s.TokenRefreshes}
}
