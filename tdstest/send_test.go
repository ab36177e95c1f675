package tdstest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdstest"
)

const (
	testKey      = "test-webhook-key-0123456789"
	testZoho     = "zohoSecret123456"
	testStandard = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // 27 bytes decoded
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// product is a product update at version minute past t0, as Zoho sends it.
func product(id, name string, minute int) tds.Event {
	v := time.Date(2026, 11, 20, 10, minute, 0, 0, time.UTC).Format(tds.ZohoTimeLayout)
	data, _ := json.Marshal(map[string]any{"item_id": id, "name": name, "last_modified_time": v})
	return tds.Event{EventType: tds.EventUpdate, EntityType: "product", EntityID: id, Data: data}
}

// Send signs with each verifier as the Handler checks it.
func TestSend(t *testing.T) {
	t.Parallel()
	db := tdstest.SQLite(t)
	h, err := tds.NewHandler(db, tds.WithWebhookKeys(testKey), tds.WithZohoSecret(testZoho),
		tds.WithStandardWebhooksSecrets(testStandard), tds.WithLogger(quiet))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })

	for i, tc := range []struct {
		name     string
		opts     []tdstest.SendOption
		verifier string
	}{
		{"key", []tdstest.SendOption{tdstest.WebhookKey(testKey)}, tds.VerifierWebhookKey},
		{"zoho", []tdstest.SendOption{tdstest.ZohoSignature(testZoho)}, tds.VerifierZoho},
		{"zoho with a query", []tdstest.SendOption{tdstest.ZohoSignature(testZoho), tdstest.Query(url.Values{"b": {"2"}, "a": {"1", "0"}})}, tds.VerifierZoho},
		{"standard webhooks", []tdstest.SendOption{tdstest.StandardWebhooks(testStandard)}, tds.VerifierStandardWebhooks},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tdstest.Send(t, h, "products", product("p"+string(rune('0'+i)), tc.name, i), tc.opts...)
			require.Equal(t, http.StatusOK, a.Status, "%s", a.Body)
			require.True(t, a.Success)
			require.True(t, a.Queued)
			require.False(t, a.Duplicate)
			in, err := tds.NewInbox(db)
			require.NoError(t, err)
			ev, err := in.Get(t.Context(), a.EventID)
			require.NoError(t, err)
			require.Equal(t, tc.verifier, ev.RequestMetadata.Verifier)
		})
	}

	t.Run("raw body", func(t *testing.T) {
		body := []byte(`{"item":{"item_id":"raw1","name":"Raw","last_modified_time":"2026-11-20T10:00:00+0000"}}`)
		a := tdstest.Send(t, h, "products", tds.Event{}, tdstest.ZohoSignature(testZoho), tdstest.Body("application/json", body),
			tdstest.Query(url.Values{tds.QueryRoute: {"products"}})) // stock takes items too
		require.Equal(t, http.StatusOK, a.Status, "%s", a.Body)
		// Zoho does not sign the path: without the signed route, refused.
		a = tdstest.Send(t, h, "stock", tds.Event{}, tdstest.ZohoSignature(testZoho), tdstest.Body("application/json", body))
		require.Equal(t, http.StatusBadRequest, a.Status, "%s", a.Body)
	})
	t.Run("form body", func(t *testing.T) {
		form := url.Values{tds.FormJSONField: {`{"item":{"item_id":"form1","name":"Form","last_modified_time":"2026-11-20T10:00:00+0000"}}`}}
		a := tdstest.Send(t, h, "products", tds.Event{}, tdstest.ZohoSignature(testZoho),
			tdstest.Body("application/x-www-form-urlencoded", []byte(form.Encode())), tdstest.Query(url.Values{tds.QueryRoute: {"products"}}))
		require.Equal(t, http.StatusOK, a.Status, "%s", a.Body)
	})
	t.Run("redelivery", func(t *testing.T) {
		ev := product("re1", "Again", 1)
		ev.DeliveryID = "msg_fixed"
		first := tdstest.Send(t, h, "products", ev, tdstest.StandardWebhooks(testStandard))
		require.Equal(t, http.StatusOK, first.Status, "%s", first.Body)
		again := tdstest.Send(t, h, "products", ev, tdstest.StandardWebhooks(testStandard))
		require.Equal(t, http.StatusOK, again.Status, "%s", again.Body)
		require.True(t, again.Duplicate)
		require.Equal(t, first.EventID, again.EventID)
	})
	t.Run("refusals", func(t *testing.T) {
		for name, opts := range map[string][]tdstest.SendOption{
			"no credential": nil,
			"wrong key":     {tdstest.WebhookKey(testKey + "x")},
			"wrong secret":  {tdstest.ZohoSignature(testZoho + "x")},
			"stale":         {tdstest.StandardWebhooks(testStandard), tdstest.SignedAt(time.Now().Add(-time.Hour))},
			"bad signature": {tdstest.StandardWebhooks(testStandard), tdstest.Header(tds.HeaderWebhookSignature, "v1,AAAA")},
		} {
			a := tdstest.Send(t, h, "products", product("no", "No", 0), opts...)
			require.Equal(t, http.StatusUnauthorized, a.Status, "%s: %s", name, a.Body)
			require.False(t, a.Success)
			require.NotEmpty(t, a.Error, name)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		ev := product("inv1", "", 0) // a product needs a name
		a := tdstest.Send(t, h, "products", ev, tdstest.WebhookKey(testKey))
		require.Equal(t, http.StatusUnprocessableEntity, a.Status, "%s", a.Body)
		require.NotEmpty(t, a.ValidationErrors)
		require.NotZero(t, a.EventID)
	})
}

// failures records what Send reports, instead of failing the test.
type failures struct {
	testing.TB
	errs []string
}

func (f *failures) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

// Send goes through a host's router with Prefix; a 404 the Handler did
// not answer (the router found nothing at the path) fails the test, while
// the Handler's own 404 for an unknown route is an answer like any other.
func TestSendPrefix(t *testing.T) {
	t.Parallel()
	db := tdstest.SQLite(t)
	h, err := tds.NewHandler(db, tds.WithWebhookKeys(testKey), tds.WithLogger(quiet))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	mux := http.NewServeMux()
	mux.Handle("/zoho/", http.StripPrefix("/zoho", h))

	for _, prefix := range []string{"/zoho", "/zoho/"} {
		f := &failures{TB: t}
		a := tdstest.Send(f, mux, "products", product("px"+prefix, "Prefixed", 1), tdstest.WebhookKey(testKey), tdstest.Prefix(prefix))
		require.Empty(t, f.errs)
		require.Equal(t, http.StatusOK, a.Status, "%s", a.Body)
	}

	f := &failures{TB: t}
	a := tdstest.Send(f, mux, "products", product("p404", "Lost", 1), tdstest.WebhookKey(testKey))
	require.Equal(t, http.StatusNotFound, a.Status)
	require.Len(t, f.errs, 1, "a router's 404 fails the test")
	require.Contains(t, f.errs[0], "POST /webhooks/products answered 404")
	require.Contains(t, f.errs[0], "tdstest.Prefix")

	f = &failures{TB: t}
	a = tdstest.Send(f, mux, "nowhere", product("p405", "Unknown", 1), tdstest.WebhookKey(testKey), tdstest.Prefix("/zoho"))
	require.Equal(t, http.StatusNotFound, a.Status, "%s", a.Body)
	require.Contains(t, a.Error, "unknown webhook route")
	require.Empty(t, f.errs, "the Handler's own 404 is an answer")
}
