package tds

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tdscore/tds/internal/record"
)

// Defaults of the options.
const (
	// DefaultMaxAttempts is how many times a job is tried before it is
	// dead-lettered, unless its entity type says otherwise.
	DefaultMaxAttempts = 3
	// DefaultPriority is the priority of an entity type that names none.
	DefaultPriority = 5
)

// Option configures one of the constructors of this package. Each option
// knows the constructors it applies to, which its documentation names
// ("Applies to [NewWorker]."); passing it to any other constructor is an
// error naming both, such as "tds: WithConcurrency does not apply to
// NewQueue", never silently ignored. Options never panic: a bad value is
// reported as an error by the constructor, naming the option. The zero
// Option does nothing.
type Option struct {
	name    string
	targets target
	apply   func(*config) error
}

// target is a set of constructors, one bit each.
type target uint8

const (
	forProcessor target = 1 << iota
	forInbox
	forQueue
	forWorker
	forMirrorSyncer
	forHandler
)

// targetNames are the constructors of the targets, in bit order.
var targetNames = [...]string{"NewProcessor", "NewInbox", "NewQueue", "NewWorker", "NewMirrorSyncer", "NewHandler"}

func (t target) String() string {
	var names []string
	for i, n := range targetNames {
		if t&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, "|")
}

func newOption(name string, t target, apply func(*config) error) Option {
	return Option{name: name, targets: t, apply: apply}
}

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
	// pollOnly: no NOTIFY after ingest (WithPollOnly).
	pollOnly bool
	// onBatch are the WithBatchObserver functions; see observer.go.
	onBatch []func(events int)
	trace   traceHooks // see trace.go

	worker  workerSettings  // read by NewWorker; see worker.go
	handler handlerSettings // read by NewHandler; see handler.go
}

// newConfig applies opts for the constructor t, which must be a single
// target. An option that does not apply to t is an error.
func newConfig(t target, opts []Option) (*config, error) {
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
		if o.apply == nil {
			continue
		}
		if o.targets&t == 0 {
			errs = append(errs, fmt.Errorf("tds: %s does not apply to %s", o.name, t))
			continue
		}
		if err := o.apply(c); err != nil {
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
// Applies to [NewProcessor], [NewQueue], [NewMirrorSyncer] and [NewHandler].
// Defaults to [ZohoRegistry].
func WithRegistry(r *Registry) Option {
	return newOption("WithRegistry", forProcessor|forQueue|forMirrorSyncer|forHandler, func(c *config) error {
		if r == nil {
			return optErr("WithRegistry", "registry is nil")
		}
		c.registry = r
		return nil
	})
}

// WithValidator sets the validator run on every new event.
// Applies to [NewProcessor] and [NewHandler].
// Defaults to [DefaultValidator] over the registry.
func WithValidator(v Validator) Option {
	return newOption("WithValidator", forProcessor|forHandler, func(c *config) error {
		if v == nil {
			return optErr("WithValidator", "validator is nil")
		}
		c.validator = v
		return nil
	})
}

// WithPrioritizer sets how a valid event's queue priority is chosen.
// Applies to [NewProcessor] and [NewHandler].
// Defaults to [DefaultPrioritizer] over the registry.
func WithPrioritizer(p Prioritizer) Option {
	return newOption("WithPrioritizer", forProcessor|forHandler, func(c *config) error {
		if p == nil {
			return optErr("WithPrioritizer", "prioritizer is nil")
		}
		c.prioritizer = p
		return nil
	})
}

// WithSource sets the source recorded for events that do not name one; it
// is the first part of every idempotency key.
// Applies to [NewProcessor], [NewInbox] and [NewHandler].
// Defaults to [DefaultSource].
func WithSource(source string) Option {
	return newOption("WithSource", forProcessor|forInbox|forHandler, func(c *config) error {
		if err := record.CheckKeyPart(source); err != nil {
			return optErr("WithSource", "%v", err)
		}
		c.source = source
		return nil
	})
}

// WithRedactHeaders adds header names whose values never reach the
// database, even those stored in clear by default. Only known-harmless
// headers are stored in clear (Accept, Accept-Encoding, Content-Type,
// Content-Length, User-Agent, X-Forwarded-For and the other forwarding
// headers, X-Request-Id, Traceparent, Standard Webhooks' Webhook-Id and
// Webhook-Timestamp, and the header of [WithDeliveryIDHeader]); every
// other header is stored with its name and the value [Redacted].
// Applies to [NewProcessor], [NewInbox] and [NewHandler].
// Defaults to none: the allowlist alone decides.
func WithRedactHeaders(names ...string) Option {
	return newOption("WithRedactHeaders", forProcessor|forInbox|forHandler, func(c *config) error {
		for _, n := range names {
			if n == "" {
				return optErr("WithRedactHeaders", "empty header name")
			}
			c.redact[http.CanonicalHeaderKey(n)] = true
		}
		return nil
	})
}

// WithMaxAttempts sets how many times a job is tried before it is
// dead-lettered, for entity types that do not set their own.
// Applies to [NewProcessor], [NewQueue] and [NewHandler].
// Defaults to [DefaultMaxAttempts].
func WithMaxAttempts(n int) Option {
	return newOption("WithMaxAttempts", forProcessor|forQueue|forHandler, func(c *config) error {
		if n < 1 {
			return optErr("WithMaxAttempts", "must be >= 1, got %d", n)
		}
		c.maxAttempts = n
		return nil
	})
}

// WithIngestBatch sets the most events that concurrent [Processor.Process]
// calls store in one shared transaction (group commit); 1 gives every event
// its own transaction.
// Applies to [NewProcessor] and [NewHandler].
// Defaults to [DefaultIngestBatch].
func WithIngestBatch(n int) Option {
	return newOption("WithIngestBatch", forProcessor|forHandler, func(c *config) error {
		if n < 1 {
			return optErr("WithIngestBatch", "must be >= 1, got %d", n)
		}
		c.ingestBatch = n
		return nil
	})
}

// WithClock sets the source of the current time, for tests.
// Applies to [NewProcessor], [NewInbox], [NewQueue], [NewWorker],
// [NewMirrorSyncer] and [NewHandler].
// Defaults to time.Now.
func WithClock(now func() time.Time) Option {
	return newOption("WithClock", forProcessor|forInbox|forQueue|forWorker|forMirrorSyncer|forHandler, func(c *config) error {
		if now == nil {
			return optErr("WithClock", "clock is nil")
		}
		c.now = now
		return nil
	})
}

// WithLogger sets the logger.
// Applies to [NewProcessor], [NewWorker] and [NewHandler].
// Defaults to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return newOption("WithLogger", forProcessor|forWorker|forHandler, func(c *config) error {
		if l == nil {
			return optErr("WithLogger", "logger is nil")
		}
		c.logger = l
		return nil
	})
}
