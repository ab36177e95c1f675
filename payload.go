package tds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"unicode/utf8"
)

// The webhook body formats. A body is, by its content type:
//
//   - JSON: a tds [Envelope], or Zoho's Default Payload, the module's
//     record wrapped in its module key ({"item": {...}}, see
//     [EntityType.ModuleKeys]);
//   - a form (application/x-www-form-urlencoded): when it has a JSONString
//     field (Zoho's convention), that field's JSON, read as above; else a
//     flat record made of the form's fields.
//
// In the last two cases the route names the entity type, the registry's
// id field the entity id, and the query parameter "event" the event type
// (create, update or delete; update when absent), since Zoho sends no
// event header. Decoding is lenient about unknown fields and strict about
// identity: a record without its id is refused (400) and not stored.

// QueryEvent is the query parameter that gives the event type of a Default
// Payload or form webhook, such as POST /webhooks/products?event=delete.
const QueryEvent = "event"

// FormJSONField is the form field whose value is the webhook's JSON, as
// Zoho sends it in a form body.
const FormJSONField = "JSONString"

// bodyKind is the format a content type announces.
type bodyKind int

const (
	bodyUnsupported bodyKind = iota
	bodyJSON
	bodyForm
)

// bodyKindOf accepts application/json, application/*+json, no content type
// at all (some senders omit it; read as JSON) and
// application/x-www-form-urlencoded.
func bodyKindOf(ct string) bodyKind {
	if strings.TrimSpace(ct) == "" {
		return bodyJSON
	}
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case err != nil:
		return bodyUnsupported
	case mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")):
		return bodyJSON
	case mt == "application/x-www-form-urlencoded":
		return bodyForm
	}
	return bodyUnsupported
}

// parseForm decodes a form body. Its fields are signed with the query's
// (see internal/verify's ZohoSigningString).
func parseForm(body []byte) (url.Values, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("%w: malformed form body", ErrInvalidEvent)
	}
	// JSON would silently replace invalid bytes, so the stored record
	// would no longer hold the id the event carries.
	for k, vs := range form {
		if !utf8.ValidString(k) {
			return nil, fmt.Errorf("%w: form body is not valid UTF-8", ErrInvalidEvent)
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return nil, fmt.Errorf("%w: form body is not valid UTF-8", ErrInvalidEvent)
			}
		}
	}
	return form, nil
}

// parseFormPayload turns a form into an Event of type et: the JSON of its
// JSONString field, or else a flat record of its fields.
func parseFormPayload(form url.Values, query url.Values, et EntityType) (*Event, error) {
	if js, ok := form[FormJSONField]; ok {
		if len(js) != 1 {
			return nil, fmt.Errorf("%w: form field %s given %d times", ErrInvalidEvent, FormJSONField, len(js))
		}
		return parseJSONPayload([]byte(js[0]), query, et)
	}
	rec := make(map[string]any, len(form))
	for k, vs := range form {
		if len(vs) == 1 {
			rec[k] = vs[0]
		} else {
			rec[k] = vs
		}
	}
	id := ""
	if vs := form[et.IDField]; len(vs) == 1 {
		id = vs[0]
	}
	if strings.TrimSpace(id) == "" {
		return nil, fmt.Errorf("%w: form field %s is required, once", ErrInvalidEvent, et.IDField)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("%w: form: %v", ErrInvalidEvent, err)
	}
	return &Event{EventType: queryEvent(query), EntityType: et.Name, EntityID: id, Data: data}, nil
}

// envelopeKeys are the fields that make a JSON body a tds envelope.
var envelopeKeys = []string{"event_type", "entity_type", "entity_id"}

// parseJSONPayload reads body as a tds envelope or, when it has none of
// the envelope's fields and et has module keys, as a Default Payload.
// Anything else gets the envelope's errors.
func parseJSONPayload(body []byte, query url.Values, et EntityType) (*Event, error) {
	if len(et.ModuleKeys) == 0 {
		return ParseEnvelope(body)
	}
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if dec.Decode(&top) != nil || top == nil || dec.More() {
		return ParseEnvelope(body) // for its error
	}
	for _, k := range envelopeKeys {
		if _, ok := top[k]; ok {
			return ParseEnvelope(body)
		}
	}
	for _, k := range et.ModuleKeys {
		if rec, ok := top[k]; ok {
			return parseDefaultPayload(k, rec, query, et)
		}
	}
	return nil, fmt.Errorf("%w: the body is neither a tds envelope (event_type, entity_type, entity_id, data) nor a Default Payload with the record under %q",
		ErrInvalidEvent, strings.Join(et.ModuleKeys, `" or "`))
}

// parseDefaultPayload makes an Event of the record found under key.
func parseDefaultPayload(key string, rec json.RawMessage, query url.Values, et EntityType) (*Event, error) {
	fields, err := decodeObject(rec)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %v", ErrInvalidEvent, key, err)
	}
	id, err := envelopeString(fields[et.IDField], true)
	if err != nil {
		return nil, fmt.Errorf("%w: %s.%s %v", ErrInvalidEvent, key, et.IDField, err)
	}
	return &Event{EventType: queryEvent(query), EntityType: et.Name, EntityID: id,
		Data: bytes.TrimSpace(rec)}, nil
}

// queryEvent is the event type the query names, update by default. An
// unknown one is left to the Validator, so the event is stored with the
// error.
func queryEvent(query url.Values) string {
	if ev := strings.TrimSpace(query.Get(QueryEvent)); ev != "" {
		return ev
	}
	return EventUpdate
}
