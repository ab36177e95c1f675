package tds

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestInboxRedactsSecretHeaders(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		p := newTestProcessor(t, tdb.db, WithRedactHeaders("X-Tenant-Secret-Id", "X-Internal"))
		ev := fixture(t, "product.json")
		ev.Metadata = RequestMetadata{
			Headers: map[string][]string{
				"X-Webhook-Key":            {"key-AAAA"},
				"authorization":            {"Bearer tok-BBBB"},
				"Cookie":                   {"session=CCCC"},
				"X-Zoho-Webhook-Signature": {"sig-DDDD"},
				"Webhook-Signature":        {"v1,EEEE"},
				"X-Custom-Signature":       {"FFFF"},
				"X-Internal":               {"GGGG"},
				"Content-Type":             {"application/json"},
				"User-Agent":               {"Zoho-Webhook/1.0"},
			},
			ClientIP:          "203.0.113.7",
			SignatureVerified: true,
			Verifier:          "webhook-key",
		}
		res, err := p.Process(ctx, ev)
		require.NoError(t, err)

		var raw string
		require.NoError(t, tdb.db.QueryRowContext(ctx,
			"SELECT CAST(request_metadata AS TEXT) FROM tds_inbox_events WHERE id = ?", res.EventID).Scan(&raw))
		for _, secret := range []string{"AAAA", "BBBB", "CCCC", "DDDD", "EEEE", "FFFF", "GGGG"} {
			require.NotContains(t, raw, secret)
		}
		var md RequestMetadata
		require.NoError(t, json.Unmarshal([]byte(raw), &md))
		require.Equal(t, []string{Redacted}, md.Headers["X-Webhook-Key"])
		require.Equal(t, []string{Redacted}, md.Headers["Authorization"])
		require.Equal(t, []string{"application/json"}, md.Headers["Content-Type"])
		require.Equal(t, "203.0.113.7", md.ClientIP)
		require.True(t, md.SignatureVerified)
		require.Equal(t, "webhook-key", md.Verifier)
		// The caller's event is not modified.
		require.Equal(t, []string{"key-AAAA"}, ev.Metadata.Headers["X-Webhook-Key"])
	})
}

func TestInboxLifecycle(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		clock := newTestClock()
		in, err := NewInbox(tdb.db, WithClock(clock.Now))
		require.NoError(t, err)

		ev := fixture(t, "stock.json")
		stored, dup, err := in.Store(ctx, ev)
		require.NoError(t, err)
		require.False(t, dup)
		require.NotZero(t, stored.ID)
		require.False(t, stored.IsValid)
		require.Equal(t, "2026-11-20T04:51:07Z", stored.Version.Format("2006-01-02T15:04:05Z07:00"),
			"version is data.last_modified_time")
		require.Equal(t, clock.Now(), stored.ReceivedAt)

		again, dup, err := in.Store(ctx, fixture(t, "stock.json"))
		require.NoError(t, err)
		require.True(t, dup)
		require.Equal(t, stored.ID, again.ID)

		ok, err := in.hasContentHash(ctx, stored.ContentHash)
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = in.hasContentHash(ctx, "0000")
		require.NoError(t, err)
		require.False(t, ok)

		errs := ValidationErrors{{Field: "data.a", Message: "is required"}, {Field: "data.b", Message: "is required"}}
		require.NoError(t, in.MarkValidated(ctx, stored.ID, errs))
		got, err := in.Get(ctx, stored.ID)
		require.NoError(t, err)
		require.False(t, got.IsValid)
		require.Equal(t, errs, got.ValidationErrors)

		require.NoError(t, in.MarkValidated(ctx, stored.ID, nil))
		require.NoError(t, in.MarkQueued(ctx, stored.ID))
		got, err = in.Get(ctx, stored.ID)
		require.NoError(t, err)
		require.True(t, got.IsValid)
		require.Empty(t, got.ValidationErrors)
		require.True(t, got.MovedToQueue)

		// A second event without last_modified_time is versioned by its arrival.
		clock.Advance(time.Minute)
		second, _, err := in.Store(ctx, productEvent("77", "Valve"))
		require.NoError(t, err)
		require.Equal(t, clock.Now(), second.Version)

		list, err := in.ListUnprocessed(ctx, 10)
		require.NoError(t, err)
		require.Len(t, list, 2)
		require.Equal(t, stored.ID, list[0].ID)

		require.NoError(t, in.MarkProcessed(ctx, stored.ID))
		list, err = in.ListUnprocessed(ctx, 10)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, second.ID, list[0].ID)

		st, err := in.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, InboxStats{Total: 2, Valid: 1, Invalid: 1, Queued: 1, Unprocessed: 1,
			OldestAt: st.OldestAt, NewestAt: st.NewestAt}, *st)
		requireSameTime(t, stored.ReceivedAt, *st.OldestAt)
		requireSameTime(t, second.ReceivedAt, *st.NewestAt)

		_, err = in.Get(ctx, 999999)
		require.ErrorIs(t, err, ErrNotFound)
		require.ErrorIs(t, in.MarkProcessed(ctx, 999999), ErrNotFound)
	})
}

func TestIdempotencyKeyEscapesSeparators(t *testing.T) {
	t.Parallel()
	a := idempotencyKey("zoho", &Event{EntityType: "a:b", EntityID: "c", EventType: "update"}, "h")
	b := idempotencyKey("zoho", &Event{EntityType: "a", EntityID: "b:c", EventType: "update"}, "h")
	require.NotEqual(t, a, b)
	require.Equal(t, "zoho:product:123456:update:h:abc",
		idempotencyKey("zoho", &Event{EntityType: "product", EntityID: "123456", EventType: "update"}, "abc"))
}

// The stored headers are capped at maxStoredHeaderBytes: the largest go
// first, and their names are recorded. (Only allowlisted headers keep
// their values, so only they can be large.)
func TestInboxCapsStoredHeaders(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		p := newTestProcessor(t, tdb.db)
		ev := fixture(t, "product.json")
		headers := map[string][]string{
			"User-Agent":    {"Zoho-Webhook/1.0"},
			"Tracestate":    {strings.Repeat("a", 3000), strings.Repeat("b", 2000)},
			"Traceparent":   {strings.Repeat("c", 6000)},
			"X-Webhook-Key": {strings.Repeat("k", 9000)}, // redacted first, so small
			"X-Request-Id":  {strings.Repeat("d", 2500)},
			"X-Other":       {strings.Repeat("o", 9000)}, // not allowlisted: redacted, so small
		}
		ev.Metadata = RequestMetadata{Headers: headers}
		res, err := p.Process(ctx, ev)
		require.NoError(t, err)
		got, err := NewInboxOrFail(t, tdb).Get(ctx, res.EventID)
		require.NoError(t, err)
		md := got.RequestMetadata
		require.Equal(t, []string{"Traceparent"}, md.DroppedHeaders)
		require.Equal(t, []string{"Tracestate", "User-Agent", "X-Other", "X-Request-Id", "X-Webhook-Key"}, slices.Sorted(maps.Keys(md.Headers)))
		require.Equal(t, []string{Redacted}, md.Headers["X-Webhook-Key"])
		require.Equal(t, []string{Redacted}, md.Headers["X-Other"])
		require.Len(t, headers, 6, "the caller's headers are not modified")

		// Small headers are all kept, and nothing is said to be dropped.
		ev = fixture(t, "customer.json")
		ev.Metadata = RequestMetadata{Headers: map[string][]string{"Accept": {strings.Repeat("a", maxStoredHeaderBytes-6)}}}
		res, err = p.Process(ctx, ev)
		require.NoError(t, err)
		got, err = NewInboxOrFail(t, tdb).Get(ctx, res.EventID)
		require.NoError(t, err)
		require.Nil(t, got.RequestMetadata.DroppedHeaders)
		require.Len(t, got.RequestMetadata.Headers, 1)
	})
}

func TestCapHeaders(t *testing.T) {
	h := map[string][]string{"A": {strings.Repeat("x", 5000)}, "B": {strings.Repeat("x", 5000)}, "C": {"c"}}
	out, dropped := capHeaders(h)
	require.Equal(t, []string{"A"}, dropped, "equal sizes: the first name goes")
	require.Equal(t, []string{"B", "C"}, slices.Sorted(maps.Keys(out)))
	require.Len(t, h, 3)
	out, dropped = capHeaders(nil)
	require.Nil(t, out)
	require.Nil(t, dropped)
}

// TestRedaction: only the allowlisted headers keep their values; every
// other header's value is redacted (its name kept), and an allowlisted
// header named by WithRedactHeaders too. Every secret query parameter of
// the stored URL is redacted.
func TestRedaction(t *testing.T) {
	t.Parallel()
	cfg, err := newConfig(forHandler, []Option{WithRedactHeaders("X-Internal")})
	require.NoError(t, err)
	for _, tc := range []struct {
		header string
		secret bool
	}{
		{"Api-Key", true},
		{"X-Auth-Key", true},
		{"Ocp-Apim-Subscription-Key", true},
		{"X-Forwarded-Authorization", true},
		{"x-api-key", true},
		{"X-Webhook-Key", true},
		{"Authorization", true},
		{"Proxy-Authorization", true},
		{"X-Amz-Security-Token", true},
		{"X-Client-Secret", true},
		{"X-Zoho-Webhook-Signature", true},
		{"X-DB-PASSWORD", true},
		{"X-Credentials", true},
		{"X-Session-Id", true},
		{"Cookie", true},
		{"Set-Cookie", true},
		{"X-Internal", true}, // the explicit list
		// Identity proxies' assertions and other credentials no word finds:
		// only the allowlist is stored in clear.
		{"Cf-Access-Jwt-Assertion", true},
		{"X-Goog-Iap-Jwt-Assertion", true},
		{"X-Amzn-Oidc-Data", true},
		{"X-Ms-Client-Principal", true},
		{"X-Pwd", true},
		{"X-Pass", true},
		{"X-Otp", true},
		{"X-Sid", true},
		{"X-Jwt", true},
		{"X-Bearer", true},
		{"X-Anything-Else", true},
		{"Content-Type", false},
		{"User-Agent", false},
		{"X-Forwarded-For", false},
		{"Webhook-Id", false},
		{"Webhook-Timestamp", false},
		{"Content-Length", false},
		{"Accept", false},
		{"accept-encoding", false},
		{"X-Request-Id", false},
	} {
		t.Run("header "+tc.header, func(t *testing.T) {
			got := cfg.redactHeaders(map[string][]string{tc.header: {"value-XYZ"}})
			v := got[http.CanonicalHeaderKey(tc.header)]
			if tc.secret {
				require.Equal(t, []string{Redacted}, v)
			} else {
				require.Equal(t, []string{"value-XYZ"}, v)
			}
		})
	}
	// WithRedactHeaders redacts an allowlisted header too.
	forced, err := newConfig(forHandler, []Option{WithRedactHeaders("x-forwarded-for")})
	require.NoError(t, err)
	got := forced.redactHeaders(map[string][]string{"X-Forwarded-For": {"198.51.100.7"}, "Accept": {"*/*"}})
	require.Equal(t, map[string][]string{"X-Forwarded-For": {Redacted}, "Accept": {"*/*"}}, got)
	for _, tc := range []struct{ in, want string }{
		{"/webhooks/products", "/webhooks/products"},
		{"/webhooks/products?token=abc", "/webhooks/products?token=[REDACTED]"},
		{"/webhooks/products?a=1&api_key=abc&b=2", "/webhooks/products?a=1&api_key=[REDACTED]&b=2"},
		{"/webhooks/products?Access_Token=abc", "/webhooks/products?Access_Token=[REDACTED]"},
		{"/webhooks/products?%74oken=abc", "/webhooks/products?%74oken=[REDACTED]"},
		{"/webhooks/products?sig=1&signature=abc&auth=x&password=p&sessionid=s&client_secret=c&credential=z",
			"/webhooks/products?sig=[REDACTED]&signature=[REDACTED]&auth=[REDACTED]&password=[REDACTED]&sessionid=[REDACTED]&client_secret=[REDACTED]&credential=[REDACTED]"},
		{"/webhooks/products?event=update&hmac=abc&pass=p&SIG=x&pwd=q&jwt=j&otp=1",
			"/webhooks/products?event=update&hmac=[REDACTED]&pass=[REDACTED]&SIG=[REDACTED]&pwd=[REDACTED]&jwt=[REDACTED]&otp=[REDACTED]"},
		{"/webhooks/products?a=1;token=abc", "/webhooks/products?a=1;token=[REDACTED]"},
		{"/webhooks/products?token", "/webhooks/products?token=[REDACTED]"},
		{"/webhooks/products?page=2&sort=name", "/webhooks/products?page=2&sort=name"},
		{"/webhooks/products?key=a&key=b", "/webhooks/products?key=[REDACTED]&key=[REDACTED]"},
		{"", ""},
	} {
		t.Run("url "+tc.in, func(t *testing.T) {
			require.Equal(t, tc.want, redactURL(tc.in))
		})
	}
}

// TestWebhookRedactsStoredRequest: through the Handler, on each database,
// no secret header or query parameter reaches the stored metadata.
func TestWebhookRedactsStoredRequest(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		h := newTestHandler(t, tdb)
		a := webhook(t, h, "products?token=SECRET1&page=2&x-api-key=SECRET2&hmac=SECRET11", fixtureBytes(t, "product.json"),
			"Api-Key", "SECRET3",
			"X-Auth-Key", "SECRET4",
			"Ocp-Apim-Subscription-Key", "SECRET5",
			"X-Forwarded-Authorization", "Bearer SECRET6",
			"X-Session-Id", "SECRET7",
			"Cf-Access-Jwt-Assertion", "SECRET8",
			"X-Amzn-Oidc-Data", "SECRET9",
			"X-Pwd", "SECRET10",
			"User-Agent", "Zoho-Webhook/1.0")
		require.Equal(t, http.StatusOK, a.status, a.raw)
		var raw string
		require.NoError(t, tdb.db.QueryRowContext(ctx,
			"SELECT CAST(request_metadata AS TEXT) FROM tds_inbox_events").Scan(&raw))
		require.NotContains(t, raw, "SECRET")
		require.NotContains(t, raw, testWebhookKey)
		var md RequestMetadata
		require.NoError(t, json.Unmarshal([]byte(raw), &md))
		require.Equal(t, "/webhooks/products?token=[REDACTED]&page=2&x-api-key=[REDACTED]&hmac=[REDACTED]", md.URL)
		require.Equal(t, []string{"Zoho-Webhook/1.0"}, md.Headers["User-Agent"])
		require.Equal(t, []string{Redacted}, md.Headers["Ocp-Apim-Subscription-Key"])
		require.Equal(t, []string{Redacted}, md.Headers["Cf-Access-Jwt-Assertion"], "the name is kept")
		require.Equal(t, []string{"application/json"}, md.Headers["Content-Type"])
	})
}

// productWith is a product webhook body whose entity id, event type and
// data are given as raw JSON.
func productWith(eventType, entityID, data string) []byte {
	return []byte(`{"event_type":` + eventType + `,"entity_type":"product","entity_id":` + entityID + `,"data":` + data + `}`)
}

const okData = `{"item_id":"1","name":"Pump"}`

// TestWebhookBoundsSameOnEveryDatabase: input PostgreSQL cannot store (and
// answered 500, retried forever) while SQLite accepted it is refused with
// 400 on both, before anything is stored.
func TestWebhookBoundsSameOnEveryDatabase(t *testing.T) {
	long := func(n int) string { return `"` + strings.Repeat("x", n) + `"` }
	refused := []struct {
		name    string
		body    []byte
		headers []string
		msg     string
	}{
		{"entity id of 201 bytes", productWith(`"update"`, long(201), okData), nil, "entity_id is longer than 200 bytes"},
		{"event type of 201 bytes", productWith(long(201), `"1"`, okData), nil, "event_type is longer than 200 bytes"},
		{"numeric entity id of 201 digits", productWith(`"update"`, strings.Repeat("1", 201), okData), nil, "entity_id is longer than 200 bytes"},
		{"number of 101 digits", productWith(`"update"`, `"1"`, `{"item_id":"1","name":"P","rate":`+strings.Repeat("9", 101)+`}`), nil, "101 digits"},
		{"number of 300 digits", productWith(`"update"`, `"1"`, `{"item_id":"1","name":"P","rate":`+strings.Repeat("9", 300)+`}`), nil, "300 digits"},
		{"exponent 1001", productWith(`"update"`, `"1"`, `{"item_id":"1","name":"P","rate":1e1001}`), nil, "exponent"},
		{"exponent -1001", productWith(`"update"`, `"1"`, `{"item_id":"1","name":"P","rate":1e-1001}`), nil, "exponent"},
		{"huge exponent", productWith(`"update"`, `"1"`, `{"item_id":"1","name":"P","rate":1e999999999}`), nil, "exponent"},
		{"invalid UTF-8 in data", productWith(`"update"`, `"1"`, "{\"item_id\":\"1\",\"name\":\"P\xff\"}"), nil, "not valid UTF-8"},
		{"invalid UTF-8 in the entity id", productWith(`"update"`, "\"1\xc3\"", okData), nil, "not valid UTF-8"},
		{"invalid UTF-8 in a key", productWith(`"update"`, `"1"`, "{\"item_id\":\"1\",\"name\":\"P\",\"\xe2\x82\":1}"), nil, "not valid UTF-8"},
		{"top-level keys differing in case", []byte(`{"event_type":"update","entity_type":"product","entity_id":"1","ENTITY_ID":"2","data":` + okData + `}`), nil, "differ only in case"},
		{"repeated top-level key", []byte(`{"event_type":"update","entity_type":"product","entity_id":"1","entity_id":"2","data":` + okData + `}`), nil, `key "entity_id" appears twice`},
		{"repeated key in data", productWith(`"update"`, `"1"`, `{"item_id":"1","name":"P","name":"Q"}`), nil, `key "name" appears twice`},
		{"data nested 129 deep", productWith(`"update"`, `"1"`, `{"item_id":"1","name":"P","deep":`+strings.Repeat("[", 128)+strings.Repeat("]", 128)+`}`), nil, "deeper than 128"},
		{"repeated nested key in data", productWith(`"update"`, `"1"`, `{"item_id":"1","name":"P","dims":{"w":1,"w":2}}`), nil, `key "w" appears twice`},
	}
	eachDB(t, func(t *testing.T, tdb *testDB) {
		h := newTestHandler(t, tdb)
		for _, tc := range refused {
			t.Run(tc.name, func(t *testing.T) {
				a := webhook(t, h, "products", tc.body, tc.headers...)
				requireError(t, a, http.StatusBadRequest, tc.msg)
				require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
			})
		}
		// At the bounds, accepted alike.
		for i, body := range [][]byte{
			productWith(`"update"`, long(200), `{"item_id":`+long(200)+`,"name":"P"}`),
			productWith(`"update"`, `"2"`, `{"item_id":"2","name":"P","rate":`+strings.Repeat("9", 100)+`}`),
			productWith(`"update"`, `"3"`, `{"item_id":"3","name":"P","rate":1e1000,"low":-1E-1000}`),
			productWith(`"update"`, `"4"`, `{"item_id":"4","name":"P","Name":"p"}`),
			productWith(`"update"`, `"5"`, `{"item_id":"5","name":"P","deep":`+strings.Repeat("[", 127)+strings.Repeat("]", 127)+`}`),
		} {
			a := webhook(t, h, "products", body)
			require.Equal(t, http.StatusOK, a.status, "%d: %s", i, a.raw)
		}
		require.Equal(t, 5, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
	})
}
