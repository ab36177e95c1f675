package tds

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds/internal/canonical"
)

func TestParseEnvelopeFixtures(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "envelope", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		body, err := os.ReadFile(f)
		require.NoError(t, err)
		ev, err := ParseEnvelope(body)
		require.NoError(t, err, f)
		require.NotEmpty(t, ev.EntityType)
		require.NotEmpty(t, ev.EntityID)
		require.NotEmpty(t, ev.Data)
	}
}

func TestParseEnvelopeErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body, want string
	}{
		{`not json`, "malformed JSON"},
		{`[1,2]`, "malformed JSON"},
		{`{"event_type":"update","entity_type":"product","entity_id":"1"} {}`, "data after"},
		{`{"entity_type":"product","entity_id":"1","data":{}}`, "event_type is required"},
		{`{"event_type":"update","entity_id":"1"}`, "entity_type is required"},
		{`{"event_type":"update","entity_type":"product","entity_id":""}`, "entity_id is required"},
		{`{"event_type":"update","entity_type":7,"entity_id":"1"}`, "entity_type must be a string"},
		{`{}`, "event_type is required; entity_type is required; entity_id is required"},
		{"{\"event_type\":\"update\xff\",\"entity_type\":\"product\",\"entity_id\":\"1\"}", "not valid UTF-8"},
		{`{"event_type":"update","entity_type":"product","entity_id":"1","Entity_Id":"2"}`, "differ only in case"},
		{`{"event_type":"update","event_type":"delete","entity_type":"product","entity_id":"1"}`, `key "event_type" appears twice`},
	} {
		_, err := ParseEnvelope([]byte(tc.body))
		require.Error(t, err, tc.body)
		require.True(t, errors.Is(err, ErrInvalidEvent), tc.body)
		require.Contains(t, err.Error(), tc.want, tc.body)
	}
}

func TestParseEnvelopeNumericEntityID(t *testing.T) {
	t.Parallel()
	ev, err := ParseEnvelope([]byte(`{"event_type":"update","entity_type":"product","entity_id":460000000038080,"data":{}}`))
	require.NoError(t, err)
	require.Equal(t, "460000000038080", ev.EntityID)
}

func FuzzParseEnvelope(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "envelope", "*.json"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"event_type":"update","entity_type":"product","entity_id":12,"data":null}`))
	f.Add([]byte(`{"event_type":"update","entity_type":"product","entity_id":"1","ENTITY_ID":"2","data":{"a":1e1001}}`))
	f.Add([]byte("{\"event_type\":\"update\",\"entity_type\":\"product\",\"entity_id\":\"1\xff\",\"data\":{\"n\":" + strings.Repeat("9", 300) + "}}"))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseEnvelope(body)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidEvent)
			return
		}
		require.NotEmpty(t, ev.EventType)
		require.NotEmpty(t, ev.EntityType)
		require.NotEmpty(t, ev.EntityID)
		// What is accepted is UTF-8 and unambiguous about its fields.
		require.True(t, utf8.Valid(body))
		require.NoError(t, canonical.CheckObjectKeys(body))
		// Whatever parses must be safe to validate and to key.
		_ = DefaultValidator(ZohoRegistry()).Validate(t.Context(), ev)
		cfg, err := newConfig(forProcessor, nil)
		require.NoError(t, err)
		if row, err := cfg.newInboxEvent(ev, cfg.typeOf(ev)); err == nil {
			require.NotEmpty(t, row.IdempotencyKey)
		}
	})
}

func BenchmarkParseEnvelope(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("testdata", "envelope", "invoice.json"))
	require.NoError(b, err)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseEnvelope(raw); err != nil {
			b.Fatal(err)
		}
	}
}
