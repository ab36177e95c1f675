package tds

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tdscore/tds/internal/httpx"
)

// hostileRequest is one request of the bad-input corpus. It is a POST to
// /webhooks/products with a JSON content type and the test key, unless
// it says otherwise; a header set to "" is removed.
type hostileRequest struct {
	name    string
	method  string // POST unless set
	path    string // /webhooks/products unless set
	body    []byte
	headers map[string]string
	status  int
	msg     string // part of the error message
}

// corpusZohoSecret is alphanumeric, as Zoho's secrets are.
const corpusZohoSecret = "corpusZohoSecret0123456789"

func hostileCorpus(t *testing.T, now time.Time) []hostileRequest {
	good := fixtureBytes(t, "product.json")
	envelope := func(fields string) []byte {
		return []byte(`{"event_type":"update","entity_type":"product",` + fields + `}`)
	}
	data := func(d string) []byte { return productWith(`"update"`, `"1"`, d) }
	nested := func(depth int) []byte {
		return data(`{"item_id":"1","name":"P","deep":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(good)
	_ = zw.Close()
	utf16 := []byte{0xff, 0xfe}
	for _, r := range string(good) {
		utf16 = append(utf16, byte(r), 0)
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	sw := func(id, ts string, body []byte) map[string]string {
		return map[string]string{HeaderWebhookKey: "", HeaderWebhookID: id, HeaderWebhookTimestamp: ts,
			HeaderWebhookSignature: swSign(t, swExampleSecret, id, ts, body)}
	}
	noKey := map[string]string{HeaderWebhookKey: ""}
	return []hostileRequest{
		// Credentials.
		{name: "no key", body: good, headers: noKey, status: 401, msg: "missing webhook key"},
		{name: "wrong key", body: good, headers: map[string]string{HeaderWebhookKey: "wrong-webhook-key-0000"}, status: 401, msg: "invalid webhook key"},
		{name: "key in another case", body: good, headers: map[string]string{HeaderWebhookKey: strings.ToUpper(testWebhookKey)}, status: 401},
		{name: "key with a trailing space", body: good, headers: map[string]string{HeaderWebhookKey: testWebhookKey + " "}, status: 401},
		{name: "key as a bearer token", body: good, headers: map[string]string{HeaderWebhookKey: "", "Authorization": "Bearer " + testWebhookKey}, status: 401},
		{name: "key in the query", path: "/webhooks/products?key=" + testWebhookKey, body: good, headers: noKey, status: 401},
		{name: "standard webhooks: wrong secret", body: good, headers: map[string]string{HeaderWebhookKey: "", HeaderWebhookID: "m1", HeaderWebhookTimestamp: ts,
			HeaderWebhookSignature: "v1," + strings.Repeat("A", 43) + "="}, status: 401, msg: "invalid"},
		{name: "standard webhooks: signed for another body", body: good, headers: sw("m1", ts, []byte(`{}`)), status: 401},
		{name: "standard webhooks: stale timestamp", body: good, headers: sw("m1", strconv.FormatInt(now.Unix()-3600, 10), good), status: 401, msg: "timestamp"},
		{name: "standard webhooks: timestamp math.MinInt64", body: good, headers: sw("m1", "-9223372036854775808", good), status: 401, msg: "timestamp"},
		{name: "standard webhooks: timestamp now - 2^63", body: good, headers: sw("m1", strconv.FormatInt(now.Unix()-1<<62-1<<62, 10), good), status: 401, msg: "timestamp"},
		{name: "standard webhooks: timestamp math.MaxInt64", body: good, headers: sw("m1", "9223372036854775807", good), status: 401, msg: "timestamp"},
		{name: "standard webhooks: no id", body: good, headers: sw("", ts, good), status: 401},
		{name: "zoho: wrong signature", body: good, headers: map[string]string{HeaderWebhookKey: "", HeaderZohoSignature: strings.Repeat("ab", 32)}, status: 401},
		{name: "zoho: not hex", body: good, headers: map[string]string{HeaderWebhookKey: "", HeaderZohoSignature: "zz"}, status: 401},
		{name: "zoho: signed for another body", body: good, headers: map[string]string{HeaderWebhookKey: "", HeaderZohoSignature: zohoSign(corpusZohoSecret, []byte(`{}`))}, status: 401},
		// Content types and encodings.
		{name: "text/plain", body: good, headers: map[string]string{"Content-Type": "text/plain"}, status: 415},
		{name: "application/xml", body: good, headers: map[string]string{"Content-Type": "application/xml"}, status: 415},
		{name: "form without the record's id", body: good, headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 400},
		{name: "multipart", body: good, headers: map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, status: 415},
		{name: "malformed content type", body: good, headers: map[string]string{"Content-Type": "application/json; charset"}, status: 415},
		{name: "text/json", body: good, headers: map[string]string{"Content-Type": "text/json"}, status: 415},
		{name: "gzip body without decoding", body: gz.Bytes(), headers: map[string]string{"Content-Encoding": "gzip"}, status: 400},
		{name: "UTF-16 body", body: utf16, headers: map[string]string{"Content-Type": "application/json; charset=utf-16"}, status: 400},
		{name: "UTF-8 byte order mark", body: append([]byte("\xef\xbb\xbf"), good...), status: 400, msg: "malformed JSON"},
		{name: "invalid UTF-8", body: data("{\"item_id\":\"1\",\"name\":\"\xff\"}"), status: 400, msg: "UTF-8"},
		{name: "overlong UTF-8", body: data("{\"item_id\":\"1\",\"name\":\"\xc0\xaf\"}"), status: 400, msg: "UTF-8"},
		{name: "UTF-8-encoded surrogate", body: data("{\"item_id\":\"1\",\"name\":\"\xed\xa0\x80\"}"), status: 400, msg: "UTF-8"},
		// Size and shape.
		{name: "oversized", body: data(`{"item_id":"1","name":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`), status: 413, msg: "larger than"},
		{name: "empty body", body: []byte{}, status: 400},
		{name: "white space only", body: []byte(" \n\t "), status: 400},
		{name: "truncated", body: good[:len(good)/2], status: 400, msg: "malformed JSON"},
		{name: "truncated after the last brace", body: bytes.TrimSpace(good)[:len(bytes.TrimSpace(good))-1], status: 400, msg: "malformed JSON"},
		{name: "null", body: []byte(`null`), status: 400},
		{name: "array", body: []byte(`[` + string(good) + `]`), status: 400},
		{name: "string", body: []byte(`"update"`), status: 400},
		{name: "number", body: []byte(`42`), status: 400},
		{name: "two envelopes", body: append(append([]byte{}, good...), good...), status: 400, msg: "data after"},
		{name: "nested beyond the decoder's depth", body: nested(10001), status: 400},
		{name: "nested 9000 deep", body: nested(9000), status: 400, msg: "deeper than 128"},
		{name: "nested 129 deep", body: nested(128), status: 400, msg: "deeper than 128"},
		{name: "comments", body: []byte(`{/* c */"event_type":"update","entity_type":"product","entity_id":"1"}`), status: 400},
		{name: "single quotes", body: []byte(`{'event_type':'update','entity_type':'product','entity_id':'1'}`), status: 400},
		{name: "NaN", body: data(`{"item_id":"1","name":"P","rate":NaN}`), status: 400},
		{name: "Infinity", body: data(`{"item_id":"1","name":"P","rate":Infinity}`), status: 400},
		{name: "hex number", body: data(`{"item_id":"1","name":"P","rate":0x10}`), status: 400},
		{name: "leading zero", body: data(`{"item_id":"1","name":"P","rate":0123}`), status: 400},
		// Wrong types and missing identity.
		{name: "event type a number", body: productWith(`7`, `"1"`, okData), status: 400, msg: "event_type must be a string"},
		{name: "entity type an object", body: []byte(`{"event_type":"update","entity_type":{"x":1},"entity_id":"1"}`), status: 400, msg: "entity_type must be a string"},
		{name: "entity id a bool", body: productWith(`"update"`, `true`, okData), status: 400, msg: "entity_id must be a string"},
		{name: "entity id an array", body: productWith(`"update"`, `["1"]`, okData), status: 400, msg: "entity_id must be a string"},
		{name: "entity id blank", body: productWith(`"update"`, `"  "`, okData), status: 400, msg: "entity_id is required"},
		{name: "no entity id", body: envelope(`"data":{}`), status: 400, msg: "entity_id is required"},
		{name: "entity type of another route", body: []byte(`{"event_type":"update","entity_type":"customer","entity_id":"1","data":{}}`), status: 400, msg: "does not match the route"},
		{name: "entity type in mixed case", body: []byte(`{"event_type":"update","entity_type":"Product","entity_id":"1","data":{}}`), status: 400, msg: "does not match the route"},
		{name: "keys in mixed case twice", body: envelope(`"entity_id":"1","Entity_Id":"2","data":{}`), status: 400, msg: "differ only in case"},
		{name: "repeated key", body: envelope(`"entity_id":"1","entity_id":"2","data":{}`), status: 400, msg: "appears twice"},
		{name: "repeated key in data", body: data(`{"item_id":"1","name":"P","name":"Q"}`), status: 400, msg: "appears twice"},
		{name: "NUL in the entity id", body: productWith(`"update"`, `"1\u0000"`, okData), status: 400, msg: "NUL"},
		{name: "NUL in data", body: data(`{"item_id":"1","name":"P\u0000"}`), status: 400, msg: "NUL"},
		{name: "entity id of 201 bytes", body: productWith(`"update"`, `"`+strings.Repeat("1", 201)+`"`, okData), status: 400, msg: "longer than 200"},
		{name: "number of 101 digits", body: data(`{"item_id":"1","name":"P","rate":` + strings.Repeat("1", 101) + `}`), status: 400, msg: "digits"},
		{name: "exponent beyond 1000", body: data(`{"item_id":"1","name":"P","rate":1e1001}`), status: 400, msg: "exponent"},
		// Routing.
		{name: "unknown route", path: "/webhooks/widgets", body: good, status: 404},
		{name: "GET on a webhook route", method: "GET", body: nil, status: 405},
		{name: "PUT on a webhook route", method: "PUT", body: good, status: 405},
	}
}

// TestWebhookHostileCorpus sends every request of the bad-input corpus
// through the Handler: each gets its 4xx, none a 5xx, nothing is stored,
// and the server still answers /health afterwards.
func TestWebhookHostileCorpus(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		now := time.Now()
		h := newTestHandler(t, tdb, WithWebhookKeys(testWebhookKey),
			WithStandardWebhooksSecrets(swExampleSecret), WithZohoSecret(corpusZohoSecret), WithClock(func() time.Time { return now }))
		corpus := hostileCorpus(t, now)
		require.GreaterOrEqual(t, len(corpus), 40)
		for _, tc := range corpus {
			method, path := tc.method, tc.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = "/webhooks/products"
			}
			r := httptest.NewRequest(method, path, bytes.NewReader(tc.body))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set(HeaderWebhookKey, testWebhookKey)
			for k, v := range tc.headers {
				if v == "" {
					r.Header.Del(k)
				} else {
					r.Header[http.CanonicalHeaderKey(k)] = []string{v}
				}
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			require.Less(t, w.Code, 500, "%s: %s", tc.name, w.Body.String())
			require.Equal(t, tc.status, w.Code, "%s: %s", tc.name, w.Body.String())
			var resp httpx.ErrorBody
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &resp), "%s: %s", tc.name, w.Body.String())
			require.False(t, resp.Success, tc.name)
			require.NotEmpty(t, resp.Error, tc.name)
			require.Contains(t, resp.Error, tc.msg, tc.name)
			require.NotContains(t, resp.Error, "tds:", tc.name)
			require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"), tc.name)
		}
		// Still answering, and the good request still goes through.
		a := serve(t, h, "GET", "/health", nil)
		require.Equal(t, http.StatusOK, a.status, a.raw)
		require.Equal(t, http.StatusOK, webhook(t, h, "products", fixtureBytes(t, "product.json")).status)
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
	})
}
