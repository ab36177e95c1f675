package tds

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds/internal/verify"
)

const (
	testWebhookKey = "test-webhook-key-0123456789"
	testAdminToken = "test-admin-token-9876543210"
)

// quietLogger keeps expected refusals out of the test output.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTestHandler returns a Handler on tdb with the test key and admin token
// (unless opts choose other verifiers) and a silent logger.
func newTestHandler(t *testing.T, tdb *testDB, opts ...Option) *Handler {
	t.Helper()
	all := append([]Option{WithLogger(quietLogger)}, opts...)
	if len(opts) == 0 {
		all = append(all, WithWebhookKeys(testWebhookKey))
	}
	h, err := NewHandler(tdb.db, all...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	return h
}

// fixtureBytes reads testdata/envelope/name.
func fixtureBytes(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "envelope", name))
	require.NoError(t, err)
	return b
}

// answer is a decoded response.
type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// serve sends one request through h. headers are name, value pairs; a
// request with a body is JSON unless they say otherwise.
func serve(t *testing.T, h http.Handler, method, path string, body []byte, headers ...string) answer {
	t.Helper()
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return decodeAnswer(t, w.Code, w.Header(), w.Body.Bytes())
}

func decodeAnswer(t *testing.T, status int, header http.Header, raw []byte) answer {
	t.Helper()
	a := answer{status: status, header: header, raw: string(raw)}
	require.Equal(t, "application/json", header.Get("Content-Type"), "every answer is JSON: %s", raw)
	require.NoError(t, json.Unmarshal(raw, &a.body), "body: %s", raw)
	return a
}

// webhook posts body to /webhooks/route with the test key.
func webhook(t *testing.T, h http.Handler, route string, body []byte, headers ...string) answer {
	t.Helper()
	return serve(t, h, http.MethodPost, "/webhooks/"+route, body, append([]string{HeaderWebhookKey, testWebhookKey}, headers...)...)
}

// requireError checks the error shape: success false and a message that
// leaks no internals.
func requireError(t *testing.T, a answer, status int, contains string) {
	t.Helper()
	require.Equal(t, status, a.status, a.raw)
	require.Equal(t, false, a.body["success"], a.raw)
	msg, _ := a.body["error"].(string)
	require.NotEmpty(t, msg, a.raw)
	require.Contains(t, msg, contains)
	for _, leak := range []string{"tds:", "sql", "SQL", "pgdriver", "goroutine"} {
		require.NotContains(t, msg, leak)
	}
}

func TestWebhookAcceptedThenDuplicate(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		h := newTestHandler(t, tdb)
		body := fixtureBytes(t, "product.json")

		first := webhook(t, h, "products", body)
		require.Equal(t, http.StatusOK, first.status, first.raw)
		require.Equal(t, true, first.body["success"])
		require.Equal(t, true, first.body["queued"])
		require.Equal(t, false, first.body["duplicate"])
		require.NotZero(t, first.body["event_id"])
		require.Contains(t, first.body["idempotency_key"], "zoho:product:460000000038080:update:h:")
		require.NotEmpty(t, first.body["message"])

		again := webhook(t, h, "products", body)
		require.Equal(t, http.StatusOK, again.status, again.raw)
		require.Equal(t, true, again.body["success"])
		require.Equal(t, true, again.body["duplicate"])
		require.Equal(t, first.body["event_id"], again.body["event_id"])
		require.Equal(t, first.body["idempotency_key"], again.body["idempotency_key"])

		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))

		// Every registered route takes its own fixture.
		for route, f := range map[string]string{
			"customers": "customer.json", "invoices": "invoice.json", "bills": "bill.json",
			"credit-notes": "credit_note.json", "stock": "stock.json", "prices": "price_list.json",
		} {
			a := webhook(t, h, route, fixtureBytes(t, f))
			require.Equal(t, http.StatusOK, a.status, "%s: %s", route, a.raw)
			require.Equal(t, true, a.body["queued"], route)
		}
	})
}

func TestWebhookInvalidIsStoredNotQueued(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		h := newTestHandler(t, tdb)
		body := fixtureBytes(t, "invalid_product_missing_name.json")
		a := webhook(t, h, "products", body)
		require.Equal(t, http.StatusUnprocessableEntity, a.status, a.raw)
		require.Equal(t, false, a.body["success"])
		require.NotZero(t, a.body["event_id"])
		errs, _ := a.body["validation_errors"].([]any)
		require.Equal(t, []any{map[string]any{"field": "data.name", "message": "is required"}}, errs)
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events WHERE NOT is_valid"))
		require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))

		// Redelivering it is a duplicate: the sender must stop retrying.
		again := webhook(t, h, "products", body)
		require.Equal(t, http.StatusOK, again.status, again.raw)
		require.Equal(t, true, again.body["duplicate"])
		require.Equal(t, false, again.body["queued"])
		require.Equal(t, a.body["event_id"], again.body["event_id"])
	})
}

func TestWebhookRefusedStoresNothing(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		h := newTestHandler(t, tdb, WithWebhookKeys(testWebhookKey), WithMaxBodyBytes(4096))
		product := fixtureBytes(t, "product.json")
		key := []string{HeaderWebhookKey, testWebhookKey}
		for _, tc := range []struct {
			name     string
			method   string
			path     string
			body     []byte
			headers  []string
			status   int
			contains string
		}{
			{"malformed JSON", "POST", "/webhooks/products", []byte(`{"event_type": "update",`), key, 400, "malformed JSON"},
			{"not an object", "POST", "/webhooks/products", []byte(`[1, 2]`), key, 400, "JSON object"},
			{"missing entity_type", "POST", "/webhooks/products", []byte(`{"event_type":"update","entity_id":"1","data":{}}`), key, 400, "entity_type is required"},
			{"missing entity_id", "POST", "/webhooks/products", []byte(`{"event_type":"update","entity_type":"product","data":{}}`), key, 400, "entity_id is required"},
			{"missing event_type", "POST", "/webhooks/products", []byte(`{"entity_type":"product","entity_id":"1","data":{}}`), key, 400, "event_type is required"},
			{"entity type not the route's", "POST", "/webhooks/products", fixtureBytes(t, "customer.json"), key, 400, `entity_type "customer" does not match the route "products"`},
			{"no key", "POST", "/webhooks/products", product, nil, 401, "missing webhook key or signature"},
			{"wrong key", "POST", "/webhooks/products", product, []string{HeaderWebhookKey, "nope"}, 401, "invalid webhook key or signature"},
			{"admin token as webhook key", "POST", "/webhooks/products", product, []string{HeaderWebhookKey, testAdminToken}, 401, "invalid"},
			{"unknown route", "POST", "/webhooks/widgets", product, key, 404, `unknown webhook route "widgets"`},
			{"unknown path", "POST", "/webhook/products", product, key, 404, "not found"},
			{"wrong method", "GET", "/webhooks/products", nil, key, 405, "method not allowed"},
			{"wrong method on health", "POST", "/health", nil, key, 405, "method not allowed"},
			{"body over the limit", "POST", "/webhooks/products", bytes.Repeat([]byte(" "), 5000), key, 413, "larger than 4096 bytes"},
			{"text body", "POST", "/webhooks/products", product, append([]string{"Content-Type", "text/plain"}, key...), 415, "application/json"},
			{"multipart body", "POST", "/webhooks/products", product, append([]string{"Content-Type", "multipart/form-data; boundary=x"}, key...), 415, "application/x-www-form-urlencoded"},
			{"form without the id", "POST", "/webhooks/products", []byte("name=Pump"), append([]string{"Content-Type", "application/x-www-form-urlencoded"}, key...), 400, "form field item_id is required"},
			{"malformed form", "POST", "/webhooks/products", []byte("item_id=%zz"), append([]string{"Content-Type", "application/x-www-form-urlencoded"}, key...), 400, "malformed form body"},
			{"default payload without the id", "POST", "/webhooks/products", []byte(`{"item":{"name":"Pump"}}`), key, 400, "item.item_id is required"},
			{"default payload not an object", "POST", "/webhooks/products", []byte(`{"item":"1"}`), key, 400, "item must be a JSON object"},
			{"default payload of another module", "POST", "/webhooks/products", []byte(`{"contact":{"contact_id":"1"}}`), key, 400, "neither a tds envelope"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a := serve(t, h, tc.method, tc.path, tc.body, tc.headers...)
				requireError(t, a, tc.status, tc.contains)
				if tc.status == http.StatusMethodNotAllowed {
					require.NotEmpty(t, a.header.Get("Allow"))
				}
				require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
			})
		}

		// A body over the limit without Content-Length is cut off while read.
		r := httptest.NewRequest("POST", "/webhooks/products", io.MultiReader(bytes.NewReader(product), strings.NewReader(strings.Repeat(" ", 5000))))
		r.ContentLength = -1
		r.Header.Set(HeaderWebhookKey, testWebhookKey)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		requireError(t, decodeAnswer(t, w.Code, w.Header(), w.Body.Bytes()), 413, "larger than")

		// JSON with a charset, +json types and no content type at all are accepted.
		for i, ct := range []string{"application/json; charset=utf-8", "application/vnd.zoho+json", ""} {
			body := []byte(strings.Replace(string(product), "Hydraulic Pump 3kW", "Pump "+string(rune('A'+i)), 1))
			r := httptest.NewRequest("POST", "/webhooks/products", bytes.NewReader(body))
			r.Header.Set(HeaderWebhookKey, testWebhookKey)
			if ct != "" {
				r.Header.Set("Content-Type", ct)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			require.Equal(t, http.StatusOK, w.Code, "%q: %s", ct, w.Body)
		}
	})
}

func TestWebhookDatabaseUnavailable(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		db, err := Open(context.Background(), tdb.url)
		require.NoError(t, err)
		h, err := NewHandler(db, WithWebhookKeys(testWebhookKey), WithRetryAfter(45*time.Second), WithLogger(quietLogger))
		require.NoError(t, err)
		defer h.Close()
		require.Equal(t, http.StatusOK, serve(t, h, "GET", "/health", nil).status)
		require.NoError(t, db.Close())

		a := webhook(t, h, "products", fixtureBytes(t, "product.json"))
		requireError(t, a, http.StatusServiceUnavailable, "database unavailable")
		require.Equal(t, "45", a.header.Get("Retry-After"))

		health := serve(t, h, "GET", "/health", nil)
		require.Equal(t, http.StatusServiceUnavailable, health.status, health.raw)
		require.Equal(t, "unhealthy", health.body["status"])
		require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
	})
}

func TestWebhookMetadata(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		h := newTestHandler(t, tdb, WithWebhookKeys(testWebhookKey), WithTrustedProxies("192.0.2.0/24", "::1"))
		r := httptest.NewRequest("POST", "/webhooks/products", bytes.NewReader(fixtureBytes(t, "product.json")))
		r.RemoteAddr = "192.0.2.10:40000"
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set(HeaderWebhookKey, testWebhookKey)
		r.Header.Set("User-Agent", "Zoho-Webhook/1.0")
		// The left entry is the client's claim; the proxies appended the rest.
		r.Header.Set("X-Forwarded-For", "10.9.9.9, 203.0.113.7, 192.0.2.99")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())

		ev, err := NewInboxOrFail(t, tdb).Get(context.Background(), 1)
		require.NoError(t, err)
		md := ev.RequestMetadata
		require.Equal(t, "203.0.113.7", md.ClientIP)
		require.True(t, md.SignatureVerified)
		require.Equal(t, VerifierWebhookKey, md.Verifier)
		require.Equal(t, []string{Redacted}, md.Headers["X-Webhook-Key"])
		require.Equal(t, []string{"Zoho-Webhook/1.0"}, md.Headers["User-Agent"])
		require.NotContains(t, w.Body.String(), testWebhookKey)
	})
}

func TestWebhookConcurrentIdenticalDeliveries(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		srv := httptest.NewServer(newTestHandler(t, tdb))
		t.Cleanup(srv.Close)
		body := fixtureBytes(t, "product.json")
		const n = 16
		answers := make([]map[string]any, n)
		statuses := make([]int, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				req, err := http.NewRequest("POST", srv.URL+"/webhooks/products", bytes.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(HeaderWebhookKey, testWebhookKey)
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				statuses[i] = resp.StatusCode
				_ = json.NewDecoder(resp.Body).Decode(&answers[i])
			})
		}
		close(start)
		wg.Wait()
		fresh := 0
		for i := range n {
			require.Equal(t, http.StatusOK, statuses[i], "%v", answers[i])
			require.Equal(t, answers[0]["event_id"], answers[i]["event_id"])
			if answers[i]["duplicate"] == false {
				fresh++
			}
		}
		require.Equal(t, 1, fresh, "exactly one delivery is new")
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))
	})
}

func TestHandlerUnderStripPrefix(t *testing.T) {
	tdb := openTestDB(t, "sqlite")
	h := newTestHandler(t, tdb)
	mux := http.NewServeMux()
	mux.Handle("/sync/", http.StripPrefix("/sync", h))
	mux.HandleFunc("GET /app", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "app") })

	a := serve(t, mux, "POST", "/sync/webhooks/products", fixtureBytes(t, "product.json"), HeaderWebhookKey, testWebhookKey)
	require.Equal(t, http.StatusOK, a.status, a.raw)
	require.Equal(t, true, a.body["queued"])
	require.Equal(t, "healthy", serve(t, mux, "GET", "/sync/health", nil).body["status"])
	requireError(t, serve(t, mux, "GET", "/sync/webhooks/products", nil), 405, "method not allowed")
	require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
}

// TestHandlerServesOnlyWebhooksAndHealth: a host that mounts the Handler
// gets the webhook and health routes, and none of the console's (package
// tdsui) or the metrics' (package tdsprom), whatever the credentials.
func TestHandlerServesOnlyWebhooksAndHealth(t *testing.T) {
	h := newTestHandler(t, openTestDB(t, "sqlite"))
	a := serve(t, h, "POST", "/webhooks/products", fixtureBytes(t, "product.json"), HeaderWebhookKey, testWebhookKey)
	require.Equal(t, http.StatusOK, a.status, a.raw)
	for _, path := range []string{"/health", "/health/live", "/health/ready"} {
		require.Equal(t, http.StatusOK, serve(t, h, "GET", path, nil).status, path)
	}
	for _, path := range []string{"/ui/", "/ui/login", "/admin/events", "/admin/dead-letters", "/queue/stats", "/queue/throughput", "/metrics"} {
		for _, auth := range []string{"", "Bearer " + testWebhookKey} {
			requireError(t, serve(t, h, "GET", path, nil, "Authorization", auth), 404, "not found")
		}
	}
}

func TestHandlerInChiRouter(t *testing.T) {
	tdb := openTestDB(t, "sqlite")
	h := newTestHandler(t, tdb)
	r := chi.NewRouter()
	r.Get("/", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "home") })
	r.Mount("/integrations/zoho", http.StripPrefix("/integrations/zoho", h))

	a := serve(t, r, "POST", "/integrations/zoho/webhooks/invoices", fixtureBytes(t, "invoice.json"), HeaderWebhookKey, testWebhookKey)
	require.Equal(t, http.StatusOK, a.status, a.raw)
	require.Equal(t, true, a.body["queued"])
	require.Equal(t, "healthy", serve(t, r, "GET", "/integrations/zoho/health", nil).body["status"])
	requireError(t, serve(t, r, "POST", "/integrations/zoho/webhooks/widgets", []byte(`{}`), HeaderWebhookKey, testWebhookKey), 404, "unknown webhook route")
	require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))
}

func TestHealth(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		h := newTestHandler(t, tdb)
		require.Equal(t, http.StatusOK, webhook(t, h, "products", fixtureBytes(t, "product.json")).status)
		a := serve(t, h, "GET", "/health", nil) // no credentials needed
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, map[string]any{
			"status":   "healthy",
			"database": "ok",
			"queue":    map[string]any{"pending": 1.0, "processing": 0.0, "retry": 0.0, "dead_letter": 0.0},
		}, a.body)
	})
}

func TestNewHandlerOptions(t *testing.T) {
	tdb := openTestDB(t, "sqlite")
	for _, tc := range []struct {
		name string
		opts []Option
		err  string
	}{
		{"no verifier fails closed", nil, "no webhook verifier"},
		{"without authentication and a key", []Option{WithoutAuthentication(), WithWebhookKeys(testWebhookKey)}, "WithoutAuthentication"},
		{"short webhook key", []Option{WithWebhookKeys(testWebhookKey, "fifteen-bytes!!")}, "WithWebhookKeys: a key of 15 bytes is too short"},
		{"short standard secret", []Option{WithStandardWebhooksSecrets("whsec_MDEyMzQ1Njc4OWFiY2Rl")}, "WithStandardWebhooksSecrets: a secret of 15 bytes"},
		{"empty key", []Option{WithWebhookKeys("")}, "WithWebhookKeys"},
		{"no keys", []Option{WithWebhookKeys()}, "WithWebhookKeys"},
		{"empty zoho secret", []Option{WithZohoSecret("")}, "WithZohoSecret: secret must be 12 to 50"},
		{"short zoho secret", []Option{WithZohoSecret("abc123")}, "WithZohoSecret: secret must be 12 to 50"},
		{"zoho secret not alphanumeric", []Option{WithZohoSecret("zoho-webhook-secret")}, "WithZohoSecret: secret must be letters and digits"},
		{"bad standard secret", []Option{WithStandardWebhooksSecrets("whsec_not base64!")}, "WithStandardWebhooksSecrets"},
		{"zero body limit", []Option{WithWebhookKeys(testWebhookKey), WithMaxBodyBytes(0)}, "WithMaxBodyBytes"},
		{"bad proxy", []Option{WithWebhookKeys(testWebhookKey), WithTrustedProxies("10.0.0.0/99")}, "WithTrustedProxies"},
		{"empty delivery id header", []Option{WithWebhookKeys(testWebhookKey), WithDeliveryIDHeader(" ")}, "WithDeliveryIDHeader"},
		{"short retry after", []Option{WithWebhookKeys(testWebhookKey), WithRetryAfter(0)}, "WithRetryAfter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewHandler(tdb.db, tc.opts...)
			require.ErrorContains(t, err, tc.err)
		})
	}
	_, err := NewHandler(nil, WithoutAuthentication())
	require.Error(t, err)
	_, err = NewHandler(tdb.db, WithoutAuthentication())
	require.NoError(t, err)
	_, err = NewHandler(tdb.db, WithZohoSecret("zohoSecretOld1"), WithZohoSecret("zohoSecretNew2"), WithStandardWebhooksSecrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), WithWebhookKeys("webhook-key-one-0001", "webhook-key-two-0002"))
	require.NoError(t, err)
}

// TestHandlerSharesOneRegistry: the Handler's routes, Processor, Inbox and
// Queue read one configuration, so a type registered through the options,
// or later on h.Processor().Registry(), is routed, validated and queued.
func TestHandlerSharesOneRegistry(t *testing.T) {
	t.Run("through the options", func(t *testing.T) {
		tdb := openTestDB(t, "sqlite")
		reg, err := NewRegistry(EntityType{Name: "widget", Route: "widgets", IDField: "widget_id", MaxAttempts: 7})
		require.NoError(t, err)
		h := newTestHandler(t, tdb, WithWebhookKeys(testWebhookKey), WithRegistry(reg))
		require.Same(t, reg, h.Processor().Registry())

		a := webhook(t, h, "widgets", []byte(`{"event_type":"update","entity_type":"widget","entity_id":"w1","data":{"widget_id":"w1"}}`))
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, true, a.body["queued"], a.raw)
		require.Equal(t, 7, count(t, tdb.db, "SELECT max_retry_attempts FROM tds_sync_queue WHERE entity_type = 'widget'"))
		a = webhook(t, h, "products", fixtureBytes(t, "product.json"))
		require.Equal(t, http.StatusNotFound, a.status, "the Zoho preset is not in reg: %s", a.raw)
	})
	t.Run("after construction, on the default registry", func(t *testing.T) {
		tdb := openTestDB(t, "sqlite")
		h := newTestHandler(t, tdb, WithWebhookKeys(testWebhookKey))
		require.NoError(t, h.Processor().Registry().Register(EntityType{Name: "gadget", Route: "gadgets", IDField: "gadget_id"}))

		a := webhook(t, h, "gadgets", []byte(`{"event_type":"create","entity_type":"gadget","entity_id":"g1","data":{"gadget_id":"g1"}}`))
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, true, a.body["queued"], a.raw)
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events WHERE entity_type = 'gadget'"))
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE entity_type = 'gadget'"))
	})
}

func TestWebhookWithoutAuthentication(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		h := newTestHandler(t, tdb, WithoutAuthentication(), WithDeliveryIDHeader("X-Delivery-Id"))
		body := fixtureBytes(t, "product.json")
		a := serve(t, h, "POST", "/webhooks/products", body, "X-Delivery-Id", "d-1")
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, "zoho:product:460000000038080:update:d:d-1", a.body["idempotency_key"])
		// Another delivery id makes the same content a new delivery.
		b := serve(t, h, "POST", "/webhooks/products", body, "X-Delivery-Id", "d-2")
		require.Equal(t, false, b.body["duplicate"], b.raw)
		ev, err := NewInboxOrFail(t, tdb).Get(context.Background(), 1)
		require.NoError(t, err)
		require.False(t, ev.RequestMetadata.SignatureVerified)
		require.Empty(t, ev.RequestMetadata.Verifier)
		// An unsigned Webhook-Id is not the operator's chosen header.
		w := serve(t, h, "POST", "/webhooks/customers", fixtureBytes(t, "customer.json"), HeaderWebhookID, "w-1")
		require.Contains(t, w.body["idempotency_key"], ":create:h:", w.raw)
		long := serve(t, h, "POST", "/webhooks/products", body, "X-Delivery-Id", strings.Repeat("x", 201))
		requireError(t, long, 400, "delivery id")
	})
}

func TestWithoutAuthenticationWarns(t *testing.T) {
	tdb := openTestDB(t, "sqlite")
	var logs logBuffer
	h, err := NewHandler(tdb.db, WithLogger(logs.Logger()), WithoutAuthentication())
	require.NoError(t, err)
	require.NoError(t, h.Close())
	require.Contains(t, logs.String(), "level=WARN")
	require.Contains(t, logs.String(), "WithoutAuthentication")

	var quiet logBuffer
	h, err = NewHandler(tdb.db, WithLogger(quiet.Logger()), WithWebhookKeys(testWebhookKey))
	require.NoError(t, err)
	require.NoError(t, h.Close())
	require.NotContains(t, quiet.String(), "WithoutAuthentication")
}

// FuzzWebhookDecode feeds arbitrary bodies, content types, queries and
// headers through the part of the request path that runs before the
// database: content type, key and signature checks on the raw bytes and
// parameters, payload parsing. It must never panic, accept only what a
// verifier vouched for, and always accept a correct signature. The seeds
// run as an ordinary test.
func FuzzWebhookDecode(f *testing.F) {
	now := time.Unix(1614265330, 0)
	const zohoKey = "zohoSecret0123"
	swKey, err := verify.DecodeStandardSecret(swExampleSecret)
	require.NoError(f, err)
	d := &webhookDecoder{
		verifiers: []verify.Verifier{
			verify.NewKey([]string{testWebhookKey}),
			verify.NewStandard([][]byte{swKey}, StandardWebhooksTolerance),
			verify.NewZoho([][]byte{[]byte(zohoKey)}),
		},
		deliveryIDHeader: "X-Delivery-Id",
		now:              func() time.Time { return now },
		reg:              ZohoRegistry(),
	}
	products, _ := ZohoRegistry().ByRoute("products")
	const form = "application/x-www-form-urlencoded"

	entries, err := os.ReadDir(filepath.Join("testdata", "envelope"))
	require.NoError(f, err)
	for _, e := range entries {
		body := fixtureBytes(f, e.Name())
		f.Add(body, "application/json", "", testWebhookKey, "", "", "", "")
		f.Add(body, "application/json", "", "", zohoSign(zohoKey, body), "", "", "")
		f.Add(body, "", "", "", "", "msg_1", swExampleTimestamp, swSign(f, swExampleSecret, "msg_1", swExampleTimestamp, body))
	}
	item := []byte(`{"item":{"item_id":"1","name":"Pump","last_modified_time":"2026-11-20T10:15:30+0530"}}`)
	q := url.Values{"event": {"update"}, "token": {"abc"}}
	f.Add(item, "application/json", q.Encode(), "", zohoSignQuery(zohoKey, q, item), "", "", "")
	flat := []byte("item_id=1&name=Pump")
	f.Add(flat, form, "event=create", "", zohoSignQuery(zohoKey, mergeValues(url.Values{"event": {"create"}}, url.Values{"item_id": {"1"}, "name": {"Pump"}}), flat), "", "", "")
	js := []byte("JSONString=" + url.QueryEscape(string(item)))
	f.Add(js, form, "", testWebhookKey, "", "", "", "")
	f.Add([]byte("JSONString=1&JSONString=2"), form, "", testWebhookKey, "", "", "", "")
	f.Add([]byte("%zz"), form, "", testWebhookKey, "", "", "", "")
	f.Add([]byte(`{"item":{"name":"no id"}}`), "application/json", "", testWebhookKey, "", "", "", "")
	f.Add([]byte(`{"item":[1]}`), "application/json", "", testWebhookKey, "", "", "", "")
	f.Add([]byte(swExampleBody), "application/json", "", "", "", swExampleID, swExampleTimestamp, swExampleSignature)
	f.Add([]byte(`{"event_type":"update","entity_type":"product","entity_id":7,"data":{}}`), "application/json; charset=utf-8", "", testWebhookKey, "", "", "", "")
	f.Add([]byte(`{"event_type":"update",`), "application/json", "", testWebhookKey, "", "", "", "")
	f.Add([]byte(`null`), "text/plain", "a=%", "wrong", "zz", "", "99999999999999999999", "v1,")
	f.Add([]byte{}, "application/problem+json", "", "", "", "id", "-1", "v1,AAAA v1a,BBBB")
	f.Add([]byte("\xff\xfe{}"), "application/json", "", "", "00", "msg", "1614265330", "v1,"+strings.Repeat("A", 44))

	f.Fuzz(func(t *testing.T, body []byte, contentType, rawQuery, key, zohoSig, id, ts, sig string) {
		query, _ := url.ParseQuery(rawQuery)
		h := http.Header{}
		for name, v := range map[string]string{
			"Content-Type": contentType, HeaderWebhookKey: key, HeaderZohoSignature: zohoSig,
			HeaderWebhookID: id, HeaderWebhookTimestamp: ts, HeaderWebhookSignature: sig,
		} {
			if v != "" {
				h.Set(name, v)
			}
		}
		kind := bodyKindOf(contentType)
		params := query
		if kind == bodyForm {
			if form, err := url.ParseQuery(string(body)); err == nil {
				params = mergeValues(query, form)
			}
		}
		ev, herr := d.decode(h, query, body, &products, "")
		if herr != nil {
			require.Contains(t, []int{400, 401, 415}, herr.status)
			require.NotEmpty(t, herr.msg)
			require.NotContains(t, herr.msg, "tds:")
		} else {
			require.Equal(t, "product", ev.EntityType)
			require.NotEmpty(t, strings.TrimSpace(ev.EntityID))
			require.NotEmpty(t, ev.EventType)
			require.True(t, ev.Metadata.SignatureVerified)
			require.LessOrEqual(t, len(ev.DeliveryID), maxDeliveryIDBytes)
			switch ev.Metadata.Verifier {
			case VerifierWebhookKey:
				require.Equal(t, testWebhookKey, key)
			case VerifierZoho:
				require.True(t, strings.EqualFold(strings.TrimSpace(zohoSig), zohoSignQuery(zohoKey, params, body)))
			case VerifierStandardWebhooks:
				require.Contains(t, sig, swSign(t, swExampleSecret, id, ts, body)[3:])
			default:
				t.Fatalf("accepted by unknown verifier %q", ev.Metadata.Verifier)
			}
		}

		// The same request correctly signed always passes verification.
		if kind == bodyUnsupported {
			return
		}
		signed := http.Header{HeaderZohoSignature: {zohoSignQuery(zohoKey, params, body)}}
		if contentType != "" {
			signed.Set("Content-Type", contentType)
		}
		ev2, herr2 := d.decode(signed, query, body, &products, "")
		if herr2 != nil {
			require.Equal(t, http.StatusBadRequest, herr2.status, herr2.msg)
		} else {
			require.Equal(t, VerifierZoho, ev2.Metadata.Verifier)
		}
	})
}

// TestWebhookLogLevels: an accepted webhook is logged at DEBUG, so a logger
// at the default INFO level (a busy server, a host's tests) stays quiet;
// a refusal is still logged at WARN.
func TestWebhookLogLevels(t *testing.T) {
	t.Parallel()
	tdb := openTestDB(t, "sqlite")
	var info, debug logBuffer
	for _, c := range []struct {
		logs  *logBuffer
		level slog.Level
	}{{&info, slog.LevelInfo}, {&debug, slog.LevelDebug}} {
		h, err := NewHandler(tdb.db, WithWebhookKeys(testWebhookKey),
			WithLogger(slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: c.level}))))
		require.NoError(t, err)
		a := webhook(t, h, "products", fixtureBytes(t, "product.json"))
		require.Equal(t, http.StatusOK, a.status, a.raw)
		refused := serve(t, h, http.MethodPost, "/webhooks/products", fixtureBytes(t, "product.json"), HeaderWebhookKey, "wrong")
		require.Equal(t, http.StatusUnauthorized, refused.status, refused.raw)
		require.NoError(t, h.Close())
	}
	require.NotContains(t, info.String(), "webhook received", "an accepted webhook is not logged at INFO")
	require.Contains(t, info.String(), "level=WARN", "a refusal is")
	require.Contains(t, debug.String(), `level=DEBUG msg="tds: webhook received" entity_type=product`)
}
