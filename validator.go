package tds

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/tdscore/tds/internal/record"
)

// Validator checks an event before it is queued.
//
// Validate returns nil when ev may be synced. Any error marks the event
// invalid: it is stored with its errors and not queued. Return
// [ValidationErrors] to report several problems at once; they are kept one
// by one. Any other error is kept as a single problem, with its message.
//
// When it runs: once per [Processor.Process] or [Processor.ProcessTx] call
// (so once per webhook delivery), before the event is stored and outside
// any transaction tds opens: a slow Validate holds no lock and no
// connection. It runs for redeliveries too, since whether an event is a
// duplicate is known only once the store is asked; a duplicate's outcome
// is the first delivery's, and what Validate said of the redelivery is
// dropped. It may be called concurrently. It must not modify ev.
type Validator interface {
	Validate(ctx context.Context, ev *Event) error
}

// ValidatorFunc adapts a function to [Validator].
type ValidatorFunc func(ctx context.Context, ev *Event) error

// Validate calls f(ctx, ev).
func (f ValidatorFunc) Validate(ctx context.Context, ev *Event) error { return f(ctx, ev) }

var _ Validator = ValidatorFunc(nil)

// DefaultValidator returns the validator used unless [WithValidator] says
// otherwise. It reports, all at once: an event type other than create,
// update or delete; an entity type not in reg; data that is not a JSON
// object; an id field missing from data or not equal to entity_id; required
// fields missing or empty (not checked for deletes, which may carry only the
// id); and a last_modified_time that is not in Zoho's layout.
func DefaultValidator(reg *Registry) Validator {
	return ValidatorFunc(func(ctx context.Context, ev *Event) error {
		var errs ValidationErrors
		add := func(field, format string, args ...any) {
			errs = append(errs, ValidationError{Field: field, Message: fmt.Sprintf(format, args...)})
		}
		switch ev.EventType {
		case EventCreate, EventUpdate, EventDelete:
		default:
			add("event_type", "must be create, update or delete, got %q", ev.EventType)
		}
		et, known := reg.typeOf(ev)
		if !known {
			add("entity_type", "unknown entity type %q", ev.EntityType)
		}
		data, err := decodeObject(ev.Data)
		if err != nil {
			add("data", "%v", err)
			return errs
		}
		if known {
			id, present := data[et.IDField]
			switch {
			case !present || isEmpty(id):
				add("data."+et.IDField, "is required")
			case scalarText(id) != ev.EntityID:
				add("data."+et.IDField, "is %s but entity_id is %q", id, ev.EntityID)
			}
			if ev.EventType != EventDelete {
				for _, f := range et.RequiredFields {
					if v, ok := data[f]; !ok || isEmpty(v) {
						add("data."+f, "is required")
					}
				}
			}
		}
		vf := et.versionField()
		if v, ok := data[vf]; ok && !record.IsNull(v) {
			if _, err := record.ParseTime(v); err != nil {
				add("data."+vf, "%v", err)
			}
		}
		if len(errs) == 0 {
			return nil
		}
		return errs
	})
}

func decodeObject(raw json.RawMessage) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, fmt.Errorf("is required")
	}
	if raw[0] != '{' {
		return nil, fmt.Errorf("must be a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("must be a JSON object")
	}
	return m, nil
}

func isEmpty(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) == 0 || record.IsNull(v) || bytes.Equal(v, []byte(`""`))
}

// scalarText returns a JSON string's value or a number's literal text.
func scalarText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(bytes.TrimSpace(v))
}
