package tds

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParsePayloads(t *testing.T) {
	t.Parallel()
	products, _ := ZohoRegistry().ByRoute("products")
	rec := `{"item_id":"7","name":"Pump","extra":{"nested":[1,2]}}`
	for _, tc := range []struct {
		name      string
		form      bool
		body      string
		query     string
		wantEvent string
		wantID    string
		wantData  string
	}{
		{"default payload", false, `{"item":` + rec + `}`, "", EventUpdate, "7", rec},
		{"default payload, unknown top-level fields", false, `{"code":0,"item":` + rec + `}`, "event=create", EventCreate, "7", rec},
		{"default payload, numeric id", false, `{"item":{"item_id":7}}`, "event=delete", EventDelete, "7", `{"item_id":7}`},
		{"envelope ignores ?event=", false, `{"event_type":"create","entity_type":"product","entity_id":"7","data":` + rec + `}`, "event=delete", EventCreate, "7", rec},
		{"form with JSONString", true, "JSONString=" + url.QueryEscape(`{"item":`+rec+`}`), "event=create", EventCreate, "7", rec},
		{"form with JSONString envelope", true, "JSONString=" + url.QueryEscape(`{"event_type":"delete","entity_type":"product","entity_id":"7","data":{}}`), "", EventDelete, "7", `{}`},
		{"flat form", true, "item_id=7&name=Pump&tag=a&tag=b", "", EventUpdate, "7", `{"item_id":"7","name":"Pump","tag":["a","b"]}`},
		{"unknown event is left to the validator", true, "item_id=7", "event=archive", "archive", "7", `{"item_id":"7"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			require.NoError(t, err)
			var ev *Event
			if tc.form {
				form, err := parseForm([]byte(tc.body))
				require.NoError(t, err)
				ev, err = parseFormPayload(form, q, products)
				require.NoError(t, err)
			} else {
				ev, err = parseJSONPayload([]byte(tc.body), q, products)
				require.NoError(t, err)
			}
			require.Equal(t, "product", ev.EntityType)
			require.Equal(t, tc.wantEvent, ev.EventType)
			require.Equal(t, tc.wantID, ev.EntityID)
			require.JSONEq(t, tc.wantData, string(ev.Data))
		})
	}
	for body, msg := range map[string]string{
		`{"item":{"name":"x"}}`:     "item.item_id is required",
		`{"item":{"item_id":""}}`:   "item.item_id is required",
		`{"item":{"item_id":true}}`: "item.item_id must be a string",
		`{"item":null}`:             "item is required",
		`{"item":{}} {}`:            "data after the envelope",
		`{"pricebook":{"x":1}}`:     "neither a tds envelope",
		`[]`:                        "JSON object",
		`{"entity_type":"product"}`: "event_type is required",
	} {
		_, err := parseJSONPayload([]byte(body), nil, products)
		require.ErrorIs(t, err, ErrInvalidEvent, body)
		require.ErrorContains(t, err, msg, body)
	}
	for body, msg := range map[string]string{
		"name=x":                        "form field item_id is required",
		"item_id=1&item_id=2":           "form field item_id is required, once",
		"item_id=%20":                   "form field item_id is required",
		"JSONString=%7B%7D&JSONString=": "JSONString given 2 times",
		"JSONString=" + url.QueryEscape(`{"item":{}}`): "item.item_id is required",
	} {
		form, err := parseForm([]byte(body))
		require.NoError(t, err)
		_, err = parseFormPayload(form, nil, products)
		require.ErrorIs(t, err, ErrInvalidEvent, body)
		require.ErrorContains(t, err, msg, body)
	}
	// A type without module keys takes envelopes only.
	widget := EntityType{Name: "widget", IDField: "widget_id"}
	_, err := parseJSONPayload([]byte(`{"widget":{"widget_id":"1"}}`), nil, widget)
	require.ErrorContains(t, err, "event_type is required")
}

func TestBodyKindOf(t *testing.T) {
	t.Parallel()
	for ct, want := range map[string]bodyKind{
		"": bodyJSON, "application/json": bodyJSON, "application/json; charset=utf-8": bodyJSON,
		"application/vnd.zoho+json": bodyJSON, "application/x-www-form-urlencoded": bodyForm,
		"application/x-www-form-urlencoded; charset=UTF-8": bodyForm, "text/plain": bodyUnsupported,
		"multipart/form-data; boundary=x": bodyUnsupported, "application/json; =": bodyUnsupported,
	} {
		require.Equal(t, want, bodyKindOf(ct), ct)
	}
}

// FuzzFormPayload: any form body decodes without panicking; an accepted
// one is an event of the route's type with a non-empty id whose data is a
// JSON object holding that id.
func FuzzFormPayload(f *testing.F) {
	f.Add("item_id=460000000038080&name=Hydraulic+Pump&rate=1249.5", "event=update")
	f.Add("JSONString="+url.QueryEscape(`{"item":{"item_id":"1","name":"P"}}`), "event=create&token=abc")
	f.Add("JSONString="+url.QueryEscape(`{"event_type":"update","entity_type":"product","entity_id":"1","data":{"item_id":"1"}}`), "")
	f.Add("JSONString=%7B&item_id=1", "")
	f.Add("item_id=1&item_id=1", "event=")
	f.Add("item_id=%00&name=%ff", "event=%00")
	f.Add("a=%zz", "")
	f.Add("", "")
	products, _ := ZohoRegistry().ByRoute("products")
	f.Fuzz(func(t *testing.T, body, query string) {
		q, _ := url.ParseQuery(query)
		form, err := parseForm([]byte(body))
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidEvent)
			return
		}
		ev, err := parseFormPayload(form, q, products)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidEvent)
			require.False(t, strings.HasPrefix(publicError(err), "tds:"))
			return
		}
		require.Equal(t, "product", ev.EntityType)
		require.NotEmpty(t, strings.TrimSpace(ev.EntityID))
		require.NotEmpty(t, ev.EventType)
		if _, jsonForm := form[FormJSONField]; jsonForm {
			return // an envelope's data is the Validator's to judge
		}
		var data map[string]any
		require.NoError(t, json.Unmarshal(ev.Data, &data))
		require.Equal(t, ev.EntityID, data["item_id"])
	})
}
