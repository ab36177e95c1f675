package tdstest

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/verify"
)

// Answer is a Handler's answer to one webhook: the status, the headers and
// the body, with the JSON fields tds answers with decoded (zero when the
// answer lacks them).
type Answer struct {
	Status int         `json:"-"`
	Header http.Header `json:"-"`
	Body   []byte      `json:"-"`

	// Success is true for a 200: the event is stored (or was before).
	Success bool `json:"success"`
	// Queued reports that the event was queued for the Worker.
	Queued bool `json:"queued"`
	// Duplicate reports that the delivery had been received before.
	Duplicate bool `json:"duplicate"`
	// EventID is the inbox event's id (on 200 and 422).
	EventID int64 `json:"event_id"`
	// IdempotencyKey is the event's idempotency key (on 200 and 422).
	IdempotencyKey string `json:"idempotency_key"`
	// Message is the text of a success, Error that of a refusal.
	Message string `json:"message"`
	Error   string `json:"error"`
	// ValidationErrors are the Validator's findings (on 422, or on a
	// duplicate of an invalid event).
	ValidationErrors tds.ValidationErrors `json:"validation_errors"`
}

// SendOption sets how [Send] signs and builds its request.
type SendOption func(*sendSettings)

type sendSettings struct {
	key            string
	zohoSecret     string
	standardSecret string
	signedAt       time.Time
	contentType    string
	body           []byte
	rawBody        bool
	query          url.Values
	headers        http.Header
	prefix         string
}

// WebhookKey sends key in the X-Webhook-Key header ([tds.WithWebhookKeys]).
func WebhookKey(key string) SendOption {
	return func(s *sendSettings) { s.key = key }
}

// ZohoSignature signs the request as Zoho does ([tds.WithZohoSecret]): the
// X-Zoho-Webhook-Signature header is the hex HMAC-SHA256 under secret of
// the query and form parameters, sorted by key and written as keyvalue,
// followed by the raw body. Zoho does not sign the path: a record that two
// routes take (an "item" is a product and a stock record) must name its
// route in the query too, Query(url.Values{tds.QueryRoute: {route}}).
func ZohoSignature(secret string) SendOption {
	return func(s *sendSettings) { s.zohoSecret = secret }
}

// StandardWebhooks signs the request as Standard Webhooks specify
// ([tds.WithStandardWebhooksSecrets]) under secret ("whsec_" and base64):
// webhook-id is the event's DeliveryID, or a random id when it has none,
// and webhook-timestamp is now, or the time given with [SignedAt].
func StandardWebhooks(secret string) SendOption {
	return func(s *sendSettings) { s.standardSecret = secret }
}

// SignedAt sets the Standard Webhooks timestamp, to test a stale one.
func SignedAt(t time.Time) SendOption {
	return func(s *sendSettings) { s.signedAt = t }
}

// Body sends body with the content type instead of the event's envelope:
// a Zoho Default Payload, a form, or a malformed body. The signatures cover
// it; the event passed to Send is then ignored.
func Body(contentType string, body []byte) SendOption {
	return func(s *sendSettings) { s.contentType, s.body, s.rawBody = contentType, body, true }
}

// Query adds query parameters to the request's URL (and to what Zoho's
// signature covers).
func Query(q url.Values) SendOption {
	return func(s *sendSettings) {
		if s.query == nil {
			s.query = url.Values{}
		}
		for k, vs := range q {
			s.query[k] = append(s.query[k], vs...)
		}
	}
}

// Prefix sends to prefix + "/webhooks/{route}": for a router that mounts the
// Handler under a prefix, as http.StripPrefix("/zoho", h) on "/zoho/" does,
// so that the test goes through the host's own routing. prefix starts with
// a slash; a trailing slash is dropped.
func Prefix(prefix string) SendOption {
	return func(s *sendSettings) { s.prefix = prefix }
}

// Header sets a request header, after the signing headers (so it can
// replace one of them, to test a bad signature).
func Header(name, value string) SendOption {
	return func(s *sendSettings) {
		if s.headers == nil {
			s.headers = http.Header{}
		}
		s.headers.Set(name, value)
	}
}

// Send posts one webhook to /webhooks/{route} through h, a [tds.Handler]
// or anything that serves one at that path (with [Prefix], at
// prefix/webhooks/{route}: a host's router), and returns its answer. The body
// is ev's JSON envelope ({"event_type", "entity_type", "entity_id", "data"})
// unless [Body] gives another; opts sign it. With no signing option the
// request carries no credential, for a Handler built with
// [tds.WithoutAuthentication].
//
// A refusal is an Answer like any other, including the Handler's own 404
// for a route it does not know. A 404 from anything else (h's router found
// no handler at the path, typically a missing or wrong [Prefix]) fails the
// test with t.Errorf, which is safe from any goroutine, as it would
// otherwise pass for a refusal. Send also fails the test, with t.Fatalf,
// when it cannot build the request.
func Send(t testing.TB, h http.Handler, route string, ev tds.Event, opts ...SendOption) Answer {
	t.Helper()
	var s sendSettings
	for _, o := range opts {
		o(&s)
	}
	prefix := strings.TrimSuffix(s.prefix, "/")
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		t.Fatalf("tdstest: Send: Prefix(%q) must start with a slash", s.prefix)
	}
	body, contentType := s.body, s.contentType
	if !s.rawBody {
		var err error
		body, err = json.Marshal(tds.Envelope{EventType: ev.EventType, EntityType: ev.EntityType, EntityID: ev.EntityID, Data: ev.Data})
		if err != nil {
			t.Fatalf("tdstest: Send: encoding the event: %v", err)
		}
		contentType = "application/json"
	}

	target := prefix + "/webhooks/" + url.PathEscape(route)
	if len(s.query) > 0 {
		target += "?" + s.query.Encode()
	}
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, target, bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if s.key != "" {
		r.Header.Set(tds.HeaderWebhookKey, s.key)
	}
	if s.zohoSecret != "" {
		params := url.Values{}
		for k, vs := range s.query {
			params[k] = append(params[k], vs...)
		}
		if isForm(contentType) {
			form, err := url.ParseQuery(string(body))
			if err != nil {
				t.Fatalf("tdstest: Send: the form body does not parse: %v", err)
			}
			for k, vs := range form {
				params[k] = append(params[k], vs...)
			}
		}
		m := hmac.New(sha256.New, []byte(s.zohoSecret))
		m.Write(verify.ZohoSigningString(params, body))
		r.Header.Set(tds.HeaderZohoSignature, hex.EncodeToString(m.Sum(nil)))
	}
	if s.standardSecret != "" {
		key, err := verify.DecodeStandardSecret(s.standardSecret)
		if err != nil {
			t.Fatalf("tdstest: Send: StandardWebhooks: %v", err)
		}
		id := ev.DeliveryID
		if id == "" {
			id = "msg_" + randHex(12)
		}
		at := s.signedAt
		if at.IsZero() {
			at = time.Now()
		}
		ts := strconv.FormatInt(at.Unix(), 10)
		r.Header.Set(tds.HeaderWebhookID, id)
		r.Header.Set(tds.HeaderWebhookTimestamp, ts)
		r.Header.Set(tds.HeaderWebhookSignature, verify.SignStandard(key, id, ts, body))
	}
	for k, vs := range s.headers {
		r.Header[k] = vs
	}

	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	a := Answer{Status: w.Code, Header: w.Header(), Body: w.Body.Bytes()}
	_ = json.Unmarshal(a.Body, &a) // an answer that is not JSON keeps only the raw fields
	if a.Status == http.StatusNotFound && !strings.HasPrefix(a.Error, unknownRouteError) {
		t.Errorf("tdstest: Send: POST %s answered 404 %q, not from a tds Handler: nothing serves that path; "+
			"if h mounts the Handler under a prefix, say so with tdstest.Prefix(\"/the-prefix\")",
			target, strings.TrimSpace(string(a.Body)))
	}
	return a
}

// unknownRouteError starts the error of the Handler's 404 for a route it
// does not know (refusal.go), an answer a test may want to see.
const unknownRouteError = "unknown webhook route"

// isForm reports a form content type, whose fields Zoho's signature covers.
func isForm(contentType string) bool {
	ct, _, _ := strings.Cut(contentType, ";")
	return strings.EqualFold(strings.TrimSpace(ct), "application/x-www-form-urlencoded")
}

// randHex returns n random bytes in hex: delivery ids, and database names
// that keep two runs with the same pid apart on a shared server.
func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}
