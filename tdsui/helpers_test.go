package tdsui

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/tdstest"
)

func TestMain(m *testing.M) { tdstest.Main(m) }

const testAdminToken = "test-admin-token-9876543210"

// newTestHandler returns the console on tdb with a silent logger and
// opts (no admin token unless they give one).
func newTestHandler(t *testing.T, tdb *testdb.DB, opts ...Option) *Handler {
	t.Helper()
	h, err := New(tdb.DB, append([]Option{WithLogger(testdb.QuietLogger)}, opts...)...)
	require.NoError(t, err)
	return h
}

// newWebhooks returns the webhook Handler on tdb with the test key and
// opts.
func newWebhooks(t *testing.T, tdb *testdb.DB, opts ...tds.Option) *tds.Handler {
	t.Helper()
	return testdb.Handler(t, tdb.DB, append([]tds.Option{tds.WithWebhookKeys(testdb.WebhookKey)}, opts...)...)
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

// webhook posts body as JSON to /webhooks/route of h, a webhook Handler,
// with the test key.
func webhook(t *testing.T, h http.Handler, route string, body []byte) answer {
	t.Helper()
	a := testdb.Webhook(t, h, route, body)
	return decodeAnswer(t, a.Status, a.Header, a.Body)
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
	for _, leak := range []string{"tds:", "tdsui:", "tdsreconcile:", "tdsalert:", "sql", "SQL", "pgdriver", "goroutine"} {
		require.NotContains(t, msg, leak)
	}
}
