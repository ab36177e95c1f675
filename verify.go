package tds

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names read by the webhook verifiers.
const (
	// HeaderWebhookKey carries a shared webhook key ([WithWebhookKeys]).
	HeaderWebhookKey = "X-Webhook-Key"
	// HeaderZohoSignature carries Zoho's hex HMAC-SHA256 of the raw body
	// ([WithZohoSecret]).
	HeaderZohoSignature = "X-Zoho-Webhook-Signature"
	// HeaderWebhookID, HeaderWebhookTimestamp and HeaderWebhookSignature
	// are the Standard Webhooks headers ([WithStandardWebhooksSecrets]).
	// The webhook id is the delivery id used for idempotency.
	HeaderWebhookID        = "Webhook-Id"        // the message id: the delivery id
	HeaderWebhookTimestamp = "Webhook-Timestamp" // Unix seconds, signed with the body
	HeaderWebhookSignature = "Webhook-Signature" // space-separated "v1,<base64>" entries
)

// Verifier names recorded in [RequestMetadata.Verifier].
const (
	VerifierWebhookKey       = "webhook-key"       // X-Webhook-Key matched a configured key
	VerifierZoho             = "zoho-signature"    // X-Zoho-Webhook-Signature was valid
	VerifierStandardWebhooks = "standard-webhooks" // a webhook-signature entry was valid
)

// StandardWebhooksTolerance is how far a Standard Webhooks timestamp may be
// from the current time, either way, before the request is refused.
const StandardWebhooksTolerance = 5 * time.Minute

// Reasons a request is refused with 401. Their text is sent to the sender,
// so it says what is wrong without revealing any secret.
var (
	errNoCredentials = errors.New("missing webhook key or signature")
	errBadCredential = errors.New("invalid webhook key or signature")
	errStale         = errors.New("webhook timestamp is missing, malformed or outside the tolerance")
)

// verifier checks one kind of credential on the raw request.
type verifier interface {
	// name is recorded in RequestMetadata.Verifier.
	name() string
	// present tells whether the request carries this kind of credential.
	present(h http.Header) bool
	// verify returns nil when the credential is valid for body.
	verify(h http.Header, body []byte, now time.Time) error
}

// keyVerifier accepts any of several shared keys in X-Webhook-Key.
type keyVerifier struct{ digests [][sha256.Size]byte }

func (keyVerifier) name() string { return VerifierWebhookKey }

func (keyVerifier) present(h http.Header) bool { return h.Get(HeaderWebhookKey) != "" }

func (v keyVerifier) verify(h http.Header, _ []byte, _ time.Time) error {
	// Comparing fixed-size digests hides the keys' lengths; every key is
	// compared so the time does not tell which one came close.
	got := sha256.Sum256([]byte(h.Get(HeaderWebhookKey)))
	ok := 0
	for _, d := range v.digests {
		ok |= subtle.ConstantTimeCompare(got[:], d[:])
	}
	if ok != 1 {
		return errBadCredential
	}
	return nil
}

// zohoVerifier checks X-Zoho-Webhook-Signature: hex HMAC-SHA256 of the raw
// body, under any of the configured secrets.
type zohoVerifier struct{ secrets [][]byte }

func (zohoVerifier) name() string { return VerifierZoho }

func (zohoVerifier) present(h http.Header) bool { return h.Get(HeaderZohoSignature) != "" }

func (v zohoVerifier) verify(h http.Header, body []byte, _ time.Time) error {
	sig, err := hex.DecodeString(strings.TrimSpace(h.Get(HeaderZohoSignature)))
	if err != nil || len(sig) != sha256.Size {
		return errBadCredential
	}
	ok := false
	for _, s := range v.secrets {
		m := hmac.New(sha256.New, s)
		m.Write(body)
		ok = hmac.Equal(m.Sum(nil), sig) || ok
	}
	if !ok {
		return errBadCredential
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

func (standardVerifier) name() string { return VerifierStandardWebhooks }

func (standardVerifier) present(h http.Header) bool {
	return h.Get(HeaderWebhookSignature) != ""
}

func (v standardVerifier) verify(h http.Header, body []byte, now time.Time) error {
	id := h.Get(HeaderWebhookID)
	ts := h.Get(HeaderWebhookTimestamp)
	if id == "" {
		return errBadCredential
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errStale
	}
	// Compare in seconds so huge timestamps cannot overflow a Duration.
	if d := now.Unix() - sec; d > int64(v.tolerance/time.Second) || -d > int64(v.tolerance/time.Second) {
		return errStale
	}
	var sigs [][]byte
	for _, entry := range strings.Fields(h.Get(HeaderWebhookSignature)) {
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
		return errBadCredential
	}
	return nil
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

// decodeStandardSecret turns "whsec_<base64>" (the prefix is optional)
// into the HMAC key.
func decodeStandardSecret(s string) ([]byte, error) {
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

// verifyRequest returns the name of the verifier that accepted the request.
// Each verifier whose header is present is tried; the first that accepts
// wins. A request that carries no credential at all gets errNoCredentials,
// a stale Standard Webhooks timestamp errStale, anything else
// errBadCredential.
func verifyRequest(vs []verifier, h http.Header, body []byte, now time.Time) (string, error) {
	var failure error
	for _, v := range vs {
		if !v.present(h) {
			continue
		}
		err := v.verify(h, body, now)
		if err == nil {
			return v.name(), nil
		}
		if failure == nil || err == errStale {
			failure = err
		}
	}
	if failure == nil {
		return "", errNoCredentials
	}
	return "", failure
}

// WithWebhookKeys accepts webhooks whose X-Webhook-Key header equals one of
// keys, compared in constant time. Several keys are accepted at once so a
// key can be rotated without downtime; each call adds to the list.
// Applies to [NewHandler]. Defaults to no keys.
func WithWebhookKeys(keys ...string) Option {
	return newOption("WithWebhookKeys", forHandler, func(c *config) error {
		if len(keys) == 0 {
			return optErr("WithWebhookKeys", "no key given")
		}
		for _, k := range keys {
			if strings.TrimSpace(k) == "" {
				return optErr("WithWebhookKeys", "empty key")
			}
			c.handler.keys = append(c.handler.keys, k)
		}
		return nil
	})
}

// WithZohoSecret accepts webhooks whose X-Zoho-Webhook-Signature header is
// the hex HMAC-SHA256 of the raw body under secret, the webhook's secret in
// Zoho. Each call adds a secret, so one can be rotated without downtime.
// Applies to [NewHandler]. Defaults to no secret.
func WithZohoSecret(secret string) Option {
	return newOption("WithZohoSecret", forHandler, func(c *config) error {
		if secret == "" {
			return optErr("WithZohoSecret", "empty secret")
		}
		c.handler.zohoSecrets = append(c.handler.zohoSecrets, []byte(secret))
		return nil
	})
}

// WithStandardWebhooksSecrets accepts webhooks signed as Standard Webhooks
// specify (webhook-id, webhook-timestamp, webhook-signature), under any of
// secrets ("whsec_" and base64), with a timestamp no further than
// [StandardWebhooksTolerance] from now. The webhook-id becomes the delivery
// id, so a redelivery is a duplicate. Each call adds to the list.
// Applies to [NewHandler]. Defaults to no secret.
func WithStandardWebhooksSecrets(secrets ...string) Option {
	return newOption("WithStandardWebhooksSecrets", forHandler, func(c *config) error {
		if len(secrets) == 0 {
			return optErr("WithStandardWebhooksSecrets", "no secret given")
		}
		for _, s := range secrets {
			key, err := decodeStandardSecret(s)
			if err != nil {
				return optErr("WithStandardWebhooksSecrets", "%v", err)
			}
			c.handler.standardSecrets = append(c.handler.standardSecrets, key)
		}
		return nil
	})
}

// WithoutAuthentication lets a Handler accept webhooks that carry no key or
// signature, for development or behind a gateway that authenticates. A
// Handler refuses to be built without a verifier unless this is given, and
// refuses it together with a key or secret.
// Applies to [NewHandler]. Defaults to off.
func WithoutAuthentication() Option {
	return newOption("WithoutAuthentication", forHandler, func(c *config) error {
		c.handler.noAuth = true
		return nil
	})
}

// verifiers builds the configured verifiers, or fails closed.
func (s *handlerSettings) verifiers() ([]verifier, error) {
	var vs []verifier
	if len(s.keys) > 0 {
		kv := keyVerifier{}
		for _, k := range s.keys {
			kv.digests = append(kv.digests, sha256.Sum256([]byte(k)))
		}
		vs = append(vs, kv)
	}
	if len(s.standardSecrets) > 0 {
		vs = append(vs, standardVerifier{secrets: s.standardSecrets, tolerance: StandardWebhooksTolerance})
	}
	if len(s.zohoSecrets) > 0 {
		vs = append(vs, zohoVerifier{secrets: s.zohoSecrets})
	}
	switch {
	case len(vs) == 0 && !s.noAuth:
		return nil, errors.New("tds: NewHandler: no webhook verifier: give WithWebhookKeys, WithZohoSecret or WithStandardWebhooksSecrets, or WithoutAuthentication explicitly")
	case len(vs) > 0 && s.noAuth:
		return nil, errors.New("tds: WithoutAuthentication: conflicts with the webhook keys or secrets also given")
	}
	return vs, nil
}
