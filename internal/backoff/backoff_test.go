package backoff

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestExponential(t *testing.T) {
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{
		{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second},
		{6, 32 * time.Second}, {7, time.Minute}, {100, time.Minute}, {5000, time.Minute},
	} {
		require.Equal(t, tc.want, Exponential(tc.attempt, time.Second, time.Minute, 0, 0.7), "attempt %d", tc.attempt)
	}
}

func TestJitterStaysInBounds(t *testing.T) {
	for attempt := 1; attempt < 10; attempt++ {
		lo, hi := Bounds(attempt, time.Second, time.Minute, 0.2)
		require.LessOrEqual(t, lo, hi)
		require.LessOrEqual(t, hi, time.Minute)
		for _, r := range []float64{0, 0.25, 0.5, 0.999} {
			d := Exponential(attempt, time.Second, time.Minute, 0.2, r)
			require.GreaterOrEqual(t, d, lo)
			require.LessOrEqual(t, d, hi)
		}
	}
	lo, hi := Bounds(1, time.Second, time.Minute, 0.2)
	require.Equal(t, 800*time.Millisecond, lo)
	require.Equal(t, 1200*time.Millisecond, hi)
}
