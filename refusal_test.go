package tds

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// readCounter is a request body that records whether it was read.
type readCounter struct {
	r     io.Reader
	reads atomic.Int64
}

func (c *readCounter) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.r.Read(p)
}

func (c *readCounter) Close() error { return nil }

// from sends body to /webhooks/products from the peer address remote and
// tells whether the handler read the body.
func from(t *testing.T, h http.Handler, remote string, body []byte, headers ...string) (answer, bool) {
	t.Helper()
	rc := &readCounter{r: bytes.NewReader(body)}
	r := httptest.NewRequest("POST", "/webhooks/products", nil)
	r.Body, r.ContentLength = rc, int64(len(body))
	r.RemoteAddr = remote
	r.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return decodeAnswer(t, w.Code, w.Header(), w.Body.Bytes()), rc.reads.Load() > 0
}

func zohoSignature(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

func TestRefusalLimit(t *testing.T) {
	const zohoSecret = "refusalTestZohoSecret0123456789abcdef"
	eachDB(t, func(t *testing.T, tdb *testDB) {
		clock := newTestClock()
		var logs logBuffer
		h := newTestHandler(t, tdb, WithWebhookKeys(testWebhookKey), WithZohoSecret(zohoSecret),
			WithClock(clock.Now), WithLogger(logs.Logger()), WithTrustedProxies("10.0.0.1"))
		product := fixtureBytes(t, "product.json")
		const attacker = "192.0.2.1:4000"
		badKey := []string{HeaderWebhookKey, "not-the-key"}

		// The first 20 refusals are 401s; a bad key is refused from the
		// headers alone, before the body is read.
		for i := range DefaultRefusalLimit {
			a, read := from(t, h, attacker, product, badKey...)
			requireError(t, a, 401, "invalid webhook key")
			require.False(t, read, "refusal %d read the body", i+1)
			require.Empty(t, a.header.Get("Retry-After"))
		}
		// The 21st is a 429 with Retry-After, body unread; so is a request
		// with no credential, or one signed over its body.
		for _, headers := range [][]string{badKey, nil, {HeaderZohoSignature, zohoSignature(zohoSecret, product)}} {
			a, read := from(t, h, attacker, product, headers...)
			requireError(t, a, 429, "too many refused requests")
			require.Equal(t, "3", a.header.Get("Retry-After"), "20 a minute: one every 3s")
			require.False(t, read)
		}
		// A valid key is admitted from the limited address: it is checked
		// before the body is read, and authenticated traffic is never limited.
		a, read := from(t, h, attacker, product, HeaderWebhookKey, testWebhookKey)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.True(t, read)
		// Other addresses are not affected, including clients behind a
		// trusted proxy.
		a, _ = from(t, h, "192.0.2.2:4000", product, badKey...)
		requireError(t, a, 401, "invalid webhook key")
		a, _ = from(t, h, "10.0.0.1:4000", product, append([]string{"X-Forwarded-For", "198.51.100.7"}, badKey...)...)
		requireError(t, a, 401, "invalid webhook key")
		a, _ = from(t, h, "10.0.0.1:4000", product, append([]string{"X-Forwarded-For", "192.0.2.1"}, badKey...)...)
		requireError(t, a, 429, "too many")
		// The allowance refills: one refusal every 3s.
		clock.Advance(3 * time.Second)
		a, _ = from(t, h, attacker, product, badKey...)
		requireError(t, a, 401, "invalid webhook key")
		a, _ = from(t, h, attacker, product, badKey...)
		requireError(t, a, 429, "too many")

		// One log line per address per period, counting the refusals.
		lines := func(addr string) []string {
			var out []string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "webhook refused") && strings.Contains(l, "client_ip="+addr+" ") {
					out = append(out, l)
				}
			}
			return out
		}
		require.Len(t, lines("192.0.2.1"), 1, logs.String())
		require.Contains(t, lines("192.0.2.1")[0], "refused=1")
		require.Len(t, lines("192.0.2.2"), 1)
		clock.Advance(DefaultRefusalPeriod)
		a, _ = from(t, h, attacker, product, badKey...)
		requireError(t, a, 401, "invalid")
		require.Len(t, lines("192.0.2.1"), 2)
		require.Contains(t, lines("192.0.2.1")[1], "refused=26", "the 25 refusals since the first line, and this one")

		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
	})
}

// A bad signature is refused after the body is read, and counts too; a
// valid signature from an address that is not limited is admitted.
func TestRefusalLimitSignatures(t *testing.T) {
	const zohoSecret = "refusalTestZohoSecret0123456789abcdef"
	tdb := openTestDB(t, "sqlite")
	h := newTestHandler(t, tdb, WithZohoSecret(zohoSecret), WithRefusalLimit(2, time.Hour))
	product := fixtureBytes(t, "product.json")
	bad := []string{HeaderZohoSignature, strings.Repeat("0", 64)}
	for range 2 {
		a, read := from(t, h, "[2001:db8::1]:443", product, bad...)
		requireError(t, a, 401, "invalid")
		require.True(t, read)
	}
	// The whole /64 is limited; the wait is a whole allowance, 30 minutes.
	a, read := from(t, h, "[2001:db8::2]:443", product, HeaderZohoSignature, zohoSignature(zohoSecret, product))
	requireError(t, a, 429, "too many")
	require.Equal(t, "1800", a.header.Get("Retry-After"))
	require.False(t, read)
	a, _ = from(t, h, "[2001:db8:0:1::1]:443", product, HeaderZohoSignature, zohoSignature(zohoSecret, product))
	require.Equal(t, http.StatusOK, a.status, a.raw)

	// With the limit off, refusals go on being 401s.
	off := newTestHandler(t, tdb, WithWebhookKeys(testWebhookKey), WithRefusalLimit(0, 0))
	for range DefaultRefusalLimit + 5 {
		a, _ := from(t, off, "192.0.2.9:1", product)
		requireError(t, a, 401, "missing")
	}
}

func TestRefusalLimitOption(t *testing.T) {
	tdb := openTestDB(t, "sqlite")
	for _, o := range []Option{WithRefusalLimit(-1, time.Minute), WithRefusalLimit(5, time.Millisecond)} {
		_, err := NewHandler(tdb.db, WithWebhookKeys(testWebhookKey), o)
		require.ErrorContains(t, err, "tds: WithRefusalLimit:")
	}
}

// BenchmarkRefusal measures the refusal path, which reads no body: a 401
// for a bad key, and a 429 for an address past its limit.
//
//	go test -bench Refus -run '^$' .
func BenchmarkRefusal(b *testing.B) {
	tdb := openTestDB(b, "sqlite")
	for _, bc := range []struct {
		name   string
		limit  int
		status int
	}{{"401", 1 << 30, 401}, {"429", 1, 429}} {
		b.Run(bc.name, func(b *testing.B) {
			h, err := NewHandler(tdb.db, WithWebhookKeys(testWebhookKey), WithLogger(quietLogger), WithRefusalLimit(bc.limit, time.Hour))
			require.NoError(b, err)
			b.Cleanup(func() { _ = h.Close() })
			body := fixtureBytes(b, "product.json")
			rc := &readCounter{r: bytes.NewReader(body)}
			r := httptest.NewRequest("POST", "/webhooks/products", nil)
			r.Body, r.ContentLength = rc, int64(len(body))
			r.RemoteAddr = "192.0.2.1:4000"
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set(HeaderWebhookKey, "not-the-key")
			h.ServeHTTP(httptest.NewRecorder(), r) // the first refusal uses up a limit of 1
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != bc.status {
					b.Fatalf("status %d, want %d", w.Code, bc.status)
				}
			}
			if rc.reads.Load() > 0 {
				b.Fatal("the body was read")
			}
		})
	}
}
