package tds

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/tdscore/tds/internal/backoff"
)

// Defaults of the retry policy.
const (
	// DefaultRetryBase is the delay before the second attempt.
	DefaultRetryBase = time.Second
	// DefaultRetryMax caps every retry delay.
	DefaultRetryMax = time.Minute
	// DefaultRetryJitter spreads each delay by ±20%, so that jobs that
	// failed together do not all come back together.
	DefaultRetryJitter = 0.2
)

// RetryPolicy chooses how long a job waits before its next attempt, given
// how many attempts it has had (1 after the first failure). It may be
// called concurrently.
type RetryPolicy interface {
	NextRetry(attempt int) time.Duration
}

// ExponentialBackoff is the default RetryPolicy: Base, 2·Base, 4·Base, …,
// capped at Max, each multiplied by a random factor in [1-Jitter, 1+Jitter]
// and capped at Max again.
type ExponentialBackoff struct {
	Base   time.Duration
	Max    time.Duration
	Jitter float64
}

// DefaultRetryPolicy returns the policy a Worker uses unless
// [WithRetryPolicy] says otherwise: 1 s, 2 s, 4 s, … capped at 60 s, ±20%.
func DefaultRetryPolicy() ExponentialBackoff {
	return ExponentialBackoff{Base: DefaultRetryBase, Max: DefaultRetryMax, Jitter: DefaultRetryJitter}
}

// NextRetry returns the delay after the attempt-th failure.
func (b ExponentialBackoff) NextRetry(attempt int) time.Duration {
	return backoff.Exponential(attempt, b.Base, b.Max, b.Jitter, rand.Float64())
}

// Bounds returns the shortest and longest delay NextRetry can return after
// the attempt-th failure.
func (b ExponentialBackoff) Bounds(attempt int) (lo, hi time.Duration) {
	return backoff.Bounds(attempt, b.Base, b.Max, b.Jitter)
}

// PermanentError marks a failure no retry can fix; see [Permanent].
type PermanentError struct{ Err error }

// Permanent wraps err so that the job is dead-lettered at once, without
// further attempts. errors.As(err, new(*PermanentError)) finds it.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("permanent failure")
	}
	return &PermanentError{Err: err}
}

// Error says the failure is permanent and why.
func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// RetryAfterError asks for the next attempt after Delay; see [RetryAfter].
type RetryAfterError struct {
	Delay time.Duration
	Err   error
}

// RetryAfter wraps err so that the job is retried after d instead of the
// policy's delay, as when the source answered 429 with a Retry-After. The
// attempt still counts: when the job has no attempts left it is
// dead-lettered. errors.As(err, new(*RetryAfterError)) finds it.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = errors.New("retry requested")
	}
	if d < 0 {
		d = 0
	}
	return &RetryAfterError{Delay: d, Err: err}
}

// Error gives the requested delay and the failure.
func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %v", e.Delay, e.Err)
}

// Unwrap returns the wrapped error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// CodedError is an error with a machine-readable code, recorded in
// last_error_code and in the attempt history; dead letters can be listed
// and retried by code. Any error with an ErrorCode() string method works.
type CodedError interface {
	error
	ErrorCode() string
}

type codedError struct {
	code string
	err  error
}

// WithCode attaches code to err (for example "rate_limited" or
// "http_502"). It composes with [Permanent] and [RetryAfter] in any order.
func WithCode(code string, err error) error {
	if err == nil {
		err = errors.New(code)
	}
	return &codedError{code: code, err: err}
}

func (e *codedError) Error() string     { return e.err.Error() }
func (e *codedError) Unwrap() error     { return e.err }
func (e *codedError) ErrorCode() string { return e.code }

// ErrorCode returns the code of the first error in err's chain that has
// one, or "".
func ErrorCode(err error) string {
	var c CodedError
	if errors.As(err, &c) {
		return c.ErrorCode()
	}
	return ""
}

// Error codes tds records itself.
const (
	// CodeLeaseExpired: the worker holding the job stopped renewing its
	// lease (it crashed or lost the database) and the job was rescued.
	CodeLeaseExpired = "lease_expired"
	// CodePanic: the Syncer panicked.
	CodePanic = "panic"
)

// failure is what the worker does with a failed attempt.
type failure struct {
	msg, code  string
	deadLetter bool
	delay      time.Duration
}

// classify turns a Syncer error into a failure of the attempt-th attempt
// of a job allowed maxAttempts.
func classify(err error, attempt, maxAttempts int, policy RetryPolicy) failure {
	f := failure{msg: err.Error(), code: ErrorCode(err)}
	var perm *PermanentError
	var after *RetryAfterError
	switch {
	case errors.As(err, &perm):
		f.deadLetter = true
	case attempt >= maxAttempts:
		f.deadLetter = true
	case errors.As(err, &after):
		f.delay = after.Delay
	default:
		f.delay = policy.NextRetry(attempt)
	}
	return f
}

// WithRetryPolicy sets how long a failed job waits before its next attempt.
// Applies to [NewWorker]. Defaults to [DefaultRetryPolicy].
func WithRetryPolicy(p RetryPolicy) Option {
	return newOption("WithRetryPolicy", forWorker, func(c *config) error {
		if p == nil {
			return optErr("WithRetryPolicy", "policy is nil")
		}
		c.worker.retryPolicy = p
		return nil
	})
}
