package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// AlertmanagerPath is where Alertmanager's API v2 takes alerts, appended
// to an Alertmanager's base URL.
const AlertmanagerPath = "api/v2/alerts"

// DefaultAlertmanagerResend is how often the firing alerts are sent to
// Alertmanager again, as Prometheus's --rules.alert.resend-delay.
const DefaultAlertmanagerResend = time.Minute

// AlertmanagerValidity is how many resend intervals a firing alert sent to
// Alertmanager stays valid (its endsAt), as Prometheus: three resends may
// fail before Alertmanager resolves it on its own.
const AlertmanagerValidity = 4

// PostableAlert is one alert of the body of POST /api/v2/alerts, as
// Alertmanager's API v2 (models.PostableAlert) and Prometheus send it.
type PostableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// AlertmanagerConfig configures [NewAlertmanager].
type AlertmanagerConfig struct {
	// URL is the Alertmanager's base URL, such as http://alertmanager:9093
	// (or with its --web.route-prefix); alerts are POSTed to
	// URL/api/v2/alerts. User information in it is sent as basic
	// authentication.
	URL string
	// ExternalURL is tds's console as operators reach it; each alert's
	// generatorURL is its row on the dashboard, ExternalURL +
	// "/ui/alerts#alert-ID". Empty: no generatorURL.
	ExternalURL string
	// Validity is how long a firing alert sent now stays firing in
	// Alertmanager unless sent again (endsAt = now + Validity). Defaults
	// to AlertmanagerValidity × DefaultAlertmanagerResend.
	Validity time.Duration
	// Client sends the requests. Defaults to http.DefaultClient; either
	// way no redirect is followed.
	Client *http.Client
	// Now is the clock of endsAt. Defaults to time.Now.
	Now func() time.Time
}

type alertmanager struct {
	endpoint, externalURL string
	validity              time.Duration
	client                *http.Client
	now                   func() time.Time
}

// NewAlertmanager returns a notifier that POSTs alerts to an Alertmanager's
// API v2 as Prometheus does: a firing alert with endsAt = now + Validity,
// which must be sent again before then (see [Pusher]), a resolved one with
// endsAt = its resolution. Pending alerts are not sent. Alertmanager
// de-duplicates by labels, so sending the same alerts again, or from two
// processes, is harmless. A URL that does not parse is an error on every
// Notify; errors name the URL's scheme and host only.
func NewAlertmanager(cfg AlertmanagerConfig) Notifier {
	am := &alertmanager{
		externalURL: strings.TrimRight(cfg.ExternalURL, "/"),
		validity:    or(cfg.Validity, AlertmanagerValidity*DefaultAlertmanagerResend),
		client:      cfg.Client, now: cfg.Now,
	}
	if am.client == nil {
		am.client = http.DefaultClient
	}
	if am.now == nil {
		am.now = time.Now
	}
	am.endpoint, _ = url.JoinPath(cfg.URL, AlertmanagerPath) // checked by Notify
	return am
}

// Notify implements [Notifier].
func (am *alertmanager) Notify(ctx context.Context, alerts []Alert) error {
	if am.endpoint == "" {
		return errors.New("alert: alertmanager: the URL does not parse")
	}
	body, err := json.Marshal(am.Postable(alerts, am.now()))
	if err != nil {
		return fmt.Errorf("alert: alertmanager: encoding the alerts: %w", err)
	}
	return post(ctx, am.client, "alertmanager", am.endpoint, body, nil)
}

// Postable returns the body of POST /api/v2/alerts for alerts, sent at
// now: firing and resolved alerts, never pending ones.
func (am *alertmanager) Postable(alerts []Alert, now time.Time) []PostableAlert {
	out := make([]PostableAlert, 0, len(alerts))
	for _, a := range alerts {
		p := PostableAlert{Labels: alertLabels(a), Annotations: annotations(a), StartsAt: startsAt(a)}
		switch {
		case a.State == StateResolved && a.ResolvedAt != nil:
			p.EndsAt = a.ResolvedAt.UTC()
		case a.State == StateFiring:
			p.EndsAt = now.Add(am.validity).UTC()
		default:
			continue
		}
		if am.externalURL != "" && a.ID != 0 {
			p.GeneratorURL = am.externalURL + "/ui/alerts#alert-" + strconv.FormatInt(a.ID, 10)
		}
		out = append(out, p)
	}
	return out
}
