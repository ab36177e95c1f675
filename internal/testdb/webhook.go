package testdb

import (
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdstest"
)

// WebhookKey is the webhook key the tests configure (tds.WithWebhookKeys)
// and [Webhook] sends.
const WebhookKey = "test-webhook-key-0123456789"

// moduleRoot is the module's directory, found from this file's path, so
// that the fixtures are found from any package's directory.
func moduleRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testdb: no caller information to find the module's directory")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Fixture reads the webhook envelope testdata/envelope/name of the module.
func Fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "testdata", "envelope", name))
	require.NoError(t, err)
	return b
}

// Webhook posts body, JSON, to /webhooks/route through h with
// [WebhookKey]; opts may replace either.
func Webhook(t testing.TB, h http.Handler, route string, body []byte, opts ...tdstest.SendOption) tdstest.Answer {
	t.Helper()
	base := []tdstest.SendOption{tdstest.WebhookKey(WebhookKey), tdstest.Body("application/json", body)}
	return tdstest.Send(t, h, route, tds.Event{}, append(base, opts...)...)
}
