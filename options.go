package tds

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Defaults of the options.
const (
	// DefaultMaxAttempts is how many times a job is tried before it is
	// dead-lettered, unless its entity type says otherwise.
	DefaultMaxAttempts = 3
	// DefaultPriority is the priority of an entity type that names none.
	DefaultPriority = 5
)

// Option configures the types of this package. One option list can be
// shared by [NewProcessor], [NewInbox] and [NewQueue]: each reads the
// settings it uses and ignores the rest. Options never panic: a bad value is
// reported as an error by the constructor, naming the option.
type Option func(*config) error

type config struct {
	registry    *Registry
	validator   Validator
	prioritizer Prioritizer
	source      string
	redact      map[string]bool
	maxAttempts int
	now         func() time.Time
	logger      *slog.Logger
	ingestBatch int

	worker  workerSettings  // read by NewWorker; see worker.go
	handler handlerSettings // read by NewHandler; see handler.go
}

func newConfig(opts []Option) (*config, error) {
	c := &config{
		source:      DefaultSource,
		redact:      make(map[string]bool),
		maxAttempts: DefaultMaxAttempts,
		now:         time.Now,
		logger:      slog.Default(),
		ingestBatch: DefaultIngestBatch,
	}
	for _, h := range defaultRedactedHeaders {
		c.redact[http.CanonicalHeaderKey(h)] = true
	}
	var errs []error
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.registry == nil {
		c.registry = ZohoRegistry()
	}
	if c.validator == nil {
		c.validator = DefaultValidator(c.registry)
	}
	if c.prioritizer == nil {
		c.prioritizer = DefaultPrioritizer(c.registry)
	}
	return c, nil
}

func optErr(name, format string, args ...any) error {
	return fmt.Errorf("tds: %s: %s", name, fmt.Sprintf(format, args...))
}

// WithRegistry sets the entity types tds accepts.
// Defaults to [ZohoRegistry].
func WithRegistry(r *Registry) Option {
	return func(c *config) error {
		if r == nil {
			return optErr("WithRegistry", "registry is nil")
		}
		c.registry = r
		return nil
	}
}

// WithValidator sets the validator run on every new event.
// Defaults to [DefaultValidator] over the registry.
func WithValidator(v Validator) Option {
	return func(c *config) error {
		if v == nil {
			return optErr("WithValidator", "validator is nil")
		}
		c.validator = v
		return nil
	}
}

// WithPrioritizer sets how a valid event's queue priority is chosen.
// Defaults to [DefaultPrioritizer] over the registry.
func WithPrioritizer(p Prioritizer) Option {
	return func(c *config) error {
		if p == nil {
			return optErr("WithPrioritizer", "prioritizer is nil")
		}
		c.prioritizer = p
		return nil
	}
}

// WithSource sets the source recorded for events that do not name one; it
// is the first part of every idempotency key. Defaults to [DefaultSource].
func WithSource(source string) Option {
	return func(c *config) error {
		if err := checkKeyPart(source); err != nil {
			return optErr("WithSource", "%v", err)
		}
		c.source = source
		return nil
	}
}

// WithRedactHeaders adds header names whose values never reach the
// database, on top of the built-in list (X-Webhook-Key, Authorization,
// Cookie, every header whose name contains "signature", ...).
// Defaults to the built-in list alone.
func WithRedactHeaders(names ...string) Option {
	return func(c *config) error {
		for _, n := range names {
			if n == "" {
				return optErr("WithRedactHeaders", "empty header name")
			}
			c.redact[http.CanonicalHeaderKey(n)] = true
		}
		return nil
	}
}

// WithMaxAttempts sets how many times a job is tried before it is
// dead-lettered, for entity types that do not set their own.
// Defaults to [DefaultMaxAttempts].
func WithMaxAttempts(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return optErr("WithMaxAttempts", "must be >= 1, got %d", n)
		}
		c.maxAttempts = n
		return nil
	}
}

// WithIngestBatch sets the most events that concurrent [Processor.Process]
// calls store in one shared transaction (group commit); 1 gives every event
// its own transaction. Defaults to [DefaultIngestBatch].
func WithIngestBatch(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return optErr("WithIngestBatch", "must be >= 1, got %d", n)
		}
		c.ingestBatch = n
		return nil
	}
}

// WithClock sets the source of the current time, for tests.
// Defaults to time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return optErr("WithClock", "clock is nil")
		}
		c.now = now
		return nil
	}
}

// WithLogger sets the logger. Defaults to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return optErr("WithLogger", "logger is nil")
		}
		c.logger = l
		return nil
	}
}
