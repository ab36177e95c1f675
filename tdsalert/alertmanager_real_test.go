package tdsalert

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/alert"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
)

// alertmanagerBinaries are the names Alertmanager's binary goes by: Debian's
// package, and upstream's release.
var alertmanagerBinaries = []string{"prometheus-alertmanager", "alertmanager"}

// amDeadline bounds every wait for Alertmanager: a hang guard.
const amDeadline = 30 * time.Second

// realAlertmanager is an Alertmanager process routing every alert, in one
// group, to a webhook receiver of the test.
type realAlertmanager struct {
	url  string                    // its API
	msgs chan alert.WebhookMessage // what it notified
}

// startAlertmanager starts Alertmanager on a free port with a temporary
// configuration and storage, waits until it is ready and kills it when the
// test ends. Without the binary it skips, but fails when CI is set, so a
// green CI run has tested tds against a real Alertmanager (.ci/run installs
// Debian's prometheus-alertmanager).
func startAlertmanager(t *testing.T) *realAlertmanager {
	t.Helper()
	var bin string
	for _, name := range alertmanagerBinaries {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("prometheus-alertmanager is not on PATH and CI is set: install Debian's prometheus-alertmanager package")
		}
		t.Skip("prometheus-alertmanager is not on PATH")
	}

	am := &realAlertmanager{msgs: make(chan alert.WebhookMessage, 100)}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m alert.WebhookMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("Alertmanager sent a bad payload: %v\n%s", err, body)
		}
		t.Logf("Alertmanager notified %s", body)
		am.msgs <- m
	}))
	t.Cleanup(rcv.Close)

	dir := t.TempDir()
	// No group_by: every alert in one group, so that one notification
	// lists every alert not silenced. Short waits keep the test fast.
	cfg := fmt.Sprintf(`route:
  receiver: test
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: %s/notify
        send_resolved: true
`, rcv.URL)
	cfgFile := filepath.Join(dir, "alertmanager.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfg), 0o600))
	addr := freeAddr(t)
	var out testkit.LogBuffer
	cmd := exec.Command(bin, "--config.file="+cfgFile, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=info")
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("Alertmanager's log:\n%s", out.String())
		}
	})
	am.url = "http://" + addr
	require.Eventually(t, func() bool {
		select {
		case <-exited:
			t.Fatalf("Alertmanager exited:\n%s", out.String())
		default:
		}
		resp, err := http.Get(am.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, amDeadline, 20*time.Millisecond, "Alertmanager never became ready")
	return am
}

// freeAddr returns a local address no one listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// until returns the first notification for which ok holds, skipping
// others.
func (am *realAlertmanager) until(t *testing.T, what string, ok func(alert.WebhookMessage) bool) alert.WebhookMessage {
	t.Helper()
	deadline := time.After(amDeadline)
	for {
		select {
		case m := <-am.msgs:
			if ok(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("Alertmanager never notified %s", what)
		}
	}
}

// api calls Alertmanager's API v2 and decodes its answer into out.
func (am *realAlertmanager) api(t *testing.T, method, path string, in, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		require.NoError(t, err)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, am.url+"/api/v2"+path, body)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s %s: %s", method, path, b)
	if out != nil {
		require.NoError(t, json.Unmarshal(b, out), "%s", b)
	}
}

// entityTypes returns the entity_type labels of m's alerts in state
// status.
func entityTypes(m alert.WebhookMessage, status string) []string {
	var out []string
	for _, a := range m.Alerts {
		if a.Status == status && a.Labels["alertname"] == alert.RuleDeadLetters {
			out = append(out, a.Labels["entity_type"])
		}
	}
	slices.Sort(out)
	return out
}

// A tds alert reaches a webhook receiver through a real Alertmanager, an
// Alertmanager silence holds it back while another alert of the same rule
// still arrives, and its resolution arrives too.
func TestAlertmanagerRealRoutesSilencesResolves(t *testing.T) {
	am := startAlertmanager(t)
	tdb := testdb.Open(t, "postgres")
	e := newAlertEnv(t, tdb, WithRules(testdb.OnlyRule(alert.RuleDeadLetters, "threshold: 0, for: 0s")),
		WithAlertmanager(am.url), WithExternalURL("https://tds.example"),
		// Alertmanager keeps real time: its timestamps must be now.
		WithClock(time.Now))

	// A dead letter of a product fires dead_letters{entity_type="product"}.
	product := e.ingest(t, "1", "a")
	e.runJobs(t, failing, tds.StatusDeadLetter, product)
	require.NoError(t, e.a.Evaluate(t.Context()))
	m := am.until(t, "the firing alert", func(m alert.WebhookMessage) bool {
		return slices.Equal(entityTypes(m, StateFiring), []string{"product"})
	})
	require.Equal(t, "firing", m.Status)
	open, err := e.a.Alerts(t.Context(), StateFiring)
	require.NoError(t, err)
	require.Len(t, open, 1)
	require.Equal(t, fmt.Sprintf("https://tds.example/ui/alerts#alert-%d", open[0].ID), m.Alerts[0].GeneratorURL)
	require.Equal(t, "critical", m.Alerts[0].Labels["severity"])
	require.NotEmpty(t, m.Alerts[0].Annotations["summary"])

	// An Alertmanager silence of that alert.
	var silence struct {
		SilenceID string `json:"silenceID"`
	}
	now := time.Now().UTC()
	am.api(t, http.MethodPost, "/silences", map[string]any{
		"matchers": []map[string]any{
			{"name": "alertname", "value": alert.RuleDeadLetters, "isRegex": false, "isEqual": true},
			{"name": "entity_type", "value": "product", "isRegex": false, "isEqual": true},
		},
		"startsAt": now, "endsAt": now.Add(time.Hour), "createdBy": "tds test", "comment": "silenced by the test",
	}, &silence)
	require.NotEmpty(t, silence.SilenceID)
	type amAlert struct {
		Labels map[string]string `json:"labels"`
		Status struct {
			State      string   `json:"state"`
			SilencedBy []string `json:"silencedBy"`
		} `json:"status"`
	}
	require.Eventually(t, func() bool {
		var alerts []amAlert
		am.api(t, http.MethodGet, "/alerts?filter=alertname%3D%22dead_letters%22", nil, &alerts)
		return len(alerts) == 1 && alerts[0].Status.State == "suppressed" &&
			slices.Equal(alerts[0].Status.SilencedBy, []string{silence.SilenceID})
	}, amDeadline, 20*time.Millisecond, "the alert is not silenced")

	// A dead letter of a customer: the group's next notification lists
	// the customer's alert, not the silenced product's.
	res, err := e.p.Process(t.Context(), &tds.Event{EventType: tds.EventUpdate, EntityType: "customer", EntityID: "c1",
		Data: json.RawMessage(`{"contact_id":"c1","contact_name":"c"}`)})
	require.NoError(t, err)
	require.True(t, res.Queued, "%+v", res)
	e.runJobs(t, failing, tds.StatusDeadLetter, res.JobID)
	require.NoError(t, e.a.Evaluate(t.Context()))
	m = am.until(t, "the second alert", func(m alert.WebhookMessage) bool {
		return slices.Contains(entityTypes(m, StateFiring), "customer")
	})
	require.Equal(t, []string{"customer"}, entityTypes(m, StateFiring), "the silenced alert was notified")

	// The silence expires and both resolve in tds: Alertmanager notifies
	// their resolution.
	am.api(t, http.MethodDelete, "/silence/"+silence.SilenceID, nil, nil)
	for _, id := range e.deadLetters(t) {
		require.NoError(t, e.q.DiscardDeadLetter(t.Context(), id, "test"))
	}
	require.NoError(t, e.a.Evaluate(t.Context()))
	open, err = e.a.Alerts(t.Context(), StateFiring)
	require.NoError(t, err)
	require.Empty(t, open, "resolved in tds")
	m = am.until(t, "the resolution", func(m alert.WebhookMessage) bool {
		return m.Status == "resolved" && slices.Equal(entityTypes(m, StateResolved), []string{"customer", "product"})
	})
	for _, a := range m.Alerts {
		require.False(t, a.EndsAt.IsZero())
		require.WithinDuration(t, time.Now(), a.EndsAt, amDeadline, "endsAt is the resolution")
	}
	require.True(t, strings.HasPrefix(m.Receiver, "test"))
}
