package tds

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The example published with the Standard Webhooks specification.
const (
	swExampleSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	swExampleID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	swExampleTimestamp = "1614265330"
	swExampleBody      = `{"test": 2432232314}`
	swExampleSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// Signatures computed here, independently of internal/verify.

func zohoSign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// zohoSignQuery signs params (sorted keyvalue pairs) then body, as
// documented on WithZohoSecret.
func zohoSignQuery(secret string, params url.Values, body []byte) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b []byte
	for _, k := range keys {
		for _, v := range params[k] {
			b = append(b, k+v...)
		}
	}
	return zohoSign(secret, append(b, body...))
}

func swSign(t testing.TB, secret, id, ts string, body []byte) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(secret[len("whsec_"):])
	require.NoError(t, err)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "." + string(body)))
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// The names are part of the API: senders set the headers, and the
// verifier names are stored with every event.
func TestHeaderAndVerifierNames(t *testing.T) {
	t.Parallel()
	for got, want := range map[string]string{
		HeaderWebhookKey:         "X-Webhook-Key",
		HeaderZohoSignature:      "X-Zoho-Webhook-Signature",
		HeaderWebhookID:          "Webhook-Id",
		HeaderWebhookTimestamp:   "Webhook-Timestamp",
		HeaderWebhookSignature:   "Webhook-Signature",
		VerifierWebhookKey:       "webhook-key",
		VerifierZoho:             "zoho-signature",
		VerifierStandardWebhooks: "standard-webhooks",
	} {
		require.Equal(t, want, got)
	}
}

func TestWebhookSignedOverHTTP(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		clock := newTestClock()
		const zohoSecret = "zohoWebhookSecret2026"
		h := newTestHandler(t, tdb, WithZohoSecret(zohoSecret), WithStandardWebhooksSecrets(swExampleSecret),
			WithClock(clock.Now), WithAdminToken(testAdminToken))
		body := fixtureBytes(t, "product.json")

		// Zoho: HMAC of the raw body.
		a := serve(t, h, "POST", "/webhooks/products", body, HeaderZohoSignature, zohoSign(zohoSecret, body))
		require.Equal(t, http.StatusOK, a.status, a.raw)
		ev, err := NewInboxOrFail(t, tdb).Get(ctx, int64(a.body["event_id"].(float64)))
		require.NoError(t, err)
		require.Equal(t, VerifierZoho, ev.RequestMetadata.Verifier)
		require.True(t, ev.RequestMetadata.SignatureVerified)
		require.Equal(t, []string{Redacted}, ev.RequestMetadata.Headers[HeaderZohoSignature])
		requireError(t, serve(t, h, "POST", "/webhooks/products", body, HeaderZohoSignature, zohoSign("other", body)), 401, "invalid")
		requireError(t, serve(t, h, "POST", "/webhooks/products", body, HeaderWebhookKey, "a-key"), 401, "missing")

		// Standard Webhooks: the webhook-id is the delivery id, so a
		// redelivery (new timestamp, new signature) is a duplicate.
		cust := fixtureBytes(t, "customer.json")
		ts := strconv.FormatInt(clock.Now().Unix(), 10)
		a = serve(t, h, "POST", "/webhooks/customers", cust,
			"webhook-id", "msg_42", "webhook-timestamp", ts, "webhook-signature", swSign(t, swExampleSecret, "msg_42", ts, cust))
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, "zoho:customer:460000000026049:create:d:msg_42", a.body["idempotency_key"])
		clock.Advance(time.Minute)
		ts2 := strconv.FormatInt(clock.Now().Unix(), 10)
		again := serve(t, h, "POST", "/webhooks/customers", cust,
			"webhook-id", "msg_42", "webhook-timestamp", ts2, "webhook-signature", swSign(t, swExampleSecret, "msg_42", ts2, cust))
		require.Equal(t, http.StatusOK, again.status, again.raw)
		require.Equal(t, true, again.body["duplicate"])
		require.Equal(t, a.body["event_id"], again.body["event_id"])

		// Stale: refused before anything is stored.
		clock.Advance(10 * time.Minute)
		stale := serve(t, h, "POST", "/webhooks/customers", cust,
			"webhook-id", "msg_43", "webhook-timestamp", ts2, "webhook-signature", swSign(t, swExampleSecret, "msg_43", ts2, cust))
		requireError(t, stale, 401, "timestamp")
		require.Equal(t, 2, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
	})
}
