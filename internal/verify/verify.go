// Package verify checks the credential a webhook carries on its raw bytes:
// a shared key, Zoho's HMAC signature, or a Standard Webhooks signature.
//
// Every comparison runs in constant time, and the errors say what is wrong
// without revealing any secret: their text is sent back to the sender.
package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Header names read by the verifiers.
const (
	HeaderKey           = "X-Webhook-Key"            // a shared webhook key
	HeaderZohoSignature = "X-Zoho-Webhook-Signature" // hex HMAC-SHA256 of the parameters and the raw body
	HeaderID            = "Webhook-Id"               // Standard Webhooks: the message id
	HeaderTimestamp     = "Webhook-Timestamp"        // Standard Webhooks: Unix seconds, signed with the body
	HeaderSignature     = "Webhook-Signature"        // Standard Webhooks: space-separated "v1,<base64>" entries
)

// Verifier names, returned by [Verifier.Name] and [Request].
const (
	NameKey      = "webhook-key"       // HeaderKey matched a configured key
	NameZoho     = "zoho-signature"    // HeaderZohoSignature was valid
	NameStandard = "standard-webhooks" // a HeaderSignature entry was valid
)

// Reasons a request is refused. Their text is meant for the sender.
var (
	// ErrNoCredentials: the request carries no credential a verifier reads.
	ErrNoCredentials = errors.New("missing webhook key or signature")
	// ErrBadCredential: a credential is there but does not match.
	ErrBadCredential = errors.New("invalid webhook key or signature")
	// ErrStale: the Standard Webhooks timestamp is unusable or too far
	// from now.
	ErrStale = errors.New("webhook timestamp is missing, malformed or outside the tolerance")
)

// Verifier checks one kind of credential on the raw request. Its methods
// may be called concurrently.
type Verifier interface {
	// Name identifies the verifier in the stored request metadata.
	Name() string
	// Present tells whether the request carries this kind of credential.
	Present(h http.Header) bool
	// Verify returns nil when the credential is valid for the request at
	// now, else ErrBadCredential or ErrStale. params are the query-string
	// parameters together with, for a form body, the form's parameters;
	// body is the raw body.
	Verify(h http.Header, params url.Values, body []byte, now time.Time) error
}

// keyVerifier accepts any of several shared keys in HeaderKey.
type keyVerifier struct{ digests [][sha256.Size]byte }

// NewKey returns a verifier that accepts a HeaderKey equal to any of keys.
func NewKey(keys []string) Verifier {
	v := keyVerifier{}
	for _, k := range keys {
		v.digests = append(v.digests, sha256.Sum256([]byte(k)))
	}
	return v
}

func (keyVerifier) Name() string { return NameKey }

func (keyVerifier) Present(h http.Header) bool { return h.Get(HeaderKey) != "" }

func (v keyVerifier) Verify(h http.Header, _ url.Values, _ []byte, _ time.Time) error {
	// Comparing fixed-size digests hides the keys' lengths; every key is
	// compared so the time does not tell which one came close.
	got := sha256.Sum256([]byte(h.Get(HeaderKey)))
	ok := 0
	for _, d := range v.digests {
		ok |= subtle.ConstantTimeCompare(got[:], d[:])
	}
	if ok != 1 {
		return ErrBadCredential
	}
	return nil
}

// zohoVerifier checks HeaderZohoSignature under any of the configured
// secrets; see [ZohoSigningString].
type zohoVerifier struct{ secrets [][]byte }

// NewZoho returns a verifier that accepts a HeaderZohoSignature made with
// any of secrets.
func NewZoho(secrets [][]byte) Verifier { return zohoVerifier{secrets: secrets} }

func (zohoVerifier) Name() string { return NameZoho }

func (zohoVerifier) Present(h http.Header) bool { return h.Get(HeaderZohoSignature) != "" }

func (v zohoVerifier) Verify(h http.Header, params url.Values, body []byte, _ time.Time) error {
	sig, err := hex.DecodeString(strings.TrimSpace(h.Get(HeaderZohoSignature)))
	if err != nil || len(sig) != sha256.Size {
		return ErrBadCredential
	}
	msg := ZohoSigningString(params, body)
	ok := false
	for _, s := range v.secrets {
		m := hmac.New(sha256.New, s)
		m.Write(msg)
		ok = hmac.Equal(m.Sum(nil), sig) || ok
	}
	if !ok {
		return ErrBadCredential
	}
	return nil
}

// ZohoSigningString is what Zoho's HMAC-SHA256 signs: the request's
// parameters (query string and, for a form body, the form's fields)
// sorted by key and written as key then value with no separator, followed
// by the raw body. With no parameters it is the raw body alone.
//
// Documented by Zoho (its "securing webhooks" help page): the header
// X-Zoho-Webhook-Signature, hex HMAC-SHA256 under the webhook's secret
// token (12 to 50 alphanumeric characters), query-string and form
// key-value pairs sorted by key and concatenated as keyvalue, decoded
// (not percent-encoded), the raw JSON payload appended.
//
// Assumed, because Zoho does not say: keys are ordered by byte order (Go's
// string order; Zoho's "alphabetical" agrees for the ASCII keys workflows
// use); a key given several times contributes one keyvalue pair per value,
// values in the order they were sent; and for a form body the
// raw body is appended after its own fields, as for JSON, following tds
// issue 10's reading "query-string and form parameters sorted by key ...
// followed by the raw body".
func ZohoSigningString(params url.Values, body []byte) []byte {
	keys := make([]string, 0, len(params))
	n := len(body)
	for k, vs := range params {
		keys = append(keys, k)
		for _, v := range vs {
			n += len(k) + len(v)
		}
	}
	sort.Strings(keys)
	out := make([]byte, 0, n)
	for _, k := range keys {
		for _, v := range params[k] {
			out = append(out, k...)
			out = append(out, v...)
		}
	}
	return append(out, body...)
}

// CheckZohoSecret reports whether s is a secret token Zoho accepts: 12 to
// 50 ASCII letters and digits. Its error does not repeat the secret.
func CheckZohoSecret(s string) error {
	if len(s) < 12 || len(s) > 50 {
		return errors.New("secret must be 12 to 50 characters long")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return errors.New("secret must be letters and digits only")
		}
	}
	return nil
}

// standardVerifier implements Standard Webhooks: an HMAC-SHA256 of
// "id.timestamp.body" under a base64 secret, sent as space-separated
// "v1,<base64>" entries.
type standardVerifier struct {
	secrets   [][]byte
	tolerance time.Duration
}

// NewStandard returns a Standard Webhooks verifier that accepts a signature
// made with any of secrets (decoded HMAC keys, see [DecodeStandardSecret])
// and a timestamp no further than tolerance from now, either way.
func NewStandard(secrets [][]byte, tolerance time.Duration) Verifier {
	return standardVerifier{secrets: secrets, tolerance: tolerance}
}

func (standardVerifier) Name() string { return NameStandard }

func (standardVerifier) Present(h http.Header) bool {
	return h.Get(HeaderSignature) != ""
}

func (v standardVerifier) Verify(h http.Header, _ url.Values, body []byte, now time.Time) error {
	id := h.Get(HeaderID)
	ts := h.Get(HeaderTimestamp)
	if id == "" {
		return ErrBadCredential
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrStale
	}
	if !withinSeconds(now.Unix(), sec, int64(v.tolerance/time.Second)) {
		return ErrStale
	}
	var sigs [][]byte
	for _, entry := range strings.Fields(h.Get(HeaderSignature)) {
		version, b64, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue // other schemes (v1a: asymmetric) are not ours to check
		}
		if sig, err := base64.StdEncoding.DecodeString(b64); err == nil {
			sigs = append(sigs, sig)
		}
	}
	ok := false
	for _, s := range v.secrets {
		want := standardSignature(s, id, ts, body)
		for _, sig := range sigs {
			ok = hmac.Equal(want, sig) || ok
		}
	}
	if !ok {
		return ErrBadCredential
	}
	return nil
}

// withinSeconds reports whether |now - sec| <= tol without overflowing:
// the distance between two int64 values always fits a uint64, and
// unsigned subtraction of the smaller from the larger gives it exactly.
// A signed difference wraps for a timestamp near ±2^63 and let
// now - 2^63 pass.
func withinSeconds(now, sec, tol int64) bool {
	if tol < 0 {
		return false
	}
	var d uint64
	if sec <= now {
		d = uint64(now) - uint64(sec)
	} else {
		d = uint64(sec) - uint64(now)
	}
	return d <= uint64(tol)
}

// SignStandard returns the Standard Webhooks signature header value,
// "v1,<base64>", of body sent with message id and timestamp (Unix seconds,
// as sent in HeaderTimestamp) under secret, a decoded HMAC key (see
// [DecodeStandardSecret]). It is what [NewStandard] accepts.
func SignStandard(secret []byte, id, timestamp string, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(standardSignature(secret, id, timestamp, body))
}

func standardSignature(secret []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// DecodeStandardSecret turns a Standard Webhooks secret, "whsec_<base64>"
// (the prefix is optional), into the HMAC key. Its errors do not repeat
// the secret.
func DecodeStandardSecret(s string) ([]byte, error) {
	b64 := strings.TrimPrefix(strings.TrimSpace(s), "whsec_")
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("secret must be whsec_ followed by base64")
	}
	if len(key) == 0 {
		return nil, errors.New("secret is empty")
	}
	return key, nil
}

// Request returns the name of the verifier that accepted the request.
// Each verifier whose header is present is tried; the first that accepts
// wins. A request that carries no credential at all gets ErrNoCredentials,
// a stale Standard Webhooks timestamp ErrStale, anything else
// ErrBadCredential.
func Request(vs []Verifier, h http.Header, params url.Values, body []byte, now time.Time) (name string, err error) {
	var failure error
	for _, v := range vs {
		if !v.Present(h) {
			continue
		}
		err := v.Verify(h, params, body, now)
		if err == nil {
			return v.Name(), nil
		}
		if failure == nil || err == ErrStale {
			failure = err
		}
	}
	if failure == nil {
		return "", ErrNoCredentials
	}
	return "", failure
}
