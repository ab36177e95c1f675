package httpx

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClientIP(t *testing.T) {
	trusted, bad := ParsePrefixes([]string{"10.0.0.0/8", "::1"})
	require.Empty(t, bad)
	for _, tc := range []struct{ remote, xff, want string }{
		{"203.0.113.7:1234", "", "203.0.113.7"},
		{"203.0.113.7:1234", "1.2.3.4", "203.0.113.7"}, // untrusted peer: its header is ignored
		{"10.0.0.1:1234", "198.51.100.2", "198.51.100.2"},
		{"10.0.0.1:1234", "6.6.6.6, 198.51.100.2, 10.0.0.2", "198.51.100.2"},
		{"10.0.0.1:1234", "", "10.0.0.1"},
		{"10.0.0.1:1234", "garbage", "10.0.0.1"},
		{"[::1]:1234", "2001:db8::1", "2001:db8::1"},
		{"[::ffff:10.0.0.3]:1234", "198.51.100.9", "198.51.100.9"},
		{"pipe", "", "pipe"},
	} {
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		require.Equal(t, tc.want, ClientIP(r, trusted), "%s via %s", tc.xff, tc.remote)
	}
}

func TestParsePrefixesNamesTheBadOne(t *testing.T) {
	_, bad := ParsePrefixes([]string{"10.0.0.0/8", "10.0.0.0/99", "x"})
	require.Equal(t, "10.0.0.0/99", bad)
}
