package tds

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestContentHashIgnoresKeyOrderAndWhitespace(t *testing.T) {
	t.Parallel()
	a := `{"item_id":"1","name":"Pump","tags":["a","b"],"dims":{"w":1,"h":2.50}}`
	b := "{\n  \"dims\" : { \"h\" : 2.50, \"w\" : 1 },\n\t\"name\":\"Pump\", \"tags\":[ \"a\",\"b\" ], \"item_id\":\"\\u0031\"}"
	ha, err := ContentHash([]byte(a))
	require.NoError(t, err)
	hb, err := ContentHash([]byte(b))
	require.NoError(t, err)
	require.Equal(t, ha, hb)
	require.Len(t, ha, 64)

	for _, changed := range []string{
		`{"item_id":"1","name":"Pump","tags":["b","a"],"dims":{"w":1,"h":2.50}}`, // array order matters
		`{"item_id":"1","name":"Pump","tags":["a","b"],"dims":{"w":1,"h":2.5}}`,  // numbers keep their text
		`{"item_id":"1","name":"pump","tags":["a","b"],"dims":{"w":1,"h":2.50}}`,
	} {
		hc, err := ContentHash([]byte(changed))
		require.NoError(t, err)
		require.NotEqual(t, ha, hc, changed)
	}
}

func TestCanonicalJSONRejectsBadInput(t *testing.T) {
	t.Parallel()
	for _, in := range []string{``, `{`, `{"a":1} {"b":2}`, `{"a":1}x`, `nul`} {
		_, err := CanonicalJSON([]byte(in))
		require.Error(t, err, in)
	}
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{
		`{"b":1,"a":[1,2,{"d":null,"c":true}]}`,
		`{"name":"Pump \u00e9 <b>","rate":1249.50,"n":-0,"e":1e10}`,
		`[]`, `"x"`, `12`, `{"a":{"a":{"a":{}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := CanonicalJSON(raw)
		if err != nil {
			return
		}
		// Canonical form is valid JSON, equal in value to the input, and a
		// fixed point: canonicalising it again changes nothing.
		require.True(t, json.Valid(c))
		again, err := CanonicalJSON(c)
		require.NoError(t, err)
		require.Equal(t, string(c), string(again))
		var v1, v2 any
		require.NoError(t, json.Unmarshal(raw, &v1))
		require.NoError(t, json.Unmarshal(c, &v2))
		require.Equal(t, v1, v2)
	})
}

func BenchmarkContentHash(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("testdata", "envelope", "invoice.json"))
	require.NoError(b, err)
	ev, err := ParseEnvelope(raw)
	require.NoError(b, err)
	b.SetBytes(int64(len(ev.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ContentHash(ev.Data); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCanonicalizeFindsNUL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		`{"a":"x\u0000y"}`:      true,
		`{"a\u0000":1}`:         true,
		`[["\u0000"]]`:          true,
		`{"a":"\\u0000"}`:       false, // an escaped backslash, then text
		`{"a":"plain","b":[1]}`: false,
	} {
		_, nul, err := canonicalize([]byte(in))
		require.NoError(t, err, in)
		require.Equal(t, want, nul, in)
	}
}
