package tdsreconcile

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/record"
)

// Option configures [New]. Options never panic: a bad value is reported as
// an error by New, naming the option, every bad one at once. The zero
// Option does nothing.
type Option struct {
	apply func(*settings) error
}

// settings are what the options set.
type settings struct {
	source                           string
	now                              func() time.Time
	logger                           *slog.Logger
	interval, fullInterval, lookback time.Duration
	hooks                            hookSet
	// maxDeletes is WithMaxDeletes's number; -1: the default share.
	maxDeletes int
}

// newSettings applies opts over the defaults.
func newSettings(opts []Option) (*settings, error) {
	s := &settings{
		source:       tds.DefaultSource,
		now:          time.Now,
		logger:       slog.Default(),
		interval:     DefaultInterval,
		fullInterval: DefaultFullInterval,
		lookback:     DefaultLookback,
		maxDeletes:   -1,
	}
	var errs []error
	for _, o := range opts {
		if o.apply == nil {
			continue
		}
		if err := o.apply(s); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func optErr(name, format string, args ...any) error {
	return fmt.Errorf("tdsreconcile: %s: %s", name, fmt.Sprintf(format, args...))
}

// WithSource sets the source reconciled: the organisation whose runs,
// watermarks and daily budget these are, and the source of the repairs'
// events (the first part of their idempotency keys), so it should be the
// source its webhooks are ingested under. Runs of different sources do not
// hold each other off.
// Defaults to [tds.DefaultSource].
func WithSource(source string) Option {
	return Option{func(s *settings) error {
		if err := record.CheckKeyPart(source); err != nil {
			return optErr("WithSource", "%v", err)
		}
		s.source = source
		return nil
	}}
}

// WithClock sets the source of the current time (the schedule, the daily
// budget, the runs' holds and times), for tests.
// Defaults to time.Now.
func WithClock(now func() time.Time) Option {
	return Option{func(s *settings) error {
		if now == nil {
			return optErr("WithClock", "clock is nil")
		}
		s.now = now
		return nil
	}}
}

// WithLogger sets the logger.
// Defaults to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return Option{func(s *settings) error {
		if l == nil {
			return optErr("WithLogger", "logger is nil")
		}
		s.logger = l
		return nil
	}}
}

// WithSchedule sets how often [Reconciler.Task] starts an incremental run
// and a full sweep; zero turns that one off.
// Defaults to [DefaultInterval] and [DefaultFullInterval].
func WithSchedule(incremental, full time.Duration) Option {
	return Option{func(s *settings) error {
		if incremental < 0 || full < 0 {
			return optErr("WithSchedule", "intervals must be >= 0, got %s and %s", incremental, full)
		}
		s.interval, s.fullInterval = incremental, full
		return nil
	}}
}

// WithLookback sets how far before its watermark an incremental run keeps
// reading: clock skew, and edits within the same second as the watermark.
// Defaults to [DefaultLookback].
func WithLookback(d time.Duration) Option {
	return Option{func(s *settings) error {
		if d < 0 {
			return optErr("WithLookback", "must be >= 0, got %s", d)
		}
		s.lookback = d
		return nil
	}}
}

// WithHooks adds functions the Reconciler calls as it works (see [Hooks]).
// Given several times, every set is called, in the order given.
// Defaults to none.
func WithHooks(h Hooks) Option {
	return Option{func(s *settings) error {
		s.hooks = append(s.hooks, h)
		return nil
	}}
}

// WithMaxDeletes sets how many deletes of one entity type a run may apply
// on its own: a run that would delete more of any type applies its other
// repairs but no delete, and ends [RunNeedsConfirmation], its deletes held
// as drift until [Reconciler.Confirm]. 0 holds every delete for
// confirmation.
// Defaults to [DefaultMaxDeletesPercent] % of the type's applied records,
// and at least [MinMaxDeletes].
func WithMaxDeletes(n int) Option {
	return Option{func(s *settings) error {
		if n < 0 {
			return optErr("WithMaxDeletes", "must be >= 0, got %d", n)
		}
		s.maxDeletes = n
		return nil
	}}
}
