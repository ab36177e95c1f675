package tds

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tdscore/tds/internal/canonical"
	"github.com/tdscore/tds/internal/httpx"
)

// Envelope is the JSON body of a webhook:
//
//	{"event_type": "update", "entity_type": "product", "entity_id": "123", "data": {...}}
type Envelope struct {
	EventType  string          `json:"event_type"`
	EntityType string          `json:"entity_type"`
	EntityID   string          `json:"entity_id"`
	Data       json.RawMessage `json:"data"`
}

// ParseEnvelope decodes a webhook body into an [Event]. It fails, with an
// error wrapping [ErrInvalidEvent], when the body is not a JSON object or
// lacks event_type, entity_type or entity_id, is not valid UTF-8, or has
// top-level keys that repeat or differ only in case: such a body is not
// stored.
// Everything else (an unknown event type, missing data fields) is left to
// the [Validator], so that the event is stored with its errors.
// An entity_id sent as a JSON number is taken as its decimal text.
func ParseEnvelope(body []byte) (*Event, error) {
	var raw struct {
		EventType  json.RawMessage `json:"event_type"`
		EntityType json.RawMessage `json:"entity_type"`
		EntityID   json.RawMessage `json:"entity_id"`
		Data       json.RawMessage `json:"data"`
	}
	if !utf8.Valid(body) {
		// encoding/json would store U+FFFD in place of the bad bytes.
		return nil, fmt.Errorf("%w: the body is not valid UTF-8", ErrInvalidEvent)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: malformed JSON: %s", ErrInvalidEvent, httpx.JSONErrText(err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: malformed JSON: data after the envelope", ErrInvalidEvent)
	}
	// Decode matched the fields without regard to case and kept the last
	// of a repeated key: {"entity_id":"1","ENTITY_ID":"2"} is ambiguous.
	if err := canonical.CheckObjectKeys(body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	ev := &Event{Data: raw.Data}
	var errs []string
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *string
		num  bool
	}{
		{"event_type", raw.EventType, &ev.EventType, false},
		{"entity_type", raw.EntityType, &ev.EntityType, false},
		{"entity_id", raw.EntityID, &ev.EntityID, true},
	} {
		s, err := envelopeString(f.raw, f.num)
		if err != nil {
			errs = append(errs, f.name+" "+err.Error())
			continue
		}
		*f.dst = s
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalidEvent, strings.Join(errs, "; "))
	}
	return ev, nil
}

func envelopeString(raw json.RawMessage, allowNumber bool) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", errors.New("is required")
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", errors.New("is not a valid string")
		}
	} else if allowNumber && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", errors.New("is not a valid number")
		}
		s = n.String()
	} else {
		return "", errors.New("must be a string")
	}
	if strings.TrimSpace(s) == "" {
		return "", errors.New("is required")
	}
	return s, nil
}
