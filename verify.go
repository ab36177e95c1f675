package tds

import (
	"errors"
	"strings"
	"time"

	"github.com/tdscore/tds/internal/verify"
)

// Header names read by the webhook verifiers.
const (
	// HeaderWebhookKey carries a shared webhook key ([WithWebhookKeys]).
	HeaderWebhookKey = verify.HeaderKey // "X-Webhook-Key"
	// HeaderZohoSignature carries Zoho's hex HMAC-SHA256 of the request's
	// parameters and raw body ([WithZohoSecret]).
	HeaderZohoSignature = verify.HeaderZohoSignature // "X-Zoho-Webhook-Signature"
	// HeaderWebhookID, HeaderWebhookTimestamp and HeaderWebhookSignature
	// are the Standard Webhooks headers ([WithStandardWebhooksSecrets]).
	// The webhook id, which the signature covers, is the delivery id used
	// for idempotency; under any other verifier it is ignored.
	HeaderWebhookID        = verify.HeaderID        // "Webhook-Id": the message id, the delivery id
	HeaderWebhookTimestamp = verify.HeaderTimestamp // "Webhook-Timestamp": Unix seconds, signed with the body
	HeaderWebhookSignature = verify.HeaderSignature // "Webhook-Signature": space-separated "v1,<base64>" entries
)

// Verifier names recorded in [RequestMetadata.Verifier].
const (
	VerifierWebhookKey       = verify.NameKey      // "webhook-key": X-Webhook-Key matched a configured key
	VerifierZoho             = verify.NameZoho     // "zoho-signature": X-Zoho-Webhook-Signature was valid
	VerifierStandardWebhooks = verify.NameStandard // "standard-webhooks": a webhook-signature entry was valid
)

// StandardWebhooksTolerance is how far a Standard Webhooks timestamp may be
// from the current time, either way, before the request is refused.
const StandardWebhooksTolerance = 5 * time.Minute

// MinSecretBytes is the shortest webhook key, decoded Standard Webhooks
// secret or admin token accepted: a shorter one can be guessed. Zoho's
// secrets follow Zoho's own rules (see [WithZohoSecret]).
const MinSecretBytes = 16

// WithWebhookKeys accepts webhooks whose X-Webhook-Key header equals one of
// keys, compared in constant time. Several keys are accepted at once so a
// key can be rotated without downtime; each call adds to the list. Each
// key must be at least [MinSecretBytes] long.
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
			if len(k) < MinSecretBytes {
				return optErr("WithWebhookKeys", "a key of %d bytes is too short: at least %d", len(k), MinSecretBytes)
			}
			c.handler.keys = append(c.handler.keys, k)
		}
		return nil
	})
}

// WithZohoSecret accepts webhooks whose X-Zoho-Webhook-Signature header is
// the hex HMAC-SHA256, under secret (the webhook's secret token in Zoho, 12
// to 50 letters and digits), of the query-string and form parameters
// sorted by key and written as keyvalue, followed by the raw body; with no
// parameters, of the raw body alone. Which parts of this Zoho documents and
// which tds assumes is said at the top of the README's Zoho section. Each
// call adds a secret, so one can be rotated without downtime.
//
// Zoho signs no delivery id, so under this verifier the idempotency key is
// built from the content hash, and a Webhook-Id or [WithDeliveryIDHeader]
// header is ignored: a captured delivery re-sent with a fresh id is a
// duplicate. An event of a type with a [EntityType.VersionField] must carry
// that field, or it is stored invalid (422) and not queued. Zoho does not
// sign the path either, so a record that two routes take (a module key
// they share, or a flat form with both id fields) must name its route in
// the signed query, [QueryRoute] (?route=stock), or it is refused (400):
// a delivery re-sent to another route is never a new event of that route.
// Applies to [NewHandler]. Defaults to no secret.
func WithZohoSecret(secret string) Option {
	return newOption("WithZohoSecret", forHandler, func(c *config) error {
		if err := verify.CheckZohoSecret(secret); err != nil {
			return optErr("WithZohoSecret", "%v", err)
		}
		c.handler.zohoSecrets = append(c.handler.zohoSecrets, []byte(secret))
		return nil
	})
}

// WithStandardWebhooksSecrets accepts webhooks signed as Standard Webhooks
// specify (webhook-id, webhook-timestamp, webhook-signature), under any of
// secrets ("whsec_" and base64), with a timestamp no further than
// [StandardWebhooksTolerance] from now. Each secret must decode to at least
// [MinSecretBytes]. The webhook-id, which the signature covers, becomes the
// delivery id, so a redelivery is a duplicate; it is the only verifier whose
// delivery id counts. The signature does not cover the URL, so the event is
// keyed by its source and webhook-id alone: the message re-sent to another
// route or with another ?event= is a duplicate of the first delivery.
// Each call adds to the list.
// Applies to [NewHandler]. Defaults to no secret.
func WithStandardWebhooksSecrets(secrets ...string) Option {
	return newOption("WithStandardWebhooksSecrets", forHandler, func(c *config) error {
		if len(secrets) == 0 {
			return optErr("WithStandardWebhooksSecrets", "no secret given")
		}
		for _, s := range secrets {
			key, err := verify.DecodeStandardSecret(s)
			if err != nil {
				return optErr("WithStandardWebhooksSecrets", "%v", err)
			}
			if len(key) < MinSecretBytes {
				return optErr("WithStandardWebhooksSecrets", "a secret of %d bytes (decoded) is too short: at least %d", len(key), MinSecretBytes)
			}
			c.handler.standardSecrets = append(c.handler.standardSecrets, key)
		}
		return nil
	})
}

// WithoutAuthentication lets a Handler accept webhooks that carry no key or
// signature, for development or behind a gateway that authenticates. A
// Handler refuses to be built without a verifier unless this is given, and
// refuses it together with a key or secret. NewHandler logs a warning
// when it is given.
// Applies to [NewHandler]. Defaults to off.
func WithoutAuthentication() Option {
	return newOption("WithoutAuthentication", forHandler, func(c *config) error {
		c.handler.noAuth = true
		return nil
	})
}

// verifiers builds the configured verifiers, or fails closed.
func (s *handlerSettings) verifiers() ([]verify.Verifier, error) {
	var vs []verify.Verifier
	if len(s.keys) > 0 {
		vs = append(vs, verify.NewKey(s.keys))
	}
	if len(s.standardSecrets) > 0 {
		vs = append(vs, verify.NewStandard(s.standardSecrets, StandardWebhooksTolerance))
	}
	if len(s.zohoSecrets) > 0 {
		vs = append(vs, verify.NewZoho(s.zohoSecrets))
	}
	switch {
	case len(vs) == 0 && !s.noAuth:
		return nil, errors.New("tds: NewHandler: no webhook verifier: give WithWebhookKeys, WithZohoSecret or WithStandardWebhooksSecrets, or WithoutAuthentication explicitly")
	case len(vs) > 0 && s.noAuth:
		return nil, errors.New("tds: WithoutAuthentication: conflicts with the webhook keys or secrets also given")
	case len(vs) > 0 && s.deliveryIDHeader != "":
		return nil, errors.New("tds: WithDeliveryIDHeader: only with WithoutAuthentication: no verifier signs that header, so a replay with a fresh id would count as a new delivery")
	}
	return vs, nil
}
