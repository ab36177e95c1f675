package tds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/tdscore/tds/internal/canonical"
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

// QueryRoute is the query parameter that binds a webhook to its route, as
// in POST /webhooks/stock?route=stock. Zoho signs the query and the body
// but not the path, so where two routes take the same record (product and
// stock both take {"item":…} in [ZohoRegistry]) a Zoho-signed delivery
// must carry it, or it is refused (400); see [WithZohoSecret]. When given,
// under any verifier, it must name the route the webhook was sent to.
const QueryRoute = "route"

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
	// Decode kept the last of a repeated key: {"item":{…},"item":{…}}
	// would store a record other than the one a reader of the body sees.
	if err := canonical.CheckObjectKeys(body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidEvent, err)
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

// checkRoute binds a delivery to the route it was sent to: a ?route= must
// name that route, and under Zoho's signature (zoho) a body that another
// route would also take must carry one. Otherwise a delivery captured on
// one route could be re-sent, its signature still valid, to the other and
// stored as a new event of the other type. The body was parsed for et
// already.
func checkRoute(reg *Registry, et *EntityType, query, form url.Values, body []byte, kind bodyKind, zoho bool) error {
	switch vs := query[QueryRoute]; {
	case len(vs) > 1:
		return fmt.Errorf("query parameter %s given %d times", QueryRoute, len(vs))
	case len(vs) == 1 && vs[0] != et.Route:
		return fmt.Errorf("query parameter %s %q does not match the route %q the webhook was sent to", QueryRoute, vs[0], et.Route)
	case len(vs) == 1 || !zoho:
		return nil
	}
	other, err := otherRouteTaking(reg, et, form, body, kind)
	if err != nil {
		return err
	}
	if other != "" {
		return fmt.Errorf("routes %q and %q both take this record, and Zoho's signature does not cover the URL's path: add ?%s=%s to the webhook's URL in Zoho",
			et.Route, other, QueryRoute, et.Route)
	}
	return nil
}

// otherRouteTaking names a route other than et's that would take the same
// body, or "": for a Default Payload, one with a module key among the
// body's top-level keys; for a flat form, one whose id field the form has.
// An envelope names its entity type itself.
func otherRouteTaking(reg *Registry, et *EntityType, form url.Values, body []byte, kind bodyKind) (string, error) {
	var has func(string) bool
	flat := kind == bodyForm && !form.Has(FormJSONField)
	switch {
	case flat:
		has = form.Has
	default:
		if kind == bodyForm {
			body = []byte(form.Get(FormJSONField))
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(body, &top); err != nil {
			return "", fmt.Errorf("%w: the body is not a JSON object", ErrInvalidEvent)
		}
		for _, k := range envelopeKeys {
			if _, ok := top[k]; ok {
				return "", nil
			}
		}
		has = func(k string) bool { _, ok := top[k]; return ok }
	}
	for _, t := range reg.Types() {
		if t.Name == et.Name || t.Route == "" {
			continue
		}
		if flat {
			if t.IDField != "" && has(t.IDField) {
				return t.Route, nil
			}
			continue
		}
		for _, k := range t.ModuleKeys {
			if has(k) {
				return t.Route, nil
			}
		}
	}
	return "", nil
}
