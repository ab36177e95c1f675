package alert

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAlertmanagerPayload(t *testing.T) {
	t.Parallel()
	type request struct {
		method, path, user, pass, contentType string
		body                                  []byte
	}
	got := make(chan request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		user, pass, _ := r.BasicAuth()
		got <- request{r.Method, r.URL.Path, user, pass, r.Header.Get("Content-Type"), body}
	}))
	defer srv.Close()
	now := t0.Add(time.Hour)
	base := strings.Replace(srv.URL, "http://", "http://tds:pw@", 1) + "/am/"
	n := NewAlertmanager(AlertmanagerConfig{URL: base, ExternalURL: "https://tds.example/", Validity: 4 * time.Minute,
		Client: srv.Client(), Now: func() time.Time { return now }})
	pending := Alert{ID: 3, Rule: RuleQueueOldestPending, State: StatePending, StartedAt: t0}
	require.NoError(t, n.Notify(context.Background(), append(testAlerts(), pending)))
	r := within(t, got)

	require.Equal(t, http.MethodPost, r.method)
	require.Equal(t, "/am/api/v2/alerts", r.path)
	require.Equal(t, "application/json", r.contentType)
	require.Equal(t, []string{"tds", "pw"}, []string{r.user, r.pass})

	// The exact keys of Alertmanager's PostableAlert, as Prometheus sends it.
	var raw []map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(r.body, &raw))
	require.Len(t, raw, 2, "the pending alert is not sent")
	for _, a := range raw {
		require.ElementsMatch(t, []string{"labels", "annotations", "startsAt", "endsAt", "generatorURL"}, keys(a))
	}
	var alerts []PostableAlert
	require.NoError(t, json.Unmarshal(r.body, &alerts))

	firing := alerts[0]
	require.Equal(t, map[string]string{"alertname": RuleDeadLetters, "severity": SeverityCritical, "entity_type": "invoice"}, firing.Labels)
	require.Contains(t, firing.Annotations["summary"], "dead_letters")
	require.Contains(t, firing.Annotations["description"], "Value: 3.")
	require.Equal(t, t0.Add(time.Minute), firing.StartsAt, "startsAt is when it fired")
	require.Equal(t, now.Add(4*time.Minute), firing.EndsAt, "a firing alert ends a validity ahead")
	require.Equal(t, "https://tds.example/ui/alerts#alert-1", firing.GeneratorURL)

	resolved := alerts[1]
	require.Equal(t, map[string]string{"alertname": RuleDeadLetters, "severity": SeverityCritical}, resolved.Labels)
	require.Equal(t, t0, resolved.EndsAt, "a resolved alert ends at its resolution")
	require.Equal(t, "https://tds.example/ui/alerts#alert-2", resolved.GeneratorURL)
}

func TestAlertmanagerErrors(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad alerts", http.StatusBadRequest)
	}))
	defer srv.Close()
	err := NewAlertmanager(AlertmanagerConfig{URL: srv.URL + "/secret-prefix"}).Notify(context.Background(), testAlerts())
	require.ErrorContains(t, err, "receiver answered 400")
	require.NotContains(t, err.Error(), "secret-prefix")

	err = NewAlertmanager(AlertmanagerConfig{URL: "http://[::1"}).Notify(context.Background(), testAlerts())
	require.ErrorContains(t, err, "does not parse")
}

type pushResult struct {
	notifier string
	fresh    []Alert
	err      error
}

func newPusher(t *testing.T, cfg PusherConfig, notifiers map[string]Notifier) (*Pusher, <-chan pushResult) {
	t.Helper()
	results := make(chan pushResult, 64)
	cfg.Logger = quiet
	cfg.OnResult = func(n string, fresh []Alert, err error) { results <- pushResult{n, fresh, err} }
	p, err := NewPusher(cfg, notifiers)
	require.NoError(t, err)
	t.Cleanup(func() {
		// Bounded, so that a failing test does not hang on the retries.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p, results
}

func TestPusherRetriesThenSucceeds(t *testing.T) {
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
	p, results := newPusher(t, PusherConfig{BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond},
		map[string]Notifier{"am": NewAlertmanager(AlertmanagerConfig{URL: srv.URL, Client: srv.Client()})})
	p.Push(testAlerts(), testAlerts()[:1])
	r := within(t, results)
	require.NoError(t, r.err)
	require.Equal(t, "am", r.notifier)
	require.Equal(t, testAlerts()[:1], r.fresh)
	require.Equal(t, int32(3), hits.Load())
	require.NoError(t, p.Close(context.Background()))
	require.Equal(t, PusherStats{Sent: 1}, p.Stats())
}

func TestPusherGivesUp(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	p, results := newPusher(t, PusherConfig{MaxAttempts: 3, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond},
		map[string]Notifier{"am": NotifierFunc(func(context.Context, []Alert) error {
			calls.Add(1)
			return errors.New("down")
		})})
	p.Push(testAlerts(), nil)
	require.ErrorContains(t, within(t, results).err, "down")
	require.Equal(t, int32(3), calls.Load())
	require.Equal(t, PusherStats{Failed: 1}, p.Stats())
}

// A newer state replaces one whose retries wait: the old one is not tried
// again, and its fresh alerts are reported with the newer one's.
func TestPusherNewerStateReplacesRetries(t *testing.T) {
	t.Parallel()
	old, newer := testAlerts()[:1], testAlerts()
	attempts := make(chan []Alert, 8)
	p, results := newPusher(t, PusherConfig{BackoffBase: time.Hour, BackoffMax: time.Hour},
		map[string]Notifier{"am": NotifierFunc(func(_ context.Context, alerts []Alert) error {
			attempts <- alerts
			if len(alerts) == len(old) {
				return errors.New("down")
			}
			return nil
		})})
	p.Push(old, old)
	require.Equal(t, old, within(t, attempts))
	p.Push(newer, newer[1:])
	require.Equal(t, newer, within(t, attempts), "the newer state is sent without waiting out the backoff")
	r := within(t, results)
	require.NoError(t, r.err)
	require.Equal(t, append(append([]Alert{}, old...), newer[1:]...), r.fresh)
	require.NoError(t, p.Close(context.Background()))
	require.Empty(t, attempts, "the old state was not tried again")
	require.Equal(t, PusherStats{Sent: 1, Superseded: 1}, p.Stats())
}

// Every Alertmanager of an HA pair receives every state, and one that is
// down delays no other.
func TestPusherSeveralAlertmanagers(t *testing.T) {
	t.Parallel()
	var hits [2]atomic.Int32
	servers := make([]*httptest.Server, 2)
	for i := range servers {
		servers[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
		}))
		defer servers[i].Close()
	}
	stuck := make(chan struct{})
	defer close(stuck)
	p, results := newPusher(t, PusherConfig{}, map[string]Notifier{
		"am1": NewAlertmanager(AlertmanagerConfig{URL: servers[0].URL}),
		"am2": NewAlertmanager(AlertmanagerConfig{URL: servers[1].URL}),
		"am3": NotifierFunc(func(ctx context.Context, _ []Alert) error {
			select {
			case <-stuck:
			case <-ctx.Done():
			}
			return ctx.Err()
		}),
	})
	p.Push(testAlerts(), nil)
	got := map[string]error{}
	for range 2 {
		r := within(t, results)
		got[r.notifier] = r.err
	}
	require.Equal(t, map[string]error{"am1": nil, "am2": nil}, got)
	require.Equal(t, int32(1), hits[0].Load())
	require.Equal(t, int32(1), hits[1].Load())
}

func TestPusherCloseDelivers(t *testing.T) {
	t.Parallel()
	sent := make(chan []Alert, 2)
	p, _ := newPusher(t, PusherConfig{}, map[string]Notifier{"am": NotifierFunc(func(_ context.Context, a []Alert) error {
		sent <- a
		return nil
	})})
	p.Push(testAlerts(), nil)
	require.NoError(t, p.Close(context.Background()))
	require.Equal(t, testAlerts(), within(t, sent))
	p.Push(testAlerts(), nil)
	require.Equal(t, uint64(1), p.Stats().Dropped)
}

func TestNewPusherErrors(t *testing.T) {
	t.Parallel()
	_, err := NewPusher(PusherConfig{Timeout: -1, MaxAttempts: -1}, map[string]Notifier{"x": nil})
	require.ErrorContains(t, err, "PusherConfig.Timeout")
	require.ErrorContains(t, err, "PusherConfig.MaxAttempts")
	require.ErrorContains(t, err, `notifier "x" is nil`)
}
