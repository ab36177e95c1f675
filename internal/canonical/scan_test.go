package canonical

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var scanSeeds = []string{
	`{}`, `[]`, `{"a":1,"b":[1,2,{"c":"d"}]}`, `{"a":1,"a":2}`, `{"a":{"b":1,"b":2}}`,
	`{"a\u0062":1,"ab":2}`, `{"A":1,"a":2}`, `{"entity_id":"1","ENTITY_ID":"2"}`,
	`[` + strings.Repeat("9", 101) + `]`, `1e1001`, `-1.5e-3`, `"x\"y"`, `{"k":"v"`, `{"k" 1}`,
	`[1,]`, `tru`, `nul`, `  {"a" : [ true , false , null ] }  `, `{"a":1} x`,
	strings.Repeat("[", 128) + strings.Repeat("]", 128), strings.Repeat("[", 129) + strings.Repeat("]", 129),
	`{"` + strings.Repeat("k", 20) + `":1,` + func() string {
		var b strings.Builder
		for i := range 40 {
			b.WriteString(`"k` + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `":1,`)
		}
		return b.String()
	}() + `"kaa":2}`,
}

// FuzzScanMatchesTokens: the fast scanner and the exact walk over tokens
// accept and refuse the same inputs, with the same words.
func FuzzScanMatchesTokens(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fast, exact := check(raw), checkTokens(raw)
		if exact == nil {
			require.NoError(t, fast, "%q", raw)
		} else {
			require.Error(t, fast, "%q", raw)
		}
		if fast != nil && exact != nil && scanValue(raw, nil) != nil && !isScanFallback(raw) {
			require.Equal(t, exact.Error(), fast.Error(), "%q", raw)
		}
		k1, k2 := CheckObjectKeys(raw), checkObjectKeysTokens(raw)
		require.Equal(t, k2 == nil, k1 == nil, "%q: %v vs %v", raw, k1, k2)
		if k1 != nil {
			require.Equal(t, k2.Error(), k1.Error(), "%q", raw)
		}
	})
}

// isScanFallback reports whether the scanner handed raw to the exact walk.
func isScanFallback(raw []byte) bool { return scanValue(raw, nil) == errScan }
