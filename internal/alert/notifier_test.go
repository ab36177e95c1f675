package alert

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/internal/verify"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

type received struct {
	header http.Header
	body   []byte
}

// receiver is an httptest server that hands each request to the test.
func receiver(t *testing.T, status int) (*httptest.Server, <-chan received) {
	t.Helper()
	ch := make(chan received, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ch <- received{r.Header.Clone(), body}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func testAlerts() []Alert {
	labels := map[string]string{"entity_type": "invoice"}
	return []Alert{
		{ID: 1, Rule: RuleDeadLetters, Fingerprint: Fingerprint(RuleDeadLetters, labels), Labels: labels, State: StateFiring,
			Severity: SeverityCritical, Value: 3, StartedAt: t0, FiringAt: t0.Add(time.Minute)},
		{ID: 2, Rule: RuleDeadLetters, Fingerprint: Fingerprint(RuleDeadLetters, nil), State: StateResolved,
			Severity: SeverityCritical, Value: 0, FiredValue: 2, PeakValue: 5, StartedAt: t0.Add(-time.Hour), FiringAt: t0.Add(-time.Hour),
			ResolvedAt: ptr(t0)},
	}
}

func TestWebhookPayload(t *testing.T) {
	t.Parallel()
	srv, got := receiver(t, http.StatusOK)
	n := NewWebhook(srv.URL, testSecret, srv.Client(), WithExternalURL("https://tds.example/"))
	require.NoError(t, n.Notify(context.Background(), testAlerts()))
	r := <-got

	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	key, err := verify.DecodeStandardSecret(testSecret)
	require.NoError(t, err)
	// tds's own verifier accepts the signature.
	require.NoError(t, verify.NewStandard([][]byte{key}, 5*time.Minute).Verify(r.header, url.Values{}, r.body, time.Now()))
	require.Regexp(t, `^msg_\w+$`, r.header.Get("webhook-id"))

	// The exact key sets of Alertmanager's version-4 message.
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(r.body, &raw))
	require.ElementsMatch(t, []string{"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
		"commonLabels", "commonAnnotations", "externalURL", "alerts"}, keys(raw))
	var alerts []map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw["alerts"], &alerts))
	require.Len(t, alerts, 2)
	for _, a := range alerts {
		require.ElementsMatch(t, []string{"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}, keys(a))
	}

	var m WebhookMessage
	require.NoError(t, json.Unmarshal(r.body, &m))
	require.Equal(t, "4", m.Version)
	require.Equal(t, uint64(0), m.TruncatedAlerts)
	require.Equal(t, "firing", m.Status, "firing when any alert fires")
	require.Equal(t, "tds", m.Receiver)
	require.Equal(t, "https://tds.example", m.ExternalURL)
	require.Equal(t, map[string]string{"alertname": "dead_letters"}, m.GroupLabels)
	require.Equal(t, `{}:{alertname="dead_letters"}`, m.GroupKey)
	require.Equal(t, map[string]string{"alertname": "dead_letters", "severity": "critical"}, m.CommonLabels)
	require.Equal(t, map[string]string{"description": "Dead letters wait for an operator: jobs exhausted their retries; retry or discard them. Value: 3."}, map[string]string{"description": m.Alerts[0].Annotations["description"]})

	f := m.Alerts[0]
	require.Equal(t, "firing", f.Status)
	require.Equal(t, map[string]string{"alertname": "dead_letters", "severity": "critical", "entity_type": "invoice"}, f.Labels)
	require.Equal(t, `dead_letters {entity_type="invoice"} firing: value 3`, f.Annotations["summary"])
	require.Equal(t, t0.Add(time.Minute), f.StartsAt)
	require.Equal(t, Fingerprint(RuleDeadLetters, map[string]string{"entity_type": "invoice"}), f.Fingerprint)
	require.Equal(t, "https://tds.example/admin/alerts?state=firing", f.GeneratorURL)
	require.JSONEq(t, `"0001-01-01T00:00:00Z"`, string(alerts[0]["endsAt"]), "endsAt is the zero time while firing")

	res := m.Alerts[1]
	require.Equal(t, "resolved", res.Status)
	require.Equal(t, t0, res.EndsAt)
	require.Equal(t, "dead_letters resolved: value 0", res.Annotations["summary"])
	require.Equal(t, descriptions[RuleDeadLetters]+" Value: 0. Fired at 2, peak 5.", res.Annotations["description"],
		"a resolution tells what fired, not only the value that resolved it")
}

// TestNeedsConfirmationAnnotation: the alert names the run and where to
// confirm it.
func TestNeedsConfirmationAnnotation(t *testing.T) {
	t.Parallel()
	a := Alert{Rule: RuleReconcileNeedsConfirmation, Labels: map[string]string{"run_id": "42"}, State: StateFiring, Value: 1}
	require.Equal(t, "A reconciliation run waits for an operator to confirm its deletes: it would delete more than its threshold."+
		" Value: 1. Review and confirm it on the dashboard's run page, /ui/reconcile/42, or with POST /admin/sync-runs/42/confirm.",
		annotations(a)["description"])
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestWebhookResolvedGroupAndNoSecret(t *testing.T) {
	t.Parallel()
	srv, got := receiver(t, http.StatusNoContent)
	n := NewWebhook(srv.URL, "", nil, WithReceiver("ops"))
	require.NoError(t, n.Notify(context.Background(), testAlerts()[1:]))
	r := <-got
	require.Empty(t, r.header.Get("webhook-signature"))
	require.Empty(t, r.header.Get("webhook-id"))
	var m WebhookMessage
	require.NoError(t, json.Unmarshal(r.body, &m))
	require.Equal(t, "resolved", m.Status)
	require.Equal(t, "ops", m.Receiver)
	require.Equal(t, "", m.ExternalURL)
	require.Equal(t, "", m.Alerts[0].GeneratorURL)
	require.Equal(t, m.Alerts[0].Annotations, m.CommonAnnotations)
}

func TestWebhookMixedRulesGroup(t *testing.T) {
	t.Parallel()
	a := testAlerts()
	a[1].Rule = RuleDrift
	m := (&webhook{receiver: DefaultReceiver}).message(a)
	require.Equal(t, map[string]string{}, m.GroupLabels)
	require.Equal(t, "{}:{}", m.GroupKey)
	require.Equal(t, map[string]string{"severity": "critical"}, m.CommonLabels)
}

func TestWebhookErrors(t *testing.T) {
	t.Parallel()
	srv, _ := receiver(t, http.StatusInternalServerError)
	err := NewWebhook(srv.URL, "", srv.Client()).Notify(context.Background(), testAlerts())
	require.ErrorContains(t, err, "webhook: receiver answered 500")

	err = NewWebhook(srv.URL, "whsec_!!!", srv.Client()).Notify(context.Background(), testAlerts())
	require.ErrorContains(t, err, "webhook: secret")
	require.NotContains(t, err.Error(), "!!!")

	err = NewWebhook("://bad", "", nil).Notify(context.Background(), testAlerts())
	require.ErrorContains(t, err, "alert: webhook")
}

func TestSlackMessage(t *testing.T) {
	t.Parallel()
	srv, got := receiver(t, http.StatusOK)
	require.NoError(t, NewSlack(srv.URL, srv.Client()).Notify(context.Background(), testAlerts()))
	r := <-got
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(r.body, &raw))
	require.ElementsMatch(t, []string{"text", "attachments"}, keys(raw))
	var m SlackMessage
	require.NoError(t, json.Unmarshal(r.body, &m))
	require.Equal(t, "tds alerts: 1 firing, 1 resolved", m.Text)
	require.Len(t, m.Attachments, 2)
	require.Equal(t, colorCritical, m.Attachments[0].Color)
	require.Equal(t, `[FIRING] dead_letters {entity_type="invoice"}`, m.Attachments[0].Title)
	require.Contains(t, m.Attachments[0].Text, "*Value:* 3")
	require.Equal(t, colorResolved, m.Attachments[1].Color)
	require.Equal(t, "[RESOLVED] dead_letters", m.Attachments[1].Title)

	one := slackMessage([]Alert{{Rule: RuleDrift, State: StateFiring, Severity: SeverityWarning, Value: 12}})
	require.Equal(t, "tds: drift firing: value 12", one.Text)
	require.Equal(t, colorWarning, one.Attachments[0].Color)
	require.Equal(t, colorInfo, slackColor(Alert{State: StateFiring, Severity: SeverityInfo}))

	srv500, _ := receiver(t, http.StatusBadRequest)
	require.ErrorContains(t, NewSlack(srv500.URL, nil).Notify(context.Background(), testAlerts()), "slack: receiver answered 400")
}

// Parts of the notifier URLs in TestNotifierSecretsNotLogged that must never
// reach a log line or an error.
var urlSecrets = []string{"T0SECRET", "B0SECRET", "SlackPathSecret", "QueryTokenSecret", "UserPassSecret", "token="}

// TestNotifierSecretsNotLogged: a notifier's URL is a credential (a Slack
// incoming-webhook path, a ?token=), so a failing attempt logs and returns
// its scheme and host only, whether the transport failed (Go's *url.Error
// quotes the URL) or the receiver answered with the URL echoed back.
func TestNotifierSecretsNotLogged(t *testing.T) {
	t.Parallel()
	const secretPath = "/services/T0SECRET/B0SECRET/SlackPathSecret"
	const secretQuery = "?token=QueryTokenSecret"
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "no route for "+r.URL.RequestURI())
	}))
	defer echo.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // connection refused: a *url.Error
	withUser := func(base string) string {
		return strings.Replace(base, "http://", "http://ops:UserPassSecret@", 1)
	}

	var logs testkit.LogBuffer
	results := make(chan error, 16)
	d, err := NewDispatcher(DispatcherConfig{
		MaxAttempts: 2, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnResult: func(_ string, _ []Alert, err error) { results <- err },
	}, map[string]Notifier{
		"webhook-echo":   NewWebhook(withUser(echo.URL)+secretPath+secretQuery, testSecret, nil),
		"slack-echo":     NewSlack(echo.URL+secretPath+secretQuery, nil),
		"webhook-closed": NewWebhook(withUser(closed.URL)+secretPath+secretQuery, "", nil),
		"slack-closed":   NewSlack(closed.URL+secretPath, nil),
		"slack-bad":      NewSlack("http://[::1"+secretPath+secretQuery, nil),
	})
	require.NoError(t, err)
	d.Enqueue(testAlerts())
	for range 5 {
		err := within(t, results)
		require.Error(t, err)
		for _, s := range urlSecrets {
			require.NotContains(t, err.Error(), s)
		}
	}
	require.NoError(t, d.Close(context.Background()))
	out := logs.String()
	require.Contains(t, out, "notification attempt failed")
	require.Contains(t, out, strings.TrimPrefix(echo.URL, "http://"), "the host stays, to tell receivers apart")
	for _, s := range urlSecrets {
		require.NotContains(t, out, s)
	}
}

// TestNotifiersFollowNoRedirect: a 307 would re-POST the signed message to
// an address nobody configured; it is a failed attempt instead.
func TestNotifiersFollowNoRedirect(t *testing.T) {
	t.Parallel()
	elsewhere, got := receiver(t, http.StatusOK)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/stolen", http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	for name, n := range map[string]Notifier{
		"webhook":               NewWebhook(redirect.URL, testSecret, nil),
		"webhook, own client":   NewWebhook(redirect.URL, testSecret, redirect.Client()),
		"slack":                 NewSlack(redirect.URL, nil),
		"slack, default client": NewSlack(redirect.URL, http.DefaultClient),
	} {
		err := n.Notify(context.Background(), testAlerts())
		require.ErrorContains(t, err, "receiver answered 307", name)
	}
	select {
	case r := <-got:
		t.Fatalf("the redirect was followed: %s", r.body)
	default:
	}
}
