package tds

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tdscore/tds/internal/httpx"
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

// TestDefaultPayloadRepeatedModuleKey: a Default Payload with its module
// key twice is ambiguous (encoding/json would keep the last record), so it
// is refused, as a JSON body or a form's JSONString, over HTTP too.
func TestDefaultPayloadRepeatedModuleKey(t *testing.T) {
	t.Parallel()
	products, _ := ZohoRegistry().ByRoute("products")
	for _, body := range []string{
		`{"item":{"item_id":"1","name":"a"},"item":{"item_id":"2","name":"b"}}`,
		`{"item":{"item_id":"1","name":"a"},"ITEM":{"item_id":"2","name":"b"}}`,
	} {
		_, err := parseJSONPayload([]byte(body), nil, products)
		require.ErrorIs(t, err, ErrInvalidEvent, body)
		require.ErrorContains(t, err, "item", body)
		form, err := parseForm([]byte(url.Values{FormJSONField: {body}}.Encode()))
		require.NoError(t, err)
		_, err = parseFormPayload(form, nil, products)
		require.ErrorIs(t, err, ErrInvalidEvent, body)
	}
	tdb := openTestDB(t, "sqlite")
	h := newTestHandler(t, tdb)
	requireError(t, webhook(t, h, "products", []byte(`{"item":{"item_id":"1","name":"a"},"item":{"item_id":"2","name":"b"}}`)),
		http.StatusBadRequest, `"item" appears twice`)
	require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
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
			require.False(t, strings.HasPrefix(httpx.PublicError(err), "tds:"))
			return
		}
		_, jsonForm := form[FormJSONField]
		if jsonForm && ev.EntityType != "product" {
			return // an envelope of another type: the Handler's route check refuses it
		}
		require.Equal(t, "product", ev.EntityType)
		require.NotEmpty(t, strings.TrimSpace(ev.EntityID))
		require.NotEmpty(t, ev.EventType)
		if jsonForm {
			return // an envelope's data is the Validator's to judge
		}
		var data map[string]any
		require.NoError(t, json.Unmarshal(ev.Data, &data))
		require.Equal(t, ev.EntityID, data["item_id"])
	})
}

const testZohoSecret = "zohoTestSecret2026"

// zohoFixture reads testdata/zoho/name, a Default Payload built from the
// record shapes of Zoho's API documentation.
func zohoFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "zoho", name))
	require.NoError(t, err)
	return b
}

// zohoRecord is the record of a Default Payload fixture.
func zohoRecord(t testing.TB, name, module string) map[string]any {
	t.Helper()
	var top map[string]map[string]any
	dec := json.NewDecoder(bytes.NewReader(zohoFixture(t, name)))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&top))
	rec, ok := top[module]
	require.True(t, ok, "%s has no %q", name, module)
	return rec
}

// zohoBody is rec as Zoho sends it in shape: "default" (JSON), "JSONString"
// (a form whose JSONString field holds the Default Payload) or "flat" (a
// form of the record's top-level scalar fields). It tells whether the body
// is a form.
func zohoBody(t testing.TB, shape, module string, rec map[string]any) ([]byte, bool) {
	t.Helper()
	js, err := json.Marshal(map[string]any{module: rec})
	require.NoError(t, err)
	switch shape {
	case "default":
		return js, false
	case "JSONString":
		return []byte(url.Values{FormJSONField: {string(js)}}.Encode()), true
	case "flat":
		form := url.Values{}
		for k, v := range rec {
			switch v := v.(type) {
			case string:
				form.Set(k, v)
			case json.Number:
				form.Set(k, v.String())
			case bool:
				form.Set(k, fmt.Sprint(v))
			}
		}
		return []byte(form.Encode()), true
	}
	t.Fatalf("unknown shape %q", shape)
	return nil, false
}

// zohoPost posts body to /webhooks/route?query signed as WithZohoSecret
// documents: the query's and the form's parameters sorted by key, as
// keyvalue, then the raw body.
func zohoPost(t *testing.T, h http.Handler, route, query string, body []byte, form bool, headers ...string) answer {
	t.Helper()
	// As the README asks, the Zoho webhook's URL names its route.
	q, err := url.ParseQuery(query)
	require.NoError(t, err)
	if !q.Has(QueryRoute) {
		query = strings.TrimPrefix(query+"&"+QueryRoute+"="+url.QueryEscape(route), "&")
	}
	return zohoPostQuery(t, h, route, query, body, form, headers...)
}

// zohoPostQuery is zohoPost with the query as given: no route added.
func zohoPostQuery(t *testing.T, h http.Handler, route, query string, body []byte, form bool, headers ...string) answer {
	t.Helper()
	params, err := url.ParseQuery(query)
	require.NoError(t, err)
	ct := "application/json"
	if form {
		ct = "application/x-www-form-urlencoded"
		f, err := url.ParseQuery(string(body))
		require.NoError(t, err)
		for k, vs := range f {
			params[k] = append(params[k], vs...)
		}
	}
	path := "/webhooks/" + route
	if query != "" {
		path += "?" + query
	}
	return serve(t, h, http.MethodPost, path, body,
		append([]string{"Content-Type", ct, HeaderZohoSignature, zohoSignQuery(testZohoSecret, params, body)}, headers...)...)
}

// zohoTypeCases are the seven Zoho types: route, fixture, module key, id
// field and mirror table.
var zohoTypeCases = []struct{ route, fixture, module, idField, table string }{
	{"products", "item.json", "item", "item_id", "products"},
	{"customers", "contact.json", "contact", "contact_id", "customers"},
	{"invoices", "invoice.json", "invoice", "invoice_id", "invoices"},
	{"bills", "bill.json", "bill", "bill_id", "bills"},
	{"credit-notes", "creditnote.json", "creditnote", "creditnote_id", "credit_notes"},
	{"prices", "pricebook.json", "pricebook", "pricebook_id", "price_lists"},
	{"stock", "stock.json", "item", "item_id", "stock"},
}

// TestZohoPayloadsReachTheMirror posts every Zoho type as a Default
// Payload, a JSONString form and a flat form, with and without query
// parameters, Zoho-signed, and finds each entity in its mirror table.
func TestZohoPayloadsReachTheMirror(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		h := newTestHandler(t, tdb, WithZohoSecret(testZohoSecret), WithClock(e.clock.Now))
		require.NoError(t, MigrateMirror(ctx, tdb.db, ZohoRegistry()))
		type mirrored struct{ table, id, name string }
		var want []mirrored
		for _, tc := range zohoTypeCases {
			for si, shape := range []string{"default", "JSONString", "flat"} {
				for qi, query := range []string{"", "event=update&token=abc", "token=abc&event=create"} {
					rec := zohoRecord(t, tc.fixture, tc.module)
					id := fmt.Sprintf("%s%d%d", rec[tc.idField], si, qi)
					rec[tc.idField] = id
					body, form := zohoBody(t, shape, tc.module, rec)
					a := zohoPost(t, h, tc.route, query, body, form)
					require.Equal(t, http.StatusOK, a.status, "%s %s %q: %s", tc.route, shape, query, a.raw)
					require.Equal(t, true, a.body["queued"], a.raw)
					require.Contains(t, a.body["idempotency_key"], ":"+id+":", a.raw)
					name, _ := rec["name"].(string)
					want = append(want, mirrored{tc.table, id, name})
				}
			}
		}
		require.Equal(t, 7*3*3, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events WHERE is_valid"))
		require.Equal(t, 7*3, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events WHERE event_type = 'create'"))

		m, err := NewMirrorSyncer(WithClock(e.clock.Now))
		require.NoError(t, err)
		e.start(t, m)
		require.Eventually(t, func() bool {
			return count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'completed'") == len(want)
		}, 30*time.Second, 10*time.Millisecond)
		require.Equal(t, len(want), count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE outcome = 'synced'"))
		for _, w := range want {
			var data string
			require.NoError(t, tdb.db.NewSelect().Table(w.table).Column("data").
				Where("entity_id = ? AND deleted_at IS NULL", w.id).Scan(ctx, &data), "%s %s", w.table, w.id)
			require.Contains(t, data, w.id)
			require.Contains(t, data, w.name)
		}
	})
}
