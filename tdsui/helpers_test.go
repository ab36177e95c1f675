package tdsui

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/tdstest"
)

func TestMain(m *testing.M) { tdstest.Main(m) }

const (
	testWebhookKey = "test-webhook-key-0123456789"
	testAdminToken = "test-admin-token-9876543210"
)

// quietLogger keeps expected refusals out of the test output.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// testDB is one migrated database of one dialect.
type testDB struct {
	name string // "postgres" or "sqlite"
	db   *bun.DB
}

// openTestDB opens a fresh migrated database of the dialect.
func openTestDB(t testing.TB, dialect string) *testDB {
	t.Helper()
	switch dialect {
	case "postgres":
		return &testDB{name: dialect, db: tdstest.Postgres(t)}
	case "sqlite":
		return &testDB{name: dialect, db: tdstest.SQLite(t)}
	}
	t.Fatalf("unknown dialect %q", dialect)
	return nil
}

// eachDB runs fn as a parallel subtest against a fresh database of each
// dialect.
func eachDB(t *testing.T, fn func(t *testing.T, tdb *testDB)) {
	t.Helper()
	for _, d := range []string{"postgres", "sqlite"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, openTestDB(t, d))
		})
	}
}

// newTestHandler returns the console on tdb with a silent logger and
// opts (no admin token unless they give one).
func newTestHandler(t *testing.T, tdb *testDB, opts ...Option) *Handler {
	t.Helper()
	h, err := New(tdb.db, append([]Option{WithLogger(quietLogger)}, opts...)...)
	require.NoError(t, err)
	return h
}

// newWebhooks returns the webhook Handler on tdb with the test key, a
// silent logger and opts.
func newWebhooks(t *testing.T, tdb *testDB, opts ...tds.Option) *tds.Handler {
	t.Helper()
	h, err := tds.NewHandler(tdb.db, append([]tds.Option{tds.WithLogger(quietLogger), tds.WithWebhookKeys(testWebhookKey)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	return h
}

// fixtureBytes reads testdata/envelope/name of the module.
func fixtureBytes(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "envelope", name))
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

// webhook posts body as JSON to /webhooks/route of h, a webhook Handler,
// with the test key.
func webhook(t *testing.T, h http.Handler, route string, body []byte) answer {
	t.Helper()
	a := tdstest.Send(t, h, route, tds.Event{}, tdstest.WebhookKey(testWebhookKey), tdstest.Body("application/json", body))
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

// count runs a COUNT query.
func count(t *testing.T, db bun.IDB, query string, args ...any) int {
	t.Helper()
	return testkit.Count(t, db, query, args...)
}
