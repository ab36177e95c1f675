package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tolerance is tds.StandardWebhooksTolerance, the one the Handler uses.
const tolerance = 5 * time.Minute

// fixture reads a webhook body from the root package's testdata.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "envelope", name))
	require.NoError(t, err)
	return body
}

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

func standardVerifierFor(t testing.TB, secrets ...string) Verifier {
	t.Helper()
	var keys [][]byte
	for _, s := range secrets {
		key, err := DecodeStandardSecret(s)
		require.NoError(t, err)
		keys = append(keys, key)
	}
	return NewStandard(keys, tolerance)
}

func TestStandardWebhooksPublishedExample(t *testing.T) {
	require.Equal(t, swExampleSignature, swSign(t, swExampleSecret, swExampleID, swExampleTimestamp, []byte(swExampleBody)),
		"the test's own signer agrees with the specification")
	v := standardVerifierFor(t, swExampleSecret)
	at := time.Unix(1614265330, 0)
	h := swHeaders(swExampleID, swExampleTimestamp, swExampleSignature)
	require.NoError(t, v.Verify(h, nil, []byte(swExampleBody), at))
	require.NoError(t, v.Verify(h, nil, []byte(swExampleBody), at.Add(tolerance)))
	require.ErrorIs(t, v.Verify(h, nil, []byte(swExampleBody), at.Add(tolerance+time.Second)), ErrStale)
	require.ErrorIs(t, v.Verify(h, nil, []byte(swExampleBody), at.Add(-tolerance-time.Second)), ErrStale)
	require.ErrorIs(t, v.Verify(h, nil, []byte(`{"test": 2432232315}`), at), ErrBadCredential)
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
		{"unknown secret", []string{unknown}, swHeaders("msg_1", ts, good), body, ErrBadCredential},
		{"tampered body", []string{current}, swHeaders("msg_1", ts, good), []byte(`{"event_type":"delete"}`), ErrBadCredential},
		{"other id", []string{current}, swHeaders("msg_2", ts, good), body, ErrBadCredential},
		{"missing id", []string{current}, swHeaders("", ts, good), body, ErrBadCredential},
		{"other timestamp", []string{current}, swHeaders("msg_1", strconv.FormatInt(now.Unix()+1, 10), good), body, ErrBadCredential},
		{"stale timestamp", []string{current}, swHeaders("msg_1", "1614265330", swSign(t, current, "msg_1", "1614265330", body)), body, ErrStale},
		{"future timestamp", []string{current}, swHeaders("msg_1", strconv.FormatInt(now.Unix()+301, 10), swSign(t, current, "msg_1", strconv.FormatInt(now.Unix()+301, 10), body)), body, ErrStale},
		{"huge timestamp", []string{current}, swHeaders("msg_1", "9223372036854775807", good), body, ErrStale},
		{"malformed timestamp", []string{current}, swHeaders("msg_1", "yesterday", good), body, ErrStale},
		{"not base64", []string{current}, swHeaders("msg_1", ts, "v1,!!!"), body, ErrBadCredential},
		{"no v1 entry", []string{current}, swHeaders("msg_1", ts, "v1a,"+good[3:]), body, ErrBadCredential},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := standardVerifierFor(t, tc.secrets...).Verify(tc.h, nil, tc.body, now)
			if tc.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}
}

// A timestamp far from now is stale whatever its size: the distance is
// computed without integer overflow (now - 2^63 used to wrap and pass).
// Each case is signed correctly, so only the timestamp can refuse it.
func TestStandardWebhooksTimestampOverflow(t *testing.T) {
	t.Parallel()
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	n := now.Unix()
	tol := int64(tolerance / time.Second)
	body := []byte(`{"event_type":"update"}`)
	v := standardVerifierFor(t, secret)
	for _, tc := range []struct {
		name string
		ts   int64
		ok   bool
	}{
		{"math.MinInt64", math.MinInt64, false},
		{"math.MinInt64+1", math.MinInt64 + 1, false},
		{"now - 2^63 (wrapped before)", n + math.MinInt64, false},
		{"now - 2^63 + 1", n + math.MinInt64 + 1, false},
		{"now - 2^63 + tolerance", n + math.MinInt64 + tol, false},
		{"math.MaxInt64", math.MaxInt64, false},
		{"math.MaxInt64-1", math.MaxInt64 - 1, false},
		{"now + 2^62", n + 1<<62, false},
		{"now - 2^62", n - 1<<62, false},
		{"-1", -1, false},
		{"0", 0, false},
		{"now - tolerance - 1", n - tol - 1, false},
		{"now + tolerance + 1", n + tol + 1, false},
		{"now - tolerance", n - tol, true},
		{"now + tolerance", n + tol, true},
		{"now", n, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := strconv.FormatInt(tc.ts, 10)
			err := v.Verify(swHeaders("msg_1", ts, swSign(t, secret, "msg_1", ts, body)), nil, body, now)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrStale)
			}
		})
	}
	// The same with now itself at the edges of int64.
	require.False(t, withinSeconds(math.MaxInt64, math.MinInt64, tol))
	require.False(t, withinSeconds(math.MinInt64, math.MaxInt64, tol))
	require.True(t, withinSeconds(math.MaxInt64, math.MaxInt64-tol, tol))
	require.True(t, withinSeconds(math.MinInt64, math.MinInt64+tol, tol))
	require.False(t, withinSeconds(math.MinInt64, math.MinInt64+tol+1, tol))
}

func TestZohoVerifier(t *testing.T) {
	body := fixture(t, "product.json")
	v := NewZoho([][]byte{[]byte("old-secret"), []byte("new-secret")})
	h := func(sig string) http.Header { return http.Header{HeaderZohoSignature: {sig}} }
	now := time.Now()
	require.NoError(t, v.Verify(h(zohoSign("new-secret", body)), nil, body, now))
	require.NoError(t, v.Verify(h(zohoSign("old-secret", body)), nil, body, now), "rotation")
	upper := zohoSign("new-secret", body)
	require.NoError(t, v.Verify(h(" "+string(toUpper(upper))+" "), nil, body, now), "hex case and spaces")
	require.ErrorIs(t, v.Verify(h(zohoSign("other", body)), nil, body, now), ErrBadCredential)
	require.ErrorIs(t, v.Verify(h(zohoSign("new-secret", body)), nil, append([]byte(" "), body...), now), ErrBadCredential, "signed on the raw bytes")
	require.ErrorIs(t, v.Verify(h("xyz"), nil, body, now), ErrBadCredential)
	require.ErrorIs(t, v.Verify(h(upper[:10]), nil, body, now), ErrBadCredential)
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
	v := NewKey([]string{"key-old", "key-new"})
	for key, ok := range map[string]bool{"key-old": true, "key-new": true, "key-ne": false, "key-new ": false, "KEY-NEW": false} {
		err := v.Verify(http.Header{HeaderKey: {key}}, nil, nil, time.Time{})
		require.Equal(t, ok, err == nil, key)
	}
}

func TestVerifyRequestCombination(t *testing.T) {
	now := time.Unix(1614265330, 0)
	vs := []Verifier{
		NewKey([]string{"k"}),
		standardVerifierFor(t, swExampleSecret),
		NewZoho([][]byte{[]byte("z")}),
	}
	body := []byte(swExampleBody)
	name, err := Request(vs, swHeaders(swExampleID, swExampleTimestamp, swExampleSignature), nil, body, now)
	require.NoError(t, err)
	require.Equal(t, NameStandard, name)
	name, err = Request(vs, http.Header{HeaderZohoSignature: {zohoSign("z", body)}}, nil, body, now)
	require.NoError(t, err)
	require.Equal(t, NameZoho, name)
	// A wrong key next to a valid signature: the signature wins.
	h := http.Header{HeaderZohoSignature: {zohoSign("z", body)}, HeaderKey: {"wrong"}}
	name, err = Request(vs, h, nil, body, now)
	require.NoError(t, err)
	require.Equal(t, NameZoho, name)
	_, err = Request(vs, http.Header{}, nil, body, now)
	require.ErrorIs(t, err, ErrNoCredentials)
	_, err = Request(vs, swHeaders(swExampleID, swExampleTimestamp, swExampleSignature), nil, body, now.Add(time.Hour))
	require.ErrorIs(t, err, ErrStale)
}

// BenchmarkVerify times each signature check on the invoice fixture's
// body, the work a webhook's authentication costs before anything is
// stored.
func BenchmarkVerify(b *testing.B) {
	body := fixture(b, "invoice.json")
	const zohoSecret = "zoho-secret"
	now := time.Unix(1764300000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	keyHeaders := http.Header{}
	keyHeaders.Set(HeaderKey, "whk_bench")
	zohoHeaders := http.Header{}
	zohoHeaders.Set(HeaderZohoSignature, zohoSign(zohoSecret, body))
	for _, c := range []struct {
		name string
		v    Verifier
		h    http.Header
	}{
		{"webhook-key", NewKey([]string{"whk_bench"}), keyHeaders},
		{"zoho-hmac", NewZoho([][]byte{[]byte(zohoSecret)}), zohoHeaders},
		{"standard-webhooks", standardVerifierFor(b, swExampleSecret),
			swHeaders("msg_bench", ts, swSign(b, swExampleSecret, "msg_bench", ts, body))},
	} {
		b.Run(c.name, func(b *testing.B) {
			require.NoError(b, c.v.Verify(c.h, nil, body, now))
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.v.Verify(c.h, nil, body, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestDecodeStandardSecret(t *testing.T) {
	t.Parallel()
	want, err := base64.StdEncoding.DecodeString(swExampleSecret[len("whsec_"):])
	require.NoError(t, err)
	for _, s := range []string{swExampleSecret, swExampleSecret[len("whsec_"):], " " + swExampleSecret + "\n"} {
		key, err := DecodeStandardSecret(s)
		require.NoError(t, err, s)
		require.Equal(t, want, key)
	}
	for _, s := range []string{"", "whsec_", "whsec_not-base64!", "whsec_c2VjcmV0"[:13]} {
		_, err := DecodeStandardSecret(s)
		require.Error(t, err, s)
		if len(s) > len("whsec_") {
			require.NotContains(t, err.Error(), s[len("whsec_"):], "the error repeats the secret")
		}
	}
}

// zohoSignParams signs the parameters and body as Zoho's help page
// describes, written out independently of ZohoSigningString.
func zohoSignParams(secret string, params url.Values, body []byte) string {
	var keys []string
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, v := range params[k] {
			b.WriteString(k + v)
		}
	}
	b.Write(body)
	return zohoSign(secret, []byte(b.String()))
}

func TestZohoSigningString(t *testing.T) {
	t.Parallel()
	// The example of Zoho's "securing webhooks" help page.
	body := []byte(`{"created_date":"2019-03-06","event_id":"5675"}`)
	got := ZohoSigningString(url.Values{"subscription_id": {"90343"}, "name": {"basic"}}, body)
	require.Equal(t, `namebasicsubscription_id90343{"created_date":"2019-03-06","event_id":"5675"}`, string(got))
	require.Equal(t, string(body), string(ZohoSigningString(nil, body)), "no parameters: the raw body alone")
	// Decoded values, byte order, repeated keys in the order sent.
	q, err := url.ParseQuery("token=a%20b&event=update&B=1&a=2&a=1")
	require.NoError(t, err)
	require.Equal(t, "B1a2a1eventupdatetokena b", string(ZohoSigningString(q, nil)))
}

func TestZohoVerifierWithParameters(t *testing.T) {
	t.Parallel()
	body := fixture(t, "product.json")
	v := NewZoho([][]byte{[]byte("zohoSecret0123")})
	q := url.Values{"event": {"update"}, "token": {"abc"}}
	h := http.Header{HeaderZohoSignature: {zohoSignParams("zohoSecret0123", q, body)}}
	require.NoError(t, v.Verify(h, q, body, time.Time{}))
	require.ErrorIs(t, v.Verify(h, nil, body, time.Time{}), ErrBadCredential, "the parameters are signed")
	require.ErrorIs(t, v.Verify(h, url.Values{"event": {"delete"}, "token": {"abc"}}, body, time.Time{}), ErrBadCredential)
	h.Set(HeaderZohoSignature, zohoSign("zohoSecret0123", body))
	require.ErrorIs(t, v.Verify(h, q, body, time.Time{}), ErrBadCredential, "a body-only signature does not cover the query")
}

func TestCheckZohoSecret(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"abcdefABCDEF", "0123456789ab", strings.Repeat("x", 50)} {
		require.NoError(t, CheckZohoSecret(ok), ok)
	}
	for _, bad := range []string{"", "short12345a", strings.Repeat("x", 51), "has-a-dash0123", "spaces in it 1", "ünicode12345"} {
		err := CheckZohoSecret(bad)
		require.Error(t, err, bad)
		if bad != "" {
			require.NotContains(t, err.Error(), bad)
		}
	}
}

// FuzzZohoSigningString: the canonical string is the sorted keyvalue pairs
// then the body, so it ends with the body, never panics, and a correct
// signature over it always verifies while a changed parameter does not.
func FuzzZohoSigningString(f *testing.F) {
	f.Add("event=update&token=abc", []byte(`{"item":{"item_id":"1"}}`))
	f.Add("subscription_id=90343&name=basic", []byte(`{"created_date":"2019-03-06","event_id":"5675"}`))
	f.Add("", []byte{})
	f.Add("a=1&a=2&b=&=x", []byte("JSONString=%7B%7D"))
	f.Add("%zz=1;x", []byte("\xff"))
	v := NewZoho([][]byte{[]byte("fuzzSecret0123")})
	f.Fuzz(func(t *testing.T, query string, body []byte) {
		q, _ := url.ParseQuery(query)
		s := ZohoSigningString(q, body)
		require.True(t, strings.HasSuffix(string(s), string(body)))
		n := len(body)
		for k, vs := range q {
			for _, val := range vs {
				n += len(k) + len(val)
			}
		}
		require.Len(t, s, n)
		h := http.Header{HeaderZohoSignature: {zohoSignParams("fuzzSecret0123", q, body)}}
		require.NoError(t, v.Verify(h, q, body, time.Time{}))
		changed := url.Values{}
		for k, vs := range q {
			changed[k] = vs
		}
		changed.Add("zz_extra", "1")
		require.ErrorIs(t, v.Verify(h, changed, body, time.Time{}), ErrBadCredential)
	})
}

func TestSignStandard(t *testing.T) {
	key, err := DecodeStandardSecret(swExampleSecret)
	require.NoError(t, err)
	// The specification's published example.
	require.Equal(t, swExampleSignature, SignStandard(key, swExampleID, swExampleTimestamp, []byte(swExampleBody)))

	// What SignStandard makes, the verifier accepts; any change is refused.
	now := time.Unix(1_700_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	body := []byte(`{"status":"firing"}`)
	v := NewStandard([][]byte{key}, 5*time.Minute)
	require.NoError(t, v.Verify(swHeaders("msg_1", ts, SignStandard(key, "msg_1", ts, body)), nil, body, now))
	require.ErrorIs(t, v.Verify(swHeaders("msg_2", ts, SignStandard(key, "msg_1", ts, body)), nil, body, now), ErrBadCredential)
	require.ErrorIs(t, v.Verify(swHeaders("msg_1", ts, SignStandard(key, "msg_1", ts, body)), nil, []byte(`{}`), now), ErrBadCredential)
}
