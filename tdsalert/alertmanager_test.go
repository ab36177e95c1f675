package tdsalert

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds/internal/alert"
	"github.com/tdscore/tds/internal/testdb"
)

// amReceiver stands for an Alertmanager's POST /api/v2/alerts: it hands
// each accepted body to the test, after refusing the first fail requests
// with a 503.
type amReceiver struct {
	*httptest.Server
	posts chan []alert.PostableAlert
}

func newAMReceiver(t *testing.T, fail int32) *amReceiver {
	t.Helper()
	r := &amReceiver{posts: make(chan []alert.PostableAlert, 100)}
	var n atomic.Int32
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/api/v2/alerts" {
			t.Errorf("unexpected %s %s", req.Method, req.URL.Path)
		}
		if n.Add(1) <= fail {
			http.Error(w, "not now", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(req.Body)
		var alerts []alert.PostableAlert
		if err := json.Unmarshal(body, &alerts); err != nil {
			t.Errorf("bad body: %v", err)
		}
		r.posts <- alerts
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *amReceiver) next(t *testing.T) []alert.PostableAlert {
	t.Helper()
	select {
	case a := <-r.posts:
		return a
	case <-time.After(20 * time.Second):
		t.Fatal("no alerts arrived")
		return nil
	}
}

// The leader sends a firing alert to every Alertmanager with an endsAt
// ahead, sends it again every resend interval, before that endsAt lapses
// (and not between), and sends the resolution with endsAt its time. A
// failed request is retried.
func TestAlertmanagerFiringResentResolved(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		am1, am2, wh := newAMReceiver(t, 0), newAMReceiver(t, 1), newReceiver(t)
		e := newAlertEnv(t, tdb, WithRules(testdb.OnlyRule(alert.RuleZohoDailyWebhooks, "threshold: 0")),
			WithAlertmanager(am1.URL), WithAlertmanager(am2.URL+"/"), WithExternalURL("https://tds.example/"),
			WithWebhook(wh.URL, testAlertSecret),
			WithAlertmanagerResend(time.Minute), WithEvalInterval(15*time.Second))
		e.ingest(t, "1", "a")
		validity := 4 * time.Minute

		fired := e.clock.Now()
		require.NoError(t, e.a.Evaluate(t.Context()))
		alerts, err := e.a.Alerts(t.Context(), StateFiring)
		require.NoError(t, err)
		require.Len(t, alerts, 1)
		id := alerts[0].ID
		var endsAt time.Time
		for _, am := range []*amReceiver{am1, am2} { // am2 after a retry
			got := am.next(t)
			require.Len(t, got, 1)
			require.Equal(t, alert.RuleZohoDailyWebhooks, got[0].Labels["alertname"])
			require.Equal(t, fired, got[0].StartsAt)
			require.Equal(t, fired.Add(validity), got[0].EndsAt)
			require.Equal(t, fmt.Sprintf("https://tds.example/ui/alerts#alert-%d", id), got[0].GeneratorURL)
			endsAt = got[0].EndsAt
		}
		// The webhook beside it links to the console too.
		require.Equal(t, "https://tds.example", wh.next(t).ExternalURL)
		require.Eventually(t, func() bool {
			a, err := e.a.Alerts(t.Context(), StateFiring)
			require.NoError(t, err)
			return a[0].LastNotifiedAt != nil
		}, 20*time.Second, 5*time.Millisecond, "the delivery is recorded")

		// Evaluations within the resend interval send nothing; the one
		// after it sends the alert again, before its endsAt lapses.
		for range 4 {
			e.clock.Advance(15 * time.Second)
			require.NoError(t, e.a.Evaluate(t.Context()))
		}
		resent := e.clock.Now()
		require.True(t, resent.Before(endsAt))
		for _, am := range []*amReceiver{am1, am2} {
			got := am.next(t)
			require.Len(t, got, 1)
			require.Equal(t, fired, got[0].StartsAt)
			require.Equal(t, resent.Add(validity), got[0].EndsAt, "the first message after the first is the resend")
		}

		e.clock.Advance(24 * time.Hour)
		resolved := e.clock.Now()
		require.NoError(t, e.a.Evaluate(t.Context()))
		for _, am := range []*amReceiver{am1, am2} {
			got := am.next(t)
			require.Len(t, got, 1)
			require.Equal(t, fired, got[0].StartsAt)
			require.Equal(t, resolved, got[0].EndsAt, "a resolved alert ends at its resolution")
		}
	})
}

// amPushes returns an amState whose pushes arrive on the channel, as
// their alerts' state and labels.
func amPushes(t *testing.T) (*amState, <-chan []alert.Alert) {
	t.Helper()
	got := make(chan []alert.Alert, 16)
	p, err := alert.NewPusher(alert.PusherConfig{Logger: testdb.QuietLogger}, map[string]alert.Notifier{
		"am": alert.NotifierFunc(func(_ context.Context, a []alert.Alert) error {
			got <- a
			return nil
		}),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	return &amState{pusher: p, resend: time.Minute, validity: 4 * time.Minute, pushed: map[string]bool{}}, got
}

// A resolution is sent again with the following pushes, until its rule and
// labels fire again: Alertmanager keys alerts by labels, and would end the
// new firing.
func TestAlertmanagerResolutionDroppedWhenRefiring(t *testing.T) {
	am, got := amPushes(t)
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	labels := map[string]string{"entity_type": "invoice"}
	fp := alert.Fingerprint(alert.RuleDeadLetters, labels)
	firing := func(start time.Time) alert.Alert {
		return alert.Alert{ID: 1, Rule: alert.RuleDeadLetters, Fingerprint: fp, Labels: labels, State: alert.StateFiring,
			StartedAt: start, FiringAt: start}
	}
	states := func(alerts []alert.Alert) []string {
		var out []string
		for _, a := range alerts {
			out = append(out, a.State)
		}
		return out
	}
	recv := func() []alert.Alert {
		select {
		case a := <-got:
			return a
		case <-time.After(10 * time.Second):
			t.Fatal("nothing pushed")
			return nil
		}
	}

	am.push([]alert.Alert{firing(t0)}, t0)
	require.Equal(t, []string{"firing"}, states(recv()))

	at := t0.Add(time.Minute)
	resolved := firing(t0)
	resolved.State, resolved.ResolvedAt = alert.StateResolved, &at
	am.push([]alert.Alert{resolved}, at)
	require.Equal(t, []string{"resolved"}, states(recv()))

	// Another rule fires: the resolution is sent again with it.
	other := alert.Alert{ID: 2, Rule: alert.RuleZohoAuth, Fingerprint: alert.Fingerprint(alert.RuleZohoAuth, nil),
		State: alert.StateFiring, StartedAt: at, FiringAt: at}
	am.push([]alert.Alert{other}, at.Add(15*time.Second))
	require.Equal(t, []string{"resolved", "firing"}, states(recv()))

	// The first fires again: its old resolution is no longer sent.
	again := at.Add(30 * time.Second)
	am.push([]alert.Alert{other, firing(again)}, again)
	sent := recv()
	require.Equal(t, []string{"firing", "firing"}, states(sent))
	require.Equal(t, again, sent[1].StartedAt)
}
