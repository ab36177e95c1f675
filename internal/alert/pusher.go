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

// PusherConfig configures [NewPusher]; every zero field takes its default,
// those of [DispatcherConfig].
type PusherConfig struct {
	// Timeout bounds each attempt. Defaults to DefaultTimeout.
	Timeout time.Duration
	// MaxAttempts is how many times a state is tried while no newer one
	// replaces it. Defaults to DefaultMaxAttempts.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the jittered exponential wait
	// between attempts. Default to DefaultBackoffBase and
	// DefaultBackoffMax.
	BackoffBase, BackoffMax time.Duration
	// Logger receives a warning per failed attempt and an error per state
	// given up. Defaults to slog.Default().
	Logger *slog.Logger
	// OnResult, when set, is called once per state and notifier that was
	// delivered (err nil) or given up, from that notifier's goroutine,
	// with the state's fresh alerts (those of the states it replaced
	// too). It must not block long.
	OnResult func(notifier string, fresh []Alert, err error)
}

// PusherStats counts states, one per notifier: delivered, given up after
// the last attempt (or cut short by Close), replaced by a newer state
// before they were delivered, dropped because the pusher was closed.
type PusherStats struct {
	Sent, Failed, Superseded, Dropped uint64
}

// Pusher delivers the latest state of the alerts to several notifiers
// whose receivers keep state, such as Alertmanager: each notifier has its
// own goroutine and a slot for one state, so a slow or failing receiver
// delays no other, and Push never blocks. A state not yet delivered is
// replaced by a newer one, whose alerts are a superset of what the
// receiver needs; its retries stop. Its methods may be called
// concurrently.
type Pusher struct {
	cfg     PusherConfig
	targets []*pushTarget
	ctx     context.Context // cancelled when Close gives up waiting
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	sent, failed, superseded, dropped atomic.Uint64
}

type pushTarget struct {
	name     string
	notifier Notifier
	wake     chan struct{} // a state or Close arrived

	mu      sync.Mutex
	pending *pushState
	closing bool
}

// pushState is one state to deliver: every alert the receiver must know
// of, and the fresh ones among them (new since the state before), whose
// delivery OnResult reports.
type pushState struct {
	alerts, fresh []Alert
}

// NewPusher starts one goroutine per notifier, named by the map's keys in
// logs and in OnResult. A nil notifier or a negative setting is an error
// naming it. Close stops the goroutines.
func NewPusher(cfg PusherConfig, notifiers map[string]Notifier) (*Pusher, error) {
	errs := checkDelivery("PusherConfig", cfg.Timeout, cfg.MaxAttempts, cfg.BackoffBase, cfg.BackoffMax)
	names, nilErrs := notifierNames("NewPusher", notifiers)
	if err := errors.Join(append(errs, nilErrs...)...); err != nil {
		return nil, err
	}
	cfg.Timeout = or(cfg.Timeout, DefaultTimeout)
	cfg.MaxAttempts = or(cfg.MaxAttempts, DefaultMaxAttempts)
	cfg.BackoffBase = or(cfg.BackoffBase, DefaultBackoffBase)
	cfg.BackoffMax = or(cfg.BackoffMax, DefaultBackoffMax)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Pusher{cfg: cfg}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	for _, name := range names {
		t := &pushTarget{name: name, notifier: notifiers[name], wake: make(chan struct{}, 1)}
		p.targets = append(p.targets, t)
		p.wg.Add(1)
		go p.run(t)
	}
	return p, nil
}

// Push hands every notifier the state alerts, of which fresh are new, and
// returns at once. A state a notifier has not delivered yet is replaced
// (its fresh alerts carried over). Empty alerts are ignored; after Close
// the state is dropped. The slices are copied; the alerts' maps and
// pointers must not change afterwards.
func (p *Pusher) Push(alerts, fresh []Alert) {
	if len(alerts) == 0 {
		return
	}
	alerts, fresh = slices.Clone(alerts), slices.Clone(fresh)
	for _, t := range p.targets {
		t.mu.Lock()
		if t.closing {
			t.mu.Unlock()
			p.dropped.Add(1)
			p.cfg.Logger.Error("alert: alerts dropped", "notifier", t.name, "reason", "closed", "alerts", len(alerts))
			continue
		}
		s := &pushState{alerts: alerts, fresh: fresh}
		if t.pending != nil {
			p.superseded.Add(1)
			s.fresh = append(slices.Clone(t.pending.fresh), fresh...)
		}
		t.pending = s
		t.mu.Unlock()
		signal(t.wake)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// take returns the pending state, if any, emptying the slot, and whether
// Close was called.
func (t *pushTarget) take() (*pushState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.pending
	t.pending = nil
	return s, t.closing
}

// Stats returns the counters so far.
func (p *Pusher) Stats() PusherStats {
	return PusherStats{Sent: p.sent.Load(), Failed: p.failed.Load(), Superseded: p.superseded.Load(), Dropped: p.dropped.Load()}
}

// Close stops accepting states and waits until each notifier's last state
// was delivered or given up. When ctx ends first, the attempts and waits
// in progress are cancelled (counted as failed), Close waits for the
// goroutines to return and returns ctx's error. Later calls wait likewise.
func (p *Pusher) Close(ctx context.Context) error {
	for _, t := range p.targets {
		t.mu.Lock()
		t.closing = true
		t.mu.Unlock()
		signal(t.wake)
	}
	return waitClosed(ctx, &p.wg, p.cancel)
}

// run delivers t's states until Close.
func (p *Pusher) run(t *pushTarget) {
	defer p.wg.Done()
	for {
		s, closing := t.take()
		if s == nil {
			if closing {
				return
			}
			select {
			case <-t.wake:
			case <-p.ctx.Done():
				return
			}
			continue
		}
		replaced, err := p.deliver(t, s)
		if replaced {
			continue
		}
		if err == nil {
			p.sent.Add(1)
		} else {
			p.failed.Add(1)
			p.cfg.Logger.Error("alert: alerts not delivered", "notifier", t.name, "alerts", len(s.alerts), "err", err)
		}
		if p.cfg.OnResult != nil {
			p.cfg.OnResult(t.name, s.fresh, err)
		}
	}
}

// deliver tries s up to MaxAttempts times, each within Timeout, waiting a
// jittered exponential backoff between attempts. When a newer state
// arrives during a wait, s is abandoned (its fresh alerts handed to the
// newer one) and replaced is true.
func (p *Pusher) deliver(t *pushTarget, s *pushState) (replaced bool, err error) {
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.Timeout)
		err = t.notifier.Notify(ctx, s.alerts)
		cancel()
		if err == nil {
			return false, nil
		}
		if attempt >= p.cfg.MaxAttempts {
			return false, err
		}
		wait := backoff.Exponential(attempt, p.cfg.BackoffBase, p.cfg.BackoffMax, backoffJitter, rand.Float64())
		p.cfg.Logger.Warn("alert: alerts attempt failed", "notifier", t.name, "attempt", attempt, "retry_in", wait, "err", err)
		timer := time.NewTimer(wait)
	wait:
		for {
			select {
			case <-timer.C:
				break wait
			case <-t.wake:
				t.mu.Lock()
				if t.pending != nil {
					t.pending.fresh = append(slices.Clone(s.fresh), t.pending.fresh...)
					t.mu.Unlock()
					timer.Stop()
					p.superseded.Add(1)
					return true, nil
				}
				t.mu.Unlock() // Close: finish the retries
			case <-p.ctx.Done():
				timer.Stop()
				return false, fmt.Errorf("%w (closed before attempt %d)", err, attempt+1)
			}
		}
	}
}
