package tdsui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/ui"
	"github.com/tdscore/tds/internal/zohofake"
	"github.com/tdscore/tds/tdsalert"
	"github.com/tdscore/tds/tdsreconcile"
)

// dashboardEnv is the reference server's console (examples/server: the
// Zoho registry, admin token, trusted proxies, an Alerter and a Reconciler
// against a fake Zoho) beside its webhook Handler, a Worker syncing into
// the mirror tables, and an HTTP server mounting the console at the root
// and under /ops.
type dashboardEnv struct {
	tdb     *testdb.DB
	h       *Handler
	hooks   *tds.Handler
	srv     *httptest.Server
	fake    *zohofake.Server
	failing sync.Map // entity ids the Syncer fails permanently
	later   sync.Map // entity ids the Syncer puts off for an hour
	flaky   sync.Map // entity ids the Syncer fails once, then syncs
}

func newDashboardEnv(t *testing.T, tdb *testdb.DB) *dashboardEnv {
	t.Helper()
	reg := tds.ZohoRegistry()
	log := testdb.QuietLogger
	fake := testdb.Zoho(t, tdb.DB)
	alerter, err := tdsalert.New(tdb.DB, tdsalert.WithLogger(log))
	require.NoError(t, err)
	t.Cleanup(func() { _ = alerter.Close(context.Background()) })
	e := &dashboardEnv{tdb: tdb, fake: fake}
	e.hooks = testdb.Handler(t, tdb.DB, tds.WithRegistry(reg), tds.WithWebhookKeys(testdb.WebhookKey),
		tds.WithTrustedProxies("10.0.0.0/8"), tds.WithWebhookObserver(alerter.ObserveWebhook))
	rc, err := tdsreconcile.New(tdb.DB, e.hooks.Processor(), tdsreconcile.ZohoAPI(testdb.ZohoAPI(fake.URL())),
		tdsreconcile.WithLogger(log), tdsreconcile.WithSchedule(0, 0), tdsreconcile.WithHooks(alerter.ReconcileHooks()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = rc.Close() })
	e.h, err = New(tdb.DB, WithRegistry(reg), WithLogger(log), WithAdminToken(testAdminToken),
		WithTrustedProxies("10.0.0.0/8"), WithAlerter(alerter), WithReconciler(rc))
	require.NoError(t, err)

	mirror, err := tds.NewMirrorSyncer(tds.WithRegistry(reg))
	require.NoError(t, err)
	syncer := tds.SyncFunc(func(ctx context.Context, tx bun.Tx, job *tds.SyncJob) error {
		if _, bad := e.failing.Load(job.EntityID); bad {
			return tds.Permanent(tds.WithCode("refused", errors.New("the test refuses "+job.EntityID)))
		}
		if _, once := e.flaky.LoadAndDelete(job.EntityID); once {
			return tds.RetryAfter(0, tds.WithCode("flaky", errors.New("the test fails "+job.EntityID+" once")))
		}
		if _, wait := e.later.Load(job.EntityID); wait {
			return tds.RetryAfter(time.Hour, errors.New("the test puts off "+job.EntityID))
		}
		return mirror.Sync(ctx, tx, job)
	})
	testdb.StartWorker(t, tdb.DB, time.Now, syncer)

	mux := http.NewServeMux()
	mux.Handle("/ops/", http.StripPrefix("/ops", e.h))
	mux.Handle("/webhooks/", e.hooks)
	mux.Handle("/", e.h)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// seed posts n products (the ids in fail dead-lettered) and waits until
// the worker has finished with every job.
func (e *dashboardEnv) seed(t *testing.T, ids []string, fail ...string) {
	t.Helper()
	for _, id := range fail {
		e.failing.Store(id, true)
	}
	for _, id := range ids {
		body := fmt.Sprintf(`{"source":"zoho","event_type":"update","entity_type":"product","entity_id":%q,"data":{"item_id":%q,"name":"Product %s","last_modified_time":"2026-11-20T10:00:00+0000"}}`, id, id, id)
		require.Equal(t, http.StatusOK, webhook(t, e.hooks, "products", []byte(body)).status)
	}
	e.waitIdle(t)
}

// waitIdle polls until no job is pending, processing or in retry.
func (e *dashboardEnv) waitIdle(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		s, err := e.h.queue.Stats(context.Background())
		require.NoError(t, err)
		return s.ByStatus[tds.StatusPending]+s.ByStatus[tds.StatusProcessing]+s.ByStatus[tds.StatusRetry] == 0
	}, 20*time.Second, 20*time.Millisecond)
}

// browserClient is an HTTP client with a cookie jar that does not follow
// redirects.
func browserClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func fetchPage(t *testing.T, c *http.Client, method, u string, form url.Values) (int, http.Header, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	require.NoError(t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestDashboardSession checks sign-in, CSRF and sign-out over plain HTTP;
// the browser test drives the pages themselves.
func TestDashboardSession(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		e := newDashboardEnv(t, tdb)
		c := browserClient(t)
		root := e.srv.URL + "/ops/ui/"

		status, hdr, _ := fetchPage(t, c, "GET", root, nil)
		require.Equal(t, http.StatusSeeOther, status)
		require.Equal(t, "./login", hdr.Get("Location"))
		status, hdr, body := fetchPage(t, c, "GET", root+"login", nil)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, ui.ContentSecurityPolicy, hdr.Get("Content-Security-Policy"))
		require.NotContains(t, hdr.Get("Content-Security-Policy"), "unsafe-inline")
		require.NotContains(t, body, "style=")
		require.NotContains(t, body, "<script>")

		// A webhook key is not an admin token.
		status, _, body = fetchPage(t, c, "POST", root+"login", url.Values{"token": {testdb.WebhookKey}})
		require.Equal(t, http.StatusUnauthorized, status)
		require.Contains(t, body, "not an admin token")

		status, hdr, _ = fetchPage(t, c, "POST", root+"login", url.Values{"token": {testAdminToken}})
		require.Equal(t, http.StatusSeeOther, status)
		cookie := hdr.Get("Set-Cookie")
		require.Contains(t, cookie, "HttpOnly")
		require.Contains(t, cookie, "SameSite=Strict")
		require.NotContains(t, cookie, "Secure", "plain HTTP from an untrusted peer")
		require.NotContains(t, cookie, "Path=", "scoped by the browser to the dashboard's directory")
		require.NotContains(t, cookie, testAdminToken)

		status, _, body = fetchPage(t, c, "GET", root, nil)
		require.Equal(t, http.StatusOK, status)
		csrf := csrfField.FindStringSubmatch(body)[1]
		require.NotContains(t, body, testAdminToken)

		// A POST without the CSRF token, or with another's, is refused.
		status, _, body = fetchPage(t, c, "POST", root+"dead-letters/retry-filter", url.Values{})
		require.Equal(t, http.StatusForbidden, status)
		require.Contains(t, body, "CSRF token is missing or wrong")
		status, _, _ = fetchPage(t, c, "POST", root+"dead-letters/retry-filter", url.Values{"csrf": {"AAAA"}})
		require.Equal(t, http.StatusForbidden, status)
		status, _, body = fetchPage(t, c, "POST", root+"dead-letters/retry-filter", url.Values{"csrf": {csrf}})
		require.Equal(t, http.StatusOK, status)
		require.Contains(t, body, "0 dead letters would be queued again")

		// Sign-out ends the session: the old cookie is refused afterwards,
		// even replayed by a client that kept it.
		u, _ := url.Parse(root)
		old := c.Jar.Cookies(u)
		require.Len(t, old, 1)
		status, hdr, _ = fetchPage(t, c, "POST", root+"logout", url.Values{"csrf": {csrf}})
		require.Equal(t, http.StatusSeeOther, status)
		require.Equal(t, "./login", hdr.Get("Location"))
		replay := browserClient(t)
		replay.Jar.SetCookies(u, old)
		status, _, _ = fetchPage(t, replay, "GET", root, nil)
		require.Equal(t, http.StatusSeeOther, status)
		status, _, _ = fetchPage(t, replay, "POST", root+"dead-letters/retry-filter", url.Values{"csrf": {csrf}})
		require.Equal(t, http.StatusUnauthorized, status)

		// Behind a trusted proxy that says https, the cookie is Secure.
		d := &dashboard{h: e.h}
		r := httptest.NewRequest("POST", "/ui/login", nil)
		r.RemoteAddr = "10.1.2.3:5555"
		r.Header.Set("X-Forwarded-Proto", "https")
		require.True(t, d.secure(r))
		r.RemoteAddr = "192.0.2.1:5555"
		require.False(t, d.secure(r), "an untrusted peer's header is not believed")
	})
}

func TestThroughputAPI(t *testing.T) {
	tdb := testdb.Open(t, "sqlite")
	e := newDashboardEnv(t, tdb)
	e.seed(t, []string{"p1", "p2", "p3"})
	a := adminGet(t, e.h, "/queue/throughput")
	require.Equal(t, http.StatusOK, a.status)
	minutes := a.body["minutes"].([]any)
	require.Len(t, minutes, 60)
	var total float64
	for _, m := range minutes {
		total += m.(map[string]any)["completed"].(float64)
	}
	require.Equal(t, 3.0, total)
	last := minutes[59].(map[string]any)
	require.Positive(t, last["latency_max_seconds"].(float64))
}
