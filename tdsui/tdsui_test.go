package tdsui

import (
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/alert"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/tdsalert"
	"github.com/tdscore/tds/tdsreconcile"
)

func TestNewOptions(t *testing.T) {
	tdb := testdb.Open(t, "sqlite")
	for _, tc := range []struct {
		name string
		opts []Option
		err  string
	}{
		{"short admin token", []Option{WithAdminToken("fifteen-bytes!!")}, "tdsui: WithAdminToken: a token of 15 bytes is too short: at least 16"},
		{"empty admin token", []Option{WithAdminToken("")}, "tdsui: WithAdminToken: empty token"},
		{"blank admin token", []Option{WithAdminToken("                ")}, "tdsui: WithAdminToken: empty token"},
		{"no admin token", []Option{WithAdminToken()}, "tdsui: WithAdminToken: no token given"},
		{"short second admin token", []Option{WithAdminToken(testAdminToken), WithAdminToken("short")}, "WithAdminToken: a token of 5 bytes"},
		{"nil registry", []Option{WithRegistry(nil)}, "tdsui: WithRegistry: registry is nil"},
		{"nil reconciler", []Option{WithReconciler(nil)}, "tdsui: WithReconciler: reconciler is nil"},
		{"nil alerter", []Option{WithAlerter(nil)}, "tdsui: WithAlerter: alerter is nil"},
		{"bad proxy", []Option{WithTrustedProxies("10.0.0.0/99")}, `tdsui: WithTrustedProxies: "10.0.0.0/99" is not an address or CIDR prefix`},
		{"negative sign-in limit", []Option{WithSignInLimit(-1, time.Minute)}, "tdsui: WithSignInLimit: n must be >= 0"},
		{"short sign-in period", []Option{WithSignInLimit(5, time.Millisecond)}, "tdsui: WithSignInLimit: per must be >= 1s"},
		{"negative admin refusal limit", []Option{WithAdminRefusalLimit(-1, time.Minute)}, "tdsui: WithAdminRefusalLimit: n must be >= 0"},
		{"short admin refusal period", []Option{WithAdminRefusalLimit(5, time.Millisecond)}, "tdsui: WithAdminRefusalLimit: per must be >= 1s"},
		{"no metrics token", []Option{WithMetricsToken()}, "tdsui: WithMetricsToken: no token given"},
		{"short metrics token", []Option{WithMetricsToken("short")}, "tdsui: WithMetricsToken: a token of 5 bytes is too short: at least 16"},
		{"metrics token is an admin token", []Option{WithAdminToken(testAdminToken), WithMetricsToken(testAdminToken)},
			"tdsui: WithMetricsToken: a metrics token must differ from every admin token"},
		{"weak admin token", []Option{WithAdminToken("aaaaaaaaaaaaaaaa")}, "tdsui: WithAdminToken: a token of 16 bytes with 1 distinct characters is too easy to guess"},
		{"repetitive admin token", []Option{WithAdminToken("abababababababababababab")}, "tdsui: WithAdminToken: a token of 24 bytes with 2 distinct characters is too easy to guess"},
		{"weak metrics token", []Option{WithMetricsToken("1111111111111111")}, "tdsui: WithMetricsToken: a token of 16 bytes with 1 distinct characters is too easy to guess"},
		{"short retry after", []Option{WithRetryAfter(0)}, "tdsui: WithRetryAfter: must be >= 1s"},
		{"nil logger", []Option{WithLogger(nil)}, "tdsui: WithLogger: logger is nil"},
		{"nil clock", []Option{WithClock(nil)}, "tdsui: WithClock: clock is nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tdb.DB, tc.opts...)
			require.ErrorContains(t, err, tc.err)
		})
	}
	// Every bad option is reported at once.
	_, err := New(tdb.DB, WithAdminToken("short"), WithRetryAfter(0), WithLogger(nil))
	require.EqualError(t, err, "tdsui: WithAdminToken: a token of 5 bytes is too short: at least 16\n"+
		"tdsui: WithRetryAfter: must be >= 1s, got 0s\ntdsui: WithLogger: logger is nil")
	_, err = New(nil, WithAdminToken(testAdminToken))
	require.EqualError(t, err, "tdsui: New: db is nil")

	// The zero Option does nothing; the good ones all go together.
	_, err = New(tdb.DB, Option{}, WithAdminToken("sixteen-bytes-ok", testAdminToken), WithRegistry(tds.ZohoRegistry()),
		WithTrustedProxies("10.0.0.0/8", "192.0.2.1", "2001:db8::/32"), WithSignInLimit(0, 0), WithRetryAfter(time.Minute),
		WithLogger(testdb.QuietLogger), WithClock(time.Now), WithReconciler(&tdsreconcile.Reconciler{}), WithAlerter(&tdsalert.Alerter{}))
	require.NoError(t, err)
}

// TestOptionDocs keeps the options' documentation true to the
// conventions: every function returning an Option says its default in a
// last sentence "Defaults to …".
func TestOptionDocs(t *testing.T) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	require.NoError(t, err)
	var files []*ast.File
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		require.NoError(t, err)
		files = append(files, f)
	}
	pkg, err := doc.NewFromFiles(fset, files, "github.com/tdscore/tds/tdsui")
	require.NoError(t, err)
	var found []string
	for _, typ := range pkg.Types {
		if typ.Name != "Option" {
			continue
		}
		for _, fn := range typ.Funcs {
			found = append(found, fn.Name)
			last := strings.TrimSpace(fn.Doc)
			if i := strings.LastIndex(last, "Defaults to "); i >= 0 {
				last = last[i:]
			}
			require.True(t, strings.HasPrefix(last, "Defaults to ") && strings.HasSuffix(last, "."),
				"%s's doc must end with \"Defaults to ….\": %q", fn.Name, fn.Doc)
		}
	}
	require.ElementsMatch(t, []string{"WithAdminToken", "WithRegistry", "WithReconciler", "WithAlerter", "WithTrustedProxies",
		"WithSignInLimit", "WithAdminRefusalLimit", "WithMetricsToken", "WithRetryAfter", "WithLogger", "WithClock"}, found)
}

// The console mounts beside the webhook Handler under any prefix, in the
// standard mux and in chi.
func TestMountedBesideWebhooks(t *testing.T) {
	tdb := testdb.Open(t, "sqlite")
	hooks := newWebhooks(t, tdb)
	console := newTestHandler(t, tdb, WithAdminToken(testAdminToken))

	mux := http.NewServeMux()
	mux.Handle("/sync/webhooks/", http.StripPrefix("/sync", hooks))
	mux.Handle("/sync/", http.StripPrefix("/sync", console))
	mux.HandleFunc("GET /app", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "app") })
	a := serve(t, mux, "POST", "/sync/webhooks/products", testdb.Fixture(t, "product.json"), tds.HeaderWebhookKey, testdb.WebhookKey)
	require.Equal(t, http.StatusOK, a.status, a.raw)
	requireError(t, serve(t, mux, "GET", "/sync/admin/events", nil), 401, "bearer")
	events := serve(t, mux, "GET", "/sync/admin/events", nil, "Authorization", "Bearer "+testAdminToken)
	require.Equal(t, http.StatusOK, events.status, events.raw)
	require.Len(t, events.body["events"], 1)
	requireError(t, serve(t, mux, "GET", "/sync/admin/nowhere", nil), 404, "not found")
	requireError(t, serve(t, mux, "DELETE", "/sync/admin/events", nil), 405, "method not allowed")

	r := chi.NewRouter()
	r.Get("/", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "home") })
	r.Mount("/integrations/zoho/webhooks", http.StripPrefix("/integrations/zoho", hooks))
	r.Mount("/integrations/zoho", http.StripPrefix("/integrations/zoho", console))
	a = serve(t, r, "POST", "/integrations/zoho/webhooks/invoices", testdb.Fixture(t, "invoice.json"), tds.HeaderWebhookKey, testdb.WebhookKey)
	require.Equal(t, http.StatusOK, a.status, a.raw)
	stats := serve(t, r, "GET", "/integrations/zoho/queue/stats", nil, "Authorization", "Bearer "+testAdminToken)
	require.Equal(t, http.StatusOK, stats.status, stats.raw)
	require.EqualValues(t, 2, stats.body["total_jobs"])
	require.EqualValues(t, 2, stats.body["total_events"])
	// The console serves no webhook, nor health.
	requireError(t, serve(t, console, "POST", "/webhooks/products", testdb.Fixture(t, "product.json"), tds.HeaderWebhookKey, testdb.WebhookKey), 404, "not found")
	requireError(t, serve(t, console, "GET", "/health", nil), 404, "not found")
}

// RequireAdmin puts another handler (the reference server's /metrics)
// behind the admin API's authentication.
func TestRequireAdmin(t *testing.T) {
	tdb := testdb.Open(t, "sqlite")
	h := newTestHandler(t, tdb, WithAdminToken(testAdminToken))
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "metrics") })
	guarded := h.RequireAdmin(next)
	requireError(t, serve(t, guarded, "GET", "/metrics", nil), 401, adminUnauthorized)
	requireError(t, serve(t, guarded, "GET", "/metrics", nil, "Authorization", "Bearer wrong"), 401, adminUnauthorized)
	r := httptest.NewRequest("GET", "/metrics", nil)
	r.Header.Set("Authorization", "Bearer "+testAdminToken)
	w := httptest.NewRecorder()
	guarded.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "metrics", w.Body.String())

	// Without a token, nothing passes.
	off := newTestHandler(t, tdb).RequireAdmin(next)
	requireError(t, serve(t, off, "GET", "/metrics", nil, "Authorization", "Bearer "+testAdminToken), 401, adminUnauthorized)
}

// RequireMetrics admits a metrics token or an admin token; a metrics
// token opens no admin route and no dashboard.
func TestRequireMetrics(t *testing.T) {
	tdb := testdb.Open(t, "sqlite")
	const metricsToken = "metrics-token-0123456789"
	h := newTestHandler(t, tdb, WithAdminToken(testAdminToken), WithMetricsToken("old-metrics-token-0123", metricsToken))
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "metrics") })
	guarded := h.RequireMetrics(next)
	for _, tok := range []string{metricsToken, "old-metrics-token-0123", testAdminToken} {
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		guarded.ServeHTTP(w, r)
		require.Equal(t, http.StatusOK, w.Code, tok)
		require.Equal(t, "metrics", w.Body.String())
	}
	requireError(t, serve(t, guarded, "GET", "/metrics", nil), 401, adminUnauthorized)
	requireError(t, serve(t, guarded, "GET", "/metrics", nil, "Authorization", "Bearer wrong"), 401, adminUnauthorized)

	// Every admin route refuses it, and so do RequireAdmin and the sign-in.
	metricsBearer := []string{"Authorization", "Bearer " + metricsToken}
	for _, path := range []string{"/queue/stats", "/queue/throughput", "/admin/events", "/admin/events/1", "/admin/dead-letters",
		"/admin/sync-runs", "/admin/sync-runs/1", "/admin/alerts"} {
		requireError(t, serve(t, h, "GET", path, nil, metricsBearer...), 401, adminUnauthorized)
	}
	for _, path := range []string{"/admin/dead-letters/retry", "/admin/dead-letters/1/retry", "/admin/dead-letters/1/discard",
		"/admin/reconcile", "/admin/sync-runs/1/cancel", "/admin/alerts/1/ack", "/admin/alerts/1/silence"} {
		requireError(t, serve(t, h, "POST", path, []byte(`{}`), metricsBearer...), 401, adminUnauthorized)
	}
	requireError(t, serve(t, h.RequireAdmin(next), "GET", "/metrics", nil, metricsBearer...), 401, adminUnauthorized)
	require.Equal(t, http.StatusUnauthorized, signIn(h, "192.0.2.7:4000", "", metricsToken).Code)

	// Without an admin token, a metrics token still opens /metrics alone.
	only := newTestHandler(t, tdb, WithMetricsToken(metricsToken))
	r := httptest.NewRequest("GET", "/metrics", nil)
	r.Header.Set("Authorization", "Bearer "+metricsToken)
	w := httptest.NewRecorder()
	only.RequireMetrics(next).ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
	requireError(t, serve(t, only, "GET", "/queue/stats", nil, metricsBearer...), 401, adminUnauthorized)
}

// TestSessionKeyPerDeployment: the dashboard signs sessions with a
// random key kept in the database, so every process on it accepts a
// cookie, and another deployment with the same admin token does not.
func TestSessionKeyPerDeployment(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		h1 := newTestHandler(t, tdb, WithAdminToken(testAdminToken))
		h2 := newTestHandler(t, tdb, WithAdminToken(testAdminToken))
		other := newTestHandler(t, testdb.Open(t, tdb.Name), WithAdminToken(testAdminToken))
		w := signIn(h1, "192.0.2.1:4000", "", testAdminToken)
		require.Equal(t, http.StatusSeeOther, w.Code)
		cookies := w.Result().Cookies()
		require.Len(t, cookies, 1)
		page := func(h http.Handler) int {
			r := httptest.NewRequest("GET", "/ui/events", nil)
			r.AddCookie(cookies[0])
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w.Code
		}
		require.Equal(t, http.StatusOK, page(h1))
		require.Equal(t, http.StatusOK, page(h2), "another process on the same database")
		require.Equal(t, http.StatusSeeOther, page(other), "another deployment with the same token")
	})
}

// signIn posts token to the sign-in form from the address remote, with
// X-Forwarded-For xff when it is not "".
func signIn(h http.Handler, remote, xff, token string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", "/ui/login", strings.NewReader(url.Values{"token": {token}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = remote
	if xff != "" {
		r.Header.Set("X-Forwarded-For", xff)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestSignInLimit: failed sign-ins are limited per client address, by
// the console's own limiter, and told to the Alerter.
func TestSignInLimit(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		clock := testkit.NewClock()
		var logs testkit.LogBuffer
		a, err := tdsalert.New(tdb.DB, tdsalert.WithClock(clock.Now), tdsalert.WithLogger(testdb.QuietLogger),
			tdsalert.WithRules(testdb.OnlyRule(alert.RuleAuthFailures, "threshold: 100")))
		require.NoError(t, err)
		t.Cleanup(func() { _ = a.Close(t.Context()) })
		h := newTestHandler(t, tdb, WithAdminToken(testAdminToken), WithClock(clock.Now), WithLogger(logs.Logger()),
			WithSignInLimit(3, time.Minute), WithTrustedProxies("10.0.0.1"), WithAlerter(a))
		const attacker = "192.0.2.1:4000"

		for range 3 {
			w := signIn(h, attacker, "", "not-the-token")
			require.Equal(t, http.StatusUnauthorized, w.Code)
			require.Contains(t, w.Body.String(), "That is not an admin token.")
		}
		w := signIn(h, attacker, "", "not-the-token")
		require.Equal(t, http.StatusTooManyRequests, w.Code)
		require.Contains(t, w.Body.String(), "Too many failed sign-ins from this address: wait a minute.")
		w = signIn(h, attacker, "", testAdminToken)
		require.Equal(t, http.StatusSeeOther, w.Code, "the right token is checked first, and never waits")
		require.NotEmpty(t, w.Result().Cookies())

		// Other addresses are not affected; behind the trusted proxy, the
		// forwarded address counts.
		require.Equal(t, http.StatusUnauthorized, signIn(h, "192.0.2.2:4000", "", "not-the-token").Code)
		require.Equal(t, http.StatusUnauthorized, signIn(h, "10.0.0.1:4000", "198.51.100.7", "not-the-token").Code)
		require.Equal(t, http.StatusTooManyRequests, signIn(h, "10.0.0.1:4000", "192.0.2.1", "not-the-token").Code)

		// The allowance refills: 3 a minute, one every 20 s.
		clock.Advance(20 * time.Second)
		require.Equal(t, http.StatusUnauthorized, signIn(h, attacker, "", "not-the-token").Code)
		require.Equal(t, http.StatusTooManyRequests, signIn(h, attacker, "", "not-the-token").Code)
		clock.Advance(20 * time.Second)
		require.Equal(t, 6, strings.Count(logs.String(), "dashboard sign-in refused"), logs.String())

		// The Alerter counted the three failures.
		require.NoError(t, a.Evaluate(t.Context()))
		alerts, err := a.Alerts(t.Context(), "")
		require.NoError(t, err)
		require.Empty(t, alerts, "6 is below the threshold")
		h2 := newTestHandler(t, tdb, WithAdminToken(testAdminToken), WithClock(clock.Now), WithAlerter(a), WithSignInLimit(0, 0))
		for range 100 {
			require.Equal(t, http.StatusUnauthorized, signIn(h2, attacker, "", "not-the-token").Code, "no limit")
		}
		require.NoError(t, a.Evaluate(t.Context()))
		alerts, err = a.Alerts(t.Context(), "")
		require.NoError(t, err)
		require.Len(t, alerts, 1)
		require.Equal(t, alert.RuleAuthFailures, alerts[0].Rule)
		require.Equal(t, 106.0, alerts[0].Value)
	})
}

// TestSignInRightTokenAfterFailures: others' failed sign-ins from an
// address never keep an operator with the right token out; wrong tokens
// from it go on being limited.
func TestSignInRightTokenAfterFailures(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		h := newTestHandler(t, tdb, WithAdminToken(testAdminToken))
		const shared = "192.0.2.1:4000"
		for range DefaultSignInLimit {
			require.Equal(t, http.StatusUnauthorized, signIn(h, shared, "", "not-the-token").Code)
		}
		require.Equal(t, http.StatusTooManyRequests, signIn(h, shared, "", "not-the-token").Code)
		w := signIn(h, shared, "", testAdminToken)
		require.Equal(t, http.StatusSeeOther, w.Code, w.Body.String())
		require.NotEmpty(t, w.Result().Cookies())
		require.Equal(t, http.StatusTooManyRequests, signIn(h, shared, "", "not-the-token").Code)
	})
}

// Without an admin token the dashboard says it is off and signs no one in.
func TestDashboardOff(t *testing.T) {
	tdb := testdb.Open(t, "sqlite")
	h := newTestHandler(t, tdb)
	r := httptest.NewRequest("GET", "/ui/login", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Body.String(), "The dashboard is off: the server has no admin token (WithAdminToken).")
	w = signIn(h, "192.0.2.1:4000", "", "")
	require.Equal(t, http.StatusUnauthorized, w.Code)
	require.Empty(t, w.Result().Cookies())
	w = signIn(h, "192.0.2.1:4000", "", testAdminToken)
	require.Equal(t, http.StatusUnauthorized, w.Code)
}
