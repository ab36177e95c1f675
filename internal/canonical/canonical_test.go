package canonical

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// hashOf canonicalizes raw and hashes it, as tds.ContentHash does.
func hashOf(t *testing.T, raw string) string {
	t.Helper()
	c, _, err := Canonicalize([]byte(raw))
	require.NoError(t, err, raw)
	return Hash(c)
}

// The canonical form and its hash are stored with every inbox event: a
// change here would make a redelivery of old content look new.
func TestCanonicalFormIsStable(t *testing.T) {
	t.Parallel()
	in := `{"b":[1,2.50,-0,1e10],"a":{"é<>&":"x\u00e9\n\u2028","z":null,"y":true}}`
	c, nul, err := Canonicalize([]byte(in))
	require.NoError(t, err)
	require.False(t, nul)
	require.Equal(t, `{"a":{"y":true,"z":null,"é<>&":"xé\n\u2028"},"b":[1,2.50,-0,1e10]}`, string(c))
	require.Equal(t, "558914d6031dc4fcf260daa042753bac7e035ea33d77bac36bf23de73576abcc", Hash(c))
}

func TestHashIgnoresKeyOrderAndWhitespace(t *testing.T) {
	t.Parallel()
	a := `{"item_id":"1","name":"Pump","tags":["a","b"],"dims":{"w":1,"h":2.50}}`
	b := "{\n  \"dims\" : { \"h\" : 2.50, \"w\" : 1 },\n\t\"name\":\"Pump\", \"tags\":[ \"a\",\"b\" ], \"item_id\":\"\\u0031\"}"
	ha := hashOf(t, a)
	require.Equal(t, ha, hashOf(t, b))
	require.Len(t, ha, 64)

	for _, changed := range []string{
		`{"item_id":"1","name":"Pump","tags":["b","a"],"dims":{"w":1,"h":2.50}}`, // array order matters
		`{"item_id":"1","name":"Pump","tags":["a","b"],"dims":{"w":1,"h":2.5}}`,  // numbers keep their text
		`{"item_id":"1","name":"pump","tags":["a","b"],"dims":{"w":1,"h":2.50}}`,
	} {
		require.NotEqual(t, ha, hashOf(t, changed), changed)
	}
}

func TestCanonicalizeRejectsBadInput(t *testing.T) {
	t.Parallel()
	for _, in := range []string{``, `{`, `{"a":1} {"b":2}`, `{"a":1}x`, `nul`} {
		_, _, err := Canonicalize([]byte(in))
		require.Error(t, err, in)
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
		_, nul, err := Canonicalize([]byte(in))
		require.NoError(t, err, in)
		require.Equal(t, want, nul, in)
	}
}

// FuzzCanonicalize checks, on any input the decoder accepts, that the
// canonical form is valid JSON, equal in value to the input, and stable:
// canonicalizing it again gives the same bytes and the same NUL verdict.
// The seeds run as an ordinary test.
func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{
		`{"b":1,"a":[1,2,{"d":null,"c":true}]}`,
		`{"name":"Pump \u00e9 <b>","rate":1249.50,"n":-0,"e":1e10}`,
		`[]`, `"x"`, `12`, `{"a":{"a":{"a":{}}}}`,
		`{"a":"x\u0000y","\u0000":[1]}`,
		`"\ud800"`, `"\u2028\u2029\t\"\\"`, "\"\xff\"", `{"a":1,"a":2}`,
		` [1E+2, 0.000, -1.5e-7] `, `{"a":1} x`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, nul, err := Canonicalize(raw)
		if err != nil {
			return
		}
		require.True(t, json.Valid(c), "%q", c)
		again, nul2, err := Canonicalize(c)
		require.NoError(t, err)
		require.Equal(t, string(c), string(again))
		require.Equal(t, nul, nul2)
		var v1, v2 any
		require.NoError(t, json.Unmarshal(raw, &v1))
		require.NoError(t, json.Unmarshal(c, &v2))
		require.Equal(t, v1, v2)
	})
}
