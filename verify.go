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
	// HeaderZohoSignature carries Zoho's hex HMAC-SHA256 of the raw body
	// ([WithZohoSecret]).
	HeaderZohoSignature = verify.HeaderZohoSignature // "X-Zoho-Webhook-Signature"
	// HeaderWebhookID, HeaderWebhookTimestamp and HeaderWebhookSignature
	// are the Standard Webhooks headers ([WithStandardWebhooksSecrets]).
	// The webhook id is the delivery id used for idempotency.
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
// [StandardWebhooksTolerance] from now. Each secret must decode to at least
// [MinSecretBytes]. The webhook-id becomes the delivery
// id, so a redelivery is a duplicate. Each call adds to the list.
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
// refuses it together with a key or secret.
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
	}
	return vs, nil
}
