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
		// with no credential. (One signed over its body is verified: see
		// TestRefusalLimitAdmitsVerifiedSignature.)
		for _, headers := range [][]string{badKey, nil} {
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
		require.Contains(t, lines("192.0.2.1")[1], "refused=25", "the 24 refusals since the first line, and this one")

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
	a, read := from(t, h, "[2001:db8::2]:443", product)
	requireError(t, a, 429, "too many")
	require.Equal(t, "1800", a.header.Get("Retry-After"))
	require.False(t, read)
	// A valid signature from the limited /64 is still verified and admitted.
	a, _ = from(t, h, "[2001:db8::2]:443", product, HeaderZohoSignature, zohoSignature(zohoSecret, product))
	require.Equal(t, http.StatusOK, a.status, a.raw)
	a, _ = from(t, h, "[2001:db8:0:1::1]:443", product, HeaderZohoSignature, zohoSignature(zohoSecret, product))
	require.Equal(t, http.StatusOK, a.status, a.raw)

	// With the limit off, refusals go on being 401s.
	off := newTestHandler(t, tdb, WithWebhookKeys(testWebhookKey), WithRefusalLimit(0, 0))
	for range DefaultRefusalLimit + 5 {
		a, _ := from(t, off, "192.0.2.9:1", product)
		requireError(t, a, 401, "missing")
	}
}

// TestRefusalLimitAdmitsVerifiedSignature: others' refusals never turn
// away a delivery whose body signature verifies, since senders such as
// Zoho share egress addresses across customers. A bad signature from the
// limited address is read, refused and counted.
func TestRefusalLimitAdmitsVerifiedSignature(t *testing.T) {
	const zohoSecret = "refusalTestZohoSecret0123456789abcdef"
	eachDB(t, func(t *testing.T, tdb *testDB) {
		h := newTestHandler(t, tdb, WithWebhookKeys(testWebhookKey), WithZohoSecret(zohoSecret))
		product := fixtureBytes(t, "product.json")
		const shared = "192.0.2.1:4000"
		for range DefaultRefusalLimit {
			a, _ := from(t, h, shared, product, HeaderWebhookKey, "not-the-key")
			requireError(t, a, 401, "invalid webhook key")
		}
		a, read := from(t, h, shared, product, HeaderWebhookKey, "not-the-key")
		requireError(t, a, 429, "too many refused requests")
		require.False(t, read)

		a, read = from(t, h, shared, product, HeaderZohoSignature, strings.Repeat("0", 64))
		requireError(t, a, 401, "invalid")
		require.True(t, read, "a signature needs the body")

		a, read = from(t, h, shared, product, HeaderZohoSignature, zohoSignature(zohoSecret, product))
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.True(t, read)
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
	})
}

// blockingBody is a request body whose first Read reports on started and
// then waits for release.
type blockingBody struct {
	r        io.Reader
	started  chan<- struct{}
	release  <-chan struct{}
	reported bool
}

func (b *blockingBody) Read(p []byte) (int, error) {
	if !b.reported {
		b.reported = true
		b.started <- struct{}{}
		<-b.release
	}
	return b.r.Read(p)
}

func (b *blockingBody) Close() error { return nil }

// TestRefusalLimitBoundsBodyReads: the bodies read for limited addresses
// are bounded by maxLimitedBodyReads concurrent reads; past that, a
// limited address is answered 429 without its body being read, while
// other addresses are not affected.
func TestRefusalLimitBoundsBodyReads(t *testing.T) {
	const zohoSecret = "refusalTestZohoSecret0123456789abcdef"
	tdb := openTestDB(t, "sqlite")
	h := newTestHandler(t, tdb, WithZohoSecret(zohoSecret), WithRefusalLimit(1, time.Hour))
	product := fixtureBytes(t, "product.json")
	sig := []string{HeaderZohoSignature, zohoSignature(zohoSecret, product)}
	const limited = "192.0.2.1:4000"
	a, _ := from(t, h, limited, product)
	requireError(t, a, 401, "missing")

	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan int, maxLimitedBodyReads)
	for range maxLimitedBodyReads {
		go func() {
			r := httptest.NewRequest("POST", "/webhooks/products", nil)
			r.Body = &blockingBody{r: bytes.NewReader(product), started: started, release: release}
			r.ContentLength = int64(len(product))
			r.RemoteAddr = limited
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set(sig[0], sig[1])
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			done <- w.Code
		}()
	}
	for range maxLimitedBodyReads {
		select {
		case <-started:
		case code := <-done:
			t.Fatalf("a delivery from the limited address was answered %d without its body being read", code)
		}
	}
	a, read := from(t, h, limited, product, sig...)
	requireError(t, a, 429, "too many")
	require.NotEmpty(t, a.header.Get("Retry-After"))
	require.False(t, read, "the bound is full: the body is not read")
	a, _ = from(t, h, "192.0.2.2:4000", product, sig...)
	require.Equal(t, http.StatusOK, a.status, "an address that is not limited is not bounded")

	close(release)
	for range maxLimitedBodyReads {
		require.Equal(t, http.StatusOK, <-done)
	}
	a, _ = from(t, h, limited, product, sig...)
	require.Equal(t, http.StatusOK, a.status, "the reads are over: the bound is free again")
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

// TestUnknownRouteAuthenticatesFirst: a route's existence is not revealed
// before authentication. Without valid credentials an unknown route gets
// exactly the answer a known one gets (401, or the 415/400 that come
// before the signature check on the body); with valid ones it gets 404. A
// signature over the body is checked on an unknown route as on a known
// one, so its body is read.
func TestUnknownRouteAuthenticatesFirst(t *testing.T) {
	const zohoSecret = "refusalTestZohoSecret0123456789abcdef"
	eachDB(t, func(t *testing.T, tdb *testDB) {
		h := newTestHandler(t, tdb, WithWebhookKeys(testWebhookKey), WithZohoSecret(zohoSecret), WithRefusalLimit(0, 0))
		product := fixtureBytes(t, "product.json")
		for _, tc := range []struct {
			name    string
			headers []string
		}{
			{"no credential", nil},
			{"bad key", []string{HeaderWebhookKey, "not-the-key"}},
			{"bad signature", []string{HeaderZohoSignature, strings.Repeat("0", 64)}},
			{"bad signature, text", []string{HeaderZohoSignature, strings.Repeat("0", 64), "Content-Type", "text/plain"}},
			{"bad signature, bad form", []string{HeaderZohoSignature, strings.Repeat("0", 64), "Content-Type", "application/x-www-form-urlencoded"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				body := product
				if strings.Contains(strings.Join(tc.headers, " "), "form") {
					body = []byte("a=%zz")
				}
				known := serve(t, h, "POST", "/webhooks/products", body, tc.headers...)
				unknown := serve(t, h, "POST", "/webhooks/widgets", body, tc.headers...)
				require.GreaterOrEqual(t, known.status, 400, known.raw)
				require.NotEqual(t, http.StatusNotFound, unknown.status, unknown.raw)
				require.Equal(t, known.status, unknown.status, unknown.raw)
				require.Equal(t, known.body, unknown.body)
			})
		}
		requireError(t, serve(t, h, "POST", "/webhooks/widgets", product, HeaderWebhookKey, testWebhookKey),
			404, `unknown webhook route "widgets"`)
		requireError(t, serve(t, h, "POST", "/webhooks/widgets", product, HeaderZohoSignature, zohoSignature(zohoSecret, product)),
			404, `unknown webhook route "widgets"`)

		open := newTestHandler(t, tdb, WithoutAuthentication())
		requireError(t, serve(t, open, "POST", "/webhooks/widgets", product), 404, "unknown webhook route")
	})
}
