package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tdscore/tds/internal/verify"
)

// WebhookVersion is the Alertmanager webhook payload version sent.
const WebhookVersion = "4"

// DefaultReceiver is the payload's receiver unless [WithReceiver] says
// otherwise.
const DefaultReceiver = "tds"

// WebhookMessage is the Alertmanager webhook payload, version 4, as
// Alertmanager's notify/webhook Message (template.Data embedded, plus
// version, groupKey and truncatedAlerts) marshals it. Field names and
// shapes follow Alertmanager's template.Data and template.Alert; the
// notification_reason and routeLabels fields recent Alertmanager releases
// add are left out, as older releases send neither.
type WebhookMessage struct {
	Receiver          string            `json:"receiver"`
	Status            string            `json:"status"`
	Alerts            []WebhookAlert    `json:"alerts"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   uint64            `json:"truncatedAlerts"`
}

// WebhookAlert is one alert of a [WebhookMessage]. EndsAt is the zero
// time (0001-01-01T00:00:00Z) while the alert fires.
type WebhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// WebhookOption configures [NewWebhook].
type WebhookOption func(*webhook)

// WithExternalURL sets the payload's externalURL, tds's own address as the
// receiver should link to it; each alert's generatorURL is then its admin
// page, externalURL + "/admin/alerts?state=…". Defaults to empty.
func WithExternalURL(u string) WebhookOption {
	return func(w *webhook) { w.externalURL = strings.TrimRight(u, "/") }
}

// WithReceiver sets the payload's receiver name. Defaults to
// [DefaultReceiver].
func WithReceiver(name string) WebhookOption {
	return func(w *webhook) { w.receiver = name }
}

type webhook struct {
	url, receiver, externalURL string
	client                     *http.Client
	key                        []byte
	keyErr                     error
}

// NewWebhook returns a notifier that POSTs the Alertmanager webhook
// payload (version 4, see [WebhookMessage]) to url, so that receivers
// written for Alertmanager work. With a secret ("whsec_<base64>", the
// Standard Webhooks form), each request carries webhook-id,
// webhook-timestamp and webhook-signature headers; a secret that does not
// decode makes every Notify fail with an error saying so (check it at
// start with verify.DecodeStandardSecret). The webhook-id is ctx's
// [MessageID], the same across the retries of one notification, or new
// when ctx carries none. client nil means http.DefaultClient; either way
// no redirect is followed (a 3xx is a failure), and errors name the URL's
// scheme and host only. The timeout comes from the context.
func NewWebhook(url, secret string, client *http.Client, opts ...WebhookOption) Notifier {
	w := &webhook{url: url, receiver: DefaultReceiver, client: client}
	if w.client == nil {
		w.client = http.DefaultClient
	}
	if secret != "" {
		w.key, w.keyErr = verify.DecodeStandardSecret(secret)
	}
	for _, o := range opts {
		if o != nil {
			o(w)
		}
	}
	return w
}

// Notify implements [Notifier].
func (w *webhook) Notify(ctx context.Context, alerts []Alert) error {
	if w.keyErr != nil {
		return fmt.Errorf("alert: webhook: secret: %w", w.keyErr)
	}
	body, err := json.Marshal(w.message(alerts))
	if err != nil {
		return fmt.Errorf("alert: webhook: encoding the payload: %w", err)
	}
	h := http.Header{}
	if w.key != nil {
		id := MessageID(ctx)
		if id == "" {
			id = NewMessageID()
		}
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		h.Set(verify.HeaderID, id)
		h.Set(verify.HeaderTimestamp, ts)
		h.Set(verify.HeaderSignature, verify.SignStandard(w.key, id, ts, body))
	}
	return post(ctx, w.client, "webhook", w.url, body, h)
}

// message builds the payload of one notification: one group, the alerts
// given.
func (w *webhook) message(alerts []Alert) WebhookMessage {
	m := WebhookMessage{
		Receiver:          w.receiver,
		Status:            StateResolved,
		Alerts:            make([]WebhookAlert, 0, len(alerts)),
		GroupLabels:       map[string]string{},
		CommonLabels:      map[string]string{},
		CommonAnnotations: map[string]string{},
		ExternalURL:       w.externalURL,
		Version:           WebhookVersion,
	}
	for i, a := range alerts {
		wa := WebhookAlert{
			Status:      status(a),
			Labels:      alertLabels(a),
			Annotations: annotations(a),
			StartsAt:    startsAt(a),
			Fingerprint: a.Fingerprint,
		}
		if wa.Fingerprint == "" {
			wa.Fingerprint = Fingerprint(a.Rule, a.Labels)
		}
		if a.ResolvedAt != nil {
			wa.EndsAt = a.ResolvedAt.UTC()
		}
		if w.externalURL != "" {
			wa.GeneratorURL = w.externalURL + "/admin/alerts?state=" + wa.Status
		}
		if wa.Status == StateFiring {
			m.Status = StateFiring // as Alertmanager: firing when any alert is
		}
		if i == 0 {
			copyInto(m.CommonLabels, wa.Labels)
			copyInto(m.CommonAnnotations, wa.Annotations)
		} else {
			intersect(m.CommonLabels, wa.Labels)
			intersect(m.CommonAnnotations, wa.Annotations)
		}
		m.Alerts = append(m.Alerts, wa)
	}
	if name, ok := m.CommonLabels["alertname"]; ok {
		m.GroupLabels["alertname"] = name
	}
	m.GroupKey = "{}:" + labelSetString(m.GroupLabels)
	return m
}

// alertLabels are the alert's labels with alertname (the rule) and
// severity, which win over labels of the same name.
func alertLabels(a Alert) map[string]string {
	l := make(map[string]string, len(a.Labels)+2)
	copyInto(l, a.Labels)
	l["alertname"] = a.Rule
	if a.Severity != "" {
		l["severity"] = a.Severity
	}
	return l
}

// annotations are the summary (rule, state, value) and the rule's
// description with the value (and, once resolved, the value it fired at
// and its peak).
func annotations(a Alert) map[string]string {
	v := formatValue(a.Value)
	summary := fmt.Sprintf("%s %s: value %s", a.Rule, status(a), v)
	if len(a.Labels) > 0 {
		summary = fmt.Sprintf("%s %s %s: value %s", a.Rule, labelSetString(a.Labels), status(a), v)
	}
	desc := descriptions[a.Rule]
	if desc == "" {
		desc = "Rule " + a.Rule + "."
	}
	desc += " Value: " + v + "."
	if a.State == StateResolved && !a.FiringAt.IsZero() {
		// The value at resolution says nothing of what happened.
		desc += " Fired at " + formatValue(a.FiredValue) + ", peak " + formatValue(a.PeakValue) + "."
	}
	if id := a.Labels["run_id"]; a.Rule == RuleReconcileNeedsConfirmation && id != "" {
		desc += " Review and confirm it on the dashboard's run page, /ui/reconcile/" + id +
			", or with POST /admin/sync-runs/" + id + "/confirm."
	}
	return map[string]string{
		"summary":     summary,
		"description": desc,
	}
}

// startsAt is when the alert fired, or began if it never did.
func startsAt(a Alert) time.Time {
	if !a.FiringAt.IsZero() {
		return a.FiringAt.UTC()
	}
	return a.StartedAt.UTC()
}

func copyInto(dst, src map[string]string) {
	for k, v := range src {
		dst[k] = v
	}
}

// intersect keeps in common the pairs that other has too.
func intersect(common, other map[string]string) {
	for k, v := range common {
		if ov, ok := other[k]; !ok || ov != v {
			delete(common, k)
		}
	}
}

// labelSetString writes labels as Prometheus does: {a="1", b="2"}.
func labelSetString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(l[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
