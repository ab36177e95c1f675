package httpx

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds/internal/testkit"
)

// The limiter's memory is bounded: past maxRefusalEntries addresses, idle
// entries are dropped first, then any; idle entries go once a period.
func TestRefusalsBounded(t *testing.T) {
	clock := testkit.NewClock()
	l := NewRefusals(1, time.Minute, clock.Now)
	for i := range maxRefusalEntries + 100 {
		l.Refuse(netipString(i))
	}
	require.LessOrEqual(t, len(l.entries), maxRefusalEntries)
	_, limited := l.Limited(netipString(maxRefusalEntries + 99))
	require.True(t, limited, "the newest address is remembered")
	clock.Advance(2 * time.Minute)
	l.Refuse("198.51.100.1")
	require.Equal(t, 1, len(l.entries), "a period later, every idle entry was dropped")
}

func netipString(i int) string {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
}
