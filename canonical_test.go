package tds

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds/internal/canonical"
)

// The behaviour is tested in internal/canonical; this checks that the
// exported wrappers give its results.
func TestContentHashIgnoresKeyOrderAndWhitespace(t *testing.T) {
	t.Parallel()
	a := `{"item_id":"1","name":"Pump","dims":{"w":1,"h":2.50}}`
	b := "{\n  \"dims\" : { \"h\" : 2.50, \"w\" : 1 },\n\t\"name\":\"Pump\", \"item_id\":\"\\u0031\"}"
	ca, err := CanonicalJSON([]byte(a))
	require.NoError(t, err)
	require.Equal(t, `{"dims":{"h":2.50,"w":1},"item_id":"1","name":"Pump"}`, string(ca))
	ha, err := ContentHash([]byte(a))
	require.NoError(t, err)
	hb, err := ContentHash([]byte(b))
	require.NoError(t, err)
	require.Equal(t, ha, hb)
	require.Equal(t, canonical.Hash(ca), ha)

	_, err = CanonicalJSON([]byte(`{"a":1}x`))
	require.Error(t, err)
	_, err = ContentHash([]byte(`{`))
	require.Error(t, err)
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
