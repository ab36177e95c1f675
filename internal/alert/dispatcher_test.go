package alert

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// quiet is a logger for tests that expect failures.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type result struct {
	notifier string
	alerts   []Alert
	err      error
}

func newDispatcher(t *testing.T, cfg DispatcherConfig, notifiers map[string]Notifier) (*Dispatcher, <-chan result) {
	t.Helper()
	results := make(chan result, 64)
	cfg.Logger = quiet
	cfg.OnResult = func(n string, a []Alert, err error) { results <- result{n, a, err} }
	d, err := NewDispatcher(cfg, notifiers)
	require.NoError(t, err)
	return d, results
}

// within fails the test unless a value arrives on ch within a generous
// deadline (a hang guard, not a timing assumption).
func within[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting")
		var zero T
		return zero
	}
}

func TestDispatcherRetriesThenSucceeds(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	d, results := newDispatcher(t, DispatcherConfig{BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond},
		map[string]Notifier{"webhook": NewWebhook(srv.URL, testSecret, srv.Client())})
	d.Enqueue(testAlerts())
	r := within(t, results)
	require.NoError(t, r.err)
	require.Equal(t, "webhook", r.notifier)
	require.Equal(t, testAlerts(), r.alerts)
	require.Equal(t, int32(3), hits.Load())
	require.NoError(t, d.Close(context.Background()))
	require.Equal(t, DispatcherStats{Sent: 1}, d.Stats())
}

func TestDispatcherGivesUp(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	fail := NotifierFunc(func(context.Context, []Alert) error { calls.Add(1); return errors.New("boom") })
	d, results := newDispatcher(t, DispatcherConfig{MaxAttempts: 3, BackoffBase: time.Millisecond}, map[string]Notifier{"x": fail})
	d.Enqueue(testAlerts())
	require.ErrorContains(t, within(t, results).err, "boom")
	require.NoError(t, d.Close(context.Background()))
	require.Equal(t, int32(3), calls.Load())
	require.Equal(t, DispatcherStats{Failed: 1}, d.Stats())
}

func TestDispatcherAttemptTimeout(t *testing.T) {
	t.Parallel()
	hang := NotifierFunc(func(ctx context.Context, _ []Alert) error { <-ctx.Done(); return ctx.Err() })
	d, results := newDispatcher(t, DispatcherConfig{MaxAttempts: 1, Timeout: 20 * time.Millisecond}, map[string]Notifier{"hang": hang})
	d.Enqueue(testAlerts())
	require.ErrorIs(t, within(t, results).err, context.DeadlineExceeded)
	require.NoError(t, d.Close(context.Background()))
	require.Equal(t, DispatcherStats{Failed: 1}, d.Stats())
}

// A receiver that hangs delays nothing else: the other notifier delivers
// while the first is still stuck in its attempt.
func TestDispatcherSlowReceiverDelaysNothingElse(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	stuck := make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stuck <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	fast, got := receiver(t, http.StatusOK)

	d, results := newDispatcher(t, DispatcherConfig{Timeout: time.Hour, MaxAttempts: 1}, map[string]Notifier{
		"slow": NewWebhook(slow.URL, "", slow.Client()),
		"fast": NewSlack(fast.URL, fast.Client()),
	})
	enqueued := make(chan struct{})
	go func() { d.Enqueue(testAlerts()); d.Enqueue(testAlerts()); close(enqueued) }()
	within(t, enqueued) // Enqueue never blocks, even behind a stuck receiver
	within(t, stuck)
	within(t, got)
	within(t, got) // both messages reached the fast receiver
	r := within(t, results)
	require.Equal(t, "fast", r.notifier)
	require.NoError(t, r.err)
	select {
	case r := <-results:
		require.Equal(t, "fast", r.notifier, "the slow notifier cannot have finished")
	case <-time.After(10 * time.Second):
		t.Fatal("second fast result missing")
	}
	close(release)
	require.NoError(t, d.Close(context.Background()))
	require.Equal(t, DispatcherStats{Sent: 4}, d.Stats())
}

func TestDispatcherDropsWhenFull(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	block := NotifierFunc(func(ctx context.Context, _ []Alert) error {
		started <- struct{}{}
		<-release
		return nil
	})
	d, _ := newDispatcher(t, DispatcherConfig{QueueSize: 1}, map[string]Notifier{"block": block})
	d.Enqueue(testAlerts())
	within(t, started)      // the first message is in flight
	d.Enqueue(testAlerts()) // fills the queue
	d.Enqueue(testAlerts()) // dropped
	d.Enqueue(nil)          // ignored
	require.Equal(t, uint64(1), d.Stats().Dropped)
	close(release)
	go func() {
		for range started {
		}
	}()
	require.NoError(t, d.Close(context.Background()))
	close(started)
	require.Equal(t, DispatcherStats{Sent: 2, Dropped: 1}, d.Stats())
	d.Enqueue(testAlerts()) // after Close: dropped, no panic
	require.Equal(t, uint64(2), d.Stats().Dropped)
}

func TestDispatcherCloseDrains(t *testing.T) {
	t.Parallel()
	var delivered atomic.Int32
	count := NotifierFunc(func(context.Context, []Alert) error { delivered.Add(1); return nil })
	d, _ := newDispatcher(t, DispatcherConfig{QueueSize: 10}, map[string]Notifier{"a": count, "b": count})
	for range 10 {
		d.Enqueue(testAlerts())
	}
	require.NoError(t, d.Close(context.Background()))
	require.Equal(t, int32(20), delivered.Load())
	require.Equal(t, DispatcherStats{Sent: 20}, d.Stats())
	require.NoError(t, d.Close(context.Background()), "a second Close returns at once")
}

func TestDispatcherCloseGivesUpWithContext(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	hang := NotifierFunc(func(ctx context.Context, _ []Alert) error { close(started); <-ctx.Done(); return ctx.Err() })
	d, results := newDispatcher(t, DispatcherConfig{Timeout: time.Hour, MaxAttempts: 1}, map[string]Notifier{"hang": hang})
	d.Enqueue(testAlerts())
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, d.Close(ctx), context.Canceled)
	require.ErrorIs(t, within(t, results).err, context.Canceled)
	require.Equal(t, DispatcherStats{Failed: 1}, d.Stats())
}

func TestNewDispatcherErrors(t *testing.T) {
	t.Parallel()
	_, err := NewDispatcher(DispatcherConfig{QueueSize: -1, Timeout: -1}, map[string]Notifier{"nil": nil})
	require.ErrorContains(t, err, "QueueSize")
	require.ErrorContains(t, err, "Timeout")
	require.ErrorContains(t, err, `notifier "nil" is nil`)
}

// TestWebhookIDKeptAcrossRetries: the retries of one notification carry
// the same webhook-id (with a fresh timestamp and signature), so that a
// receiver can de-duplicate them; the next notification has another.
func TestWebhookIDKeptAcrossRetries(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	ids := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids <- r.Header.Get("webhook-id")
		if hits.Add(1)%3 != 0 { // two failures, then a success, per message
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	d, results := newDispatcher(t, DispatcherConfig{BackoffBase: time.Millisecond, BackoffMax: time.Millisecond},
		map[string]Notifier{"webhook": NewWebhook(srv.URL, testSecret, srv.Client())})
	var first []string
	d.Enqueue(testAlerts())
	require.NoError(t, within(t, results).err)
	for range 3 {
		first = append(first, within(t, ids))
	}
	d.Enqueue(testAlerts())
	require.NoError(t, within(t, results).err)
	second := within(t, ids)
	require.NoError(t, d.Close(context.Background()))

	require.Regexp(t, `^msg_\w+$`, first[0])
	require.Equal(t, []string{first[0], first[0], first[0]}, first, "one id across the retries")
	require.NotEqual(t, first[0], second, "a new id per notification")
}
