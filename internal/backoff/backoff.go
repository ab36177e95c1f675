// Package backoff computes retry delays: exponential growth from a base,
// capped, with multiplicative jitter.
package backoff

import (
	"math"
	"time"
)

// Exponential returns base * 2^(attempt-1), capped at max, then scaled by a
// factor in [1-jitter, 1+jitter] chosen by r (a number in [0, 1)), and capped
// at max again. attempt counts from 1; values below 1 are treated as 1.
// jitter is clamped to [0, 1].
func Exponential(attempt int, base, max time.Duration, jitter, r float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	if base <= 0 {
		return 0
	}
	if max < base {
		max = base
	}
	d := float64(base) * math.Pow(2, float64(attempt-1))
	if d > float64(max) || math.IsInf(d, 0) {
		d = float64(max)
	}
	jitter = math.Min(math.Max(jitter, 0), 1)
	d *= 1 - jitter + 2*jitter*r
	if d > float64(max) {
		d = float64(max)
	}
	return time.Duration(d)
}

// Bounds returns the smallest and largest delay Exponential can return for
// the attempt.
func Bounds(attempt int, base, max time.Duration, jitter float64) (lo, hi time.Duration) {
	return Exponential(attempt, base, max, jitter, 0), Exponential(attempt, base, max, jitter, 1)
}
