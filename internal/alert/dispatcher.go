package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tdscore/tds/internal/backoff"
)

// Dispatcher defaults.
const (
	DefaultQueueSize   = 64
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAttempts = 5
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = time.Minute
)

// backoffJitter spreads retries of several processes apart.
const backoffJitter = 0.2

// DispatcherConfig configures [NewDispatcher]; every zero field takes its
// default.
type DispatcherConfig struct {
	// QueueSize is how many messages wait per notifier before Enqueue
	// drops. Defaults to DefaultQueueSize.
	QueueSize int
	// Timeout bounds each attempt. Defaults to DefaultTimeout.
	Timeout time.Duration
	// MaxAttempts is how many times a message is tried. Defaults to
	// DefaultMaxAttempts.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the jittered exponential wait
	// between attempts. Default to DefaultBackoffBase and
	// DefaultBackoffMax.
	BackoffBase, BackoffMax time.Duration
	// Logger receives a warning per failed attempt and an error per
	// message given up or dropped. Defaults to slog.Default().
	Logger *slog.Logger
	// OnResult, when set, is called once per message and notifier, from
	// that notifier's goroutine, with nil when it was delivered (the time
	// to [MarkClaimed]) or the last attempt's error. It must not block long:
	// the notifier's next message waits for it.
	OnResult func(notifier string, alerts []Alert, err error)
}

// DispatcherStats counts messages, one per notifier: delivered, given up
// after the last attempt (or cut short by Close), dropped because a queue
// was full or the dispatcher closed.
type DispatcherStats struct {
	Sent, Failed, Dropped uint64
}

// Dispatcher delivers alerts to several notifiers asynchronously: each
// notifier has its own bounded queue and goroutine, so a slow or failing
// receiver delays no other, and Enqueue never blocks. Its methods may be
// called concurrently.
type Dispatcher struct {
	cfg     DispatcherConfig
	targets []*target
	ctx     context.Context // cancelled when Close gives up waiting
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu     sync.RWMutex
	closed bool

	sent, failed, dropped atomic.Uint64
}

type target struct {
	name     string
	notifier Notifier
	queue    chan []Alert
}

// NewDispatcher starts one goroutine per notifier, named by the map's keys
// in logs and in OnResult. A nil notifier or a negative setting is an
// error naming it. Close stops the goroutines.
func NewDispatcher(cfg DispatcherConfig, notifiers map[string]Notifier) (*Dispatcher, error) {
	var errs []error
	if cfg.QueueSize < 0 {
		errs = append(errs, errors.New("alert: DispatcherConfig.QueueSize: must be >= 0"))
	}
	errs = append(errs, checkDelivery("DispatcherConfig", cfg.Timeout, cfg.MaxAttempts, cfg.BackoffBase, cfg.BackoffMax)...)
	names, nilErrs := notifierNames("NewDispatcher", notifiers)
	if err := errors.Join(append(errs, nilErrs...)...); err != nil {
		return nil, err
	}
	cfg.QueueSize = or(cfg.QueueSize, DefaultQueueSize)
	cfg.Timeout = or(cfg.Timeout, DefaultTimeout)
	cfg.MaxAttempts = or(cfg.MaxAttempts, DefaultMaxAttempts)
	cfg.BackoffBase = or(cfg.BackoffBase, DefaultBackoffBase)
	cfg.BackoffMax = or(cfg.BackoffMax, DefaultBackoffMax)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Dispatcher{cfg: cfg}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	for _, name := range names {
		t := &target{name: name, notifier: notifiers[name], queue: make(chan []Alert, cfg.QueueSize)}
		d.targets = append(d.targets, t)
		d.wg.Add(1)
		go d.run(t)
	}
	return d, nil
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Enqueue queues alerts, as one message, for every notifier and returns at
// once. A notifier whose queue is full, or a closed dispatcher, drops the
// message (counted and logged). Empty alerts are ignored. The slice is
// copied; the alerts' maps and pointers must not change afterwards.
func (d *Dispatcher) Enqueue(alerts []Alert) {
	if len(alerts) == 0 {
		return
	}
	msg := slices.Clone(alerts)
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, t := range d.targets {
		if d.closed {
			d.drop(t, msg, "dispatcher closed")
			continue
		}
		select {
		case t.queue <- msg:
		default:
			d.drop(t, msg, "queue full")
		}
	}
}

func (d *Dispatcher) drop(t *target, msg []Alert, why string) {
	d.dropped.Add(1)
	d.cfg.Logger.Error("alert: notification dropped", "notifier", t.name, "reason", why, "alerts", len(msg))
}

// Stats returns the counters so far.
func (d *Dispatcher) Stats() DispatcherStats {
	return DispatcherStats{Sent: d.sent.Load(), Failed: d.failed.Load(), Dropped: d.dropped.Load()}
}

// Close stops accepting messages and waits until every queued message was
// delivered or given up. When ctx ends first, the attempts and waits in
// progress are cancelled (counted as failed), Close waits for the
// goroutines to return and returns ctx's error. Later calls wait likewise.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		for _, t := range d.targets {
			close(t.queue)
		}
	}
	d.mu.Unlock()
	return waitClosed(ctx, &d.wg, d.cancel)
}

// run delivers t's messages one after another until its queue closes.
func (d *Dispatcher) run(t *target) {
	defer d.wg.Done()
	for msg := range t.queue {
		err := d.deliver(t, msg)
		if err == nil {
			d.sent.Add(1)
		} else {
			d.failed.Add(1)
			d.cfg.Logger.Error("alert: notification failed", "notifier", t.name, "alerts", len(msg), "err", err)
		}
		if d.cfg.OnResult != nil {
			d.cfg.OnResult(t.name, msg, err)
		}
	}
}

// deliver tries msg up to MaxAttempts times, each within Timeout, waiting
// a jittered exponential backoff between attempts. Every attempt carries
// the same [MessageID].
func (d *Dispatcher) deliver(t *target, msg []Alert) error {
	var err error
	base := WithMessageID(d.ctx, NewMessageID())
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(base, d.cfg.Timeout)
		err = t.notifier.Notify(ctx, msg)
		cancel()
		if err == nil {
			return nil
		}
		if attempt >= d.cfg.MaxAttempts {
			return err
		}
		wait := backoff.Exponential(attempt, d.cfg.BackoffBase, d.cfg.BackoffMax, backoffJitter, rand.Float64())
		d.cfg.Logger.Warn("alert: notification attempt failed", "notifier", t.name, "attempt", attempt, "retry_in", wait, "err", err)
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-d.ctx.Done():
			timer.Stop()
			return fmt.Errorf("%w (dispatcher closed before attempt %d)", err, attempt+1)
		}
	}
}
