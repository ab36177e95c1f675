package tds

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
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

// Signatures computed here, independently of verify.go.

func zohoSign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func swSign(t testing.TB, secret, id, ts string, body []byte) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(secret[len("whsec_"):])
	require.NoError(t, err)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "." + string(body)))
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func swHeaders(id, ts, sig string) http.Header {
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", ts)
	h.Set("webhook-signature", sig)
	return h
}

func standardVerifierFor(t testing.TB, secrets ...string) standardVerifier {
	t.Helper()
	v := standardVerifier{tolerance: StandardWebhooksTolerance}
	for _, s := range secrets {
		key, err := decodeStandardSecret(s)
		require.NoError(t, err)
		v.secrets = append(v.secrets, key)
	}
	return v
}

func TestStandardWebhooksPublishedExample(t *testing.T) {
	require.Equal(t, swExampleSignature, swSign(t, swExampleSecret, swExampleID, swExampleTimestamp, []byte(swExampleBody)),
		"the test's own signer agrees with the specification")
	v := standardVerifierFor(t, swExampleSecret)
	at := time.Unix(1614265330, 0)
	h := swHeaders(swExampleID, swExampleTimestamp, swExampleSignature)
	require.NoError(t, v.verify(h, []byte(swExampleBody), at))
	require.NoError(t, v.verify(h, []byte(swExampleBody), at.Add(StandardWebhooksTolerance)))
	require.ErrorIs(t, v.verify(h, []byte(swExampleBody), at.Add(StandardWebhooksTolerance+time.Second)), errStale)
	require.ErrorIs(t, v.verify(h, []byte(swExampleBody), at.Add(-StandardWebhooksTolerance-time.Second)), errStale)
	require.ErrorIs(t, v.verify(h, []byte(`{"test": 2432232315}`), at), errBadCredential)
}

func TestStandardWebhooksVerifier(t *testing.T) {
	const (
		current = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		next    = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24="
		unknown = "whsec_dW5rbm93bi1zZWNyZXQtbm90LWNvbmZpZ3VyZWQ="
	)
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	ts := strconv.FormatInt(now.Unix(), 10)
	body := []byte(`{"event_type":"update"}`)
	good := swSign(t, current, "msg_1", ts, body)
	for _, tc := range []struct {
		name    string
		secrets []string
		h       http.Header
		body    []byte
		want    error
	}{
		{"valid", []string{current}, swHeaders("msg_1", ts, good), body, nil},
		{"secret without prefix", []string{current[len("whsec_"):]}, swHeaders("msg_1", ts, good), body, nil},
		{"rotated secret: the old one still configured", []string{next, current}, swHeaders("msg_1", ts, good), body, nil},
		{"several signatures: one matches", []string{next}, swHeaders("msg_1", ts, good+" "+swSign(t, next, "msg_1", ts, body)), body, nil},
		{"unknown versions are skipped", []string{current}, swHeaders("msg_1", ts, "v1a,AAAA v2,BBBB "+good), body, nil},
		{"unknown secret", []string{unknown}, swHeaders("msg_1", ts, good), body, errBadCredential},
		{"tampered body", []string{current}, swHeaders("msg_1", ts, good), []byte(`{"event_type":"delete"}`), errBadCredential},
		{"other id", []string{current}, swHeaders("msg_2", ts, good), body, errBadCredential},
		{"missing id", []string{current}, swHeaders("", ts, good), body, errBadCredential},
		{"other timestamp", []string{current}, swHeaders("msg_1", strconv.FormatInt(now.Unix()+1, 10), good), body, errBadCredential},
		{"stale timestamp", []string{current}, swHeaders("msg_1", "1614265330", swSign(t, current, "msg_1", "1614265330", body)), body, errStale},
		{"future timestamp", []string{current}, swHeaders("msg_1", strconv.FormatInt(now.Unix()+301, 10), swSign(t, current, "msg_1", strconv.FormatInt(now.Unix()+301, 10), body)), body, errStale},
		{"huge timestamp", []string{current}, swHeaders("msg_1", "9223372036854775807", good), body, errStale},
		{"malformed timestamp", []string{current}, swHeaders("msg_1", "yesterday", good), body, errStale},
		{"not base64", []string{current}, swHeaders("msg_1", ts, "v1,!!!"), body, errBadCredential},
		{"no v1 entry", []string{current}, swHeaders("msg_1", ts, "v1a,"+good[3:]), body, errBadCredential},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := standardVerifierFor(t, tc.secrets...).verify(tc.h, tc.body, now)
			if tc.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}
}

func TestZohoVerifier(t *testing.T) {
	body := fixtureBytes(t, "product.json")
	v := zohoVerifier{secrets: [][]byte{[]byte("old-secret"), []byte("new-secret")}}
	h := func(sig string) http.Header { return http.Header{HeaderZohoSignature: {sig}} }
	now := time.Now()
	require.NoError(t, v.verify(h(zohoSign("new-secret", body)), body, now))
	require.NoError(t, v.verify(h(zohoSign("old-secret", body)), body, now), "rotation")
	upper := zohoSign("new-secret", body)
	require.NoError(t, v.verify(h(" "+string(toUpper(upper))+" "), body, now), "hex case and spaces")
	require.ErrorIs(t, v.verify(h(zohoSign("other", body)), body, now), errBadCredential)
	require.ErrorIs(t, v.verify(h(zohoSign("new-secret", body)), append([]byte(" "), body...), now), errBadCredential, "signed on the raw bytes")
	require.ErrorIs(t, v.verify(h("xyz"), body, now), errBadCredential)
	require.ErrorIs(t, v.verify(h(upper[:10]), body, now), errBadCredential)
}

func toUpper(s string) []byte {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return b
}

func TestWebhookKeyVerifier(t *testing.T) {
	var v keyVerifier
	for _, k := range []string{"key-old", "key-new"} {
		v.digests = append(v.digests, sha256.Sum256([]byte(k)))
	}
	for key, ok := range map[string]bool{"key-old": true, "key-new": true, "key-ne": false, "key-new ": false, "KEY-NEW": false} {
		err := v.verify(http.Header{HeaderWebhookKey: {key}}, nil, time.Time{})
		require.Equal(t, ok, err == nil, key)
	}
}

func TestVerifyRequestCombination(t *testing.T) {
	now := time.Unix(1614265330, 0)
	vs := []verifier{
		keyVerifier{digests: [][sha256.Size]byte{sha256.Sum256([]byte("k"))}},
		standardVerifierFor(t, swExampleSecret),
		zohoVerifier{secrets: [][]byte{[]byte("z")}},
	}
	body := []byte(swExampleBody)
	name, err := verifyRequest(vs, swHeaders(swExampleID, swExampleTimestamp, swExampleSignature), body, now)
	require.NoError(t, err)
	require.Equal(t, VerifierStandardWebhooks, name)
	name, err = verifyRequest(vs, http.Header{HeaderZohoSignature: {zohoSign("z", body)}}, body, now)
	require.NoError(t, err)
	require.Equal(t, VerifierZoho, name)
	// A wrong key next to a valid signature: the signature wins.
	h := http.Header{HeaderZohoSignature: {zohoSign("z", body)}, HeaderWebhookKey: {"wrong"}}
	name, err = verifyRequest(vs, h, body, now)
	require.NoError(t, err)
	require.Equal(t, VerifierZoho, name)
	_, err = verifyRequest(vs, http.Header{}, body, now)
	require.ErrorIs(t, err, errNoCredentials)
	_, err = verifyRequest(vs, swHeaders(swExampleID, swExampleTimestamp, swExampleSignature), body, now.Add(time.Hour))
	require.ErrorIs(t, err, errStale)
}

func TestWebhookSignedOverHTTP(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		clock := newTestClock()
		const zohoSecret = "zoho-webhook-secret"
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

// BenchmarkVerify times each signature check on the invoice fixture's
// body, the work a webhook's authentication costs before anything is
// stored.
func BenchmarkVerify(b *testing.B) {
	body, err := os.ReadFile(filepath.Join("testdata", "envelope", "invoice.json"))
	require.NoError(b, err)
	const zohoSecret = "zoho-secret"
	now := time.Unix(1764300000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	keyHeaders := http.Header{}
	keyHeaders.Set(HeaderWebhookKey, "whk_bench")
	zohoHeaders := http.Header{}
	zohoHeaders.Set(HeaderZohoSignature, zohoSign(zohoSecret, body))
	for _, c := range []struct {
		name string
		v    verifier
		h    http.Header
	}{
		{"webhook-key", keyVerifier{digests: [][sha256.Size]byte{sha256.Sum256([]byte("whk_bench"))}}, keyHeaders},
		{"zoho-hmac", zohoVerifier{secrets: [][]byte{[]byte(zohoSecret)}}, zohoHeaders},
		{"standard-webhooks", standardVerifierFor(b, swExampleSecret),
			swHeaders("msg_bench", ts, swSign(b, swExampleSecret, "msg_bench", ts, body))},
	} {
		b.Run(c.name, func(b *testing.B) {
			require.NoError(b, c.v.verify(c.h, body, now))
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.v.verify(c.h, body, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
