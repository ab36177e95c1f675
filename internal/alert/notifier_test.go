package alert

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
			Severity: SeverityCritical, Value: 0, StartedAt: t0.Add(-time.Hour), FiringAt: t0.Add(-time.Hour), ResolvedAt: ptr(t0)},
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
	require.Equal(t, map[string]string{"description": "New dead letters since the last evaluation: jobs exhausted their retries and need an operator. Value: 3."}, map[string]string{"description": m.Alerts[0].Annotations["description"]})

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
