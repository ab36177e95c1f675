package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Slack attachment colours.
const (
	colorResolved = "#2eb886" // green
	colorCritical = "#a30200" // red
	colorWarning  = "#daa038" // amber
	colorInfo     = "#439fe0" // blue
)

// SlackMessage is the incoming-webhook message [NewSlack] sends: a text
// summary (also the notification's fallback) and one coloured attachment
// per alert.
type SlackMessage struct {
	Text        string            `json:"text"`
	Attachments []SlackAttachment `json:"attachments"`
}

// SlackAttachment describes one alert; Color follows its state and
// severity.
type SlackAttachment struct {
	Color    string   `json:"color"`
	Fallback string   `json:"fallback"`
	Title    string   `json:"title"`
	Text     string   `json:"text"`
	MrkdwnIn []string `json:"mrkdwn_in"`
	Ts       int64    `json:"ts,omitempty"`
}

type slack struct {
	url    string
	client *http.Client
}

// NewSlack returns a notifier that posts one Slack incoming-webhook
// message per call, listing the alerts. client nil means
// http.DefaultClient; either way no redirect is followed (a 3xx is a
// failure), and errors name the URL's scheme and host only, as its path is
// the credential. The timeout comes from the context.
func NewSlack(url string, client *http.Client) Notifier {
	if client == nil {
		client = http.DefaultClient
	}
	return &slack{url: url, client: client}
}

// Notify implements [Notifier].
func (s *slack) Notify(ctx context.Context, alerts []Alert) error {
	body, err := json.Marshal(slackMessage(alerts))
	if err != nil {
		return fmt.Errorf("alert: slack: encoding the message: %w", err)
	}
	return post(ctx, s.client, "slack", s.url, body, nil)
}

func slackMessage(alerts []Alert) SlackMessage {
	firing, resolved := 0, 0
	m := SlackMessage{Attachments: make([]SlackAttachment, 0, len(alerts))}
	for _, a := range alerts {
		st := status(a)
		if st == StateFiring {
			firing++
		} else {
			resolved++
		}
		title := fmt.Sprintf("[%s] %s", strings.ToUpper(st), a.Rule)
		if len(a.Labels) > 0 {
			title += " " + labelSetString(a.Labels)
		}
		ann := annotations(a)
		text := fmt.Sprintf("%s\n*Severity:* %s · *Value:* %s · *Since:* %s",
			ann["description"], a.Severity, formatValue(a.Value), startsAt(a).Format("2006-01-02 15:04:05Z07:00"))
		if a.ResolvedAt != nil {
			text += " · *Resolved:* " + a.ResolvedAt.UTC().Format("2006-01-02 15:04:05Z07:00")
		}
		m.Attachments = append(m.Attachments, SlackAttachment{
			Color:    slackColor(a),
			Fallback: ann["summary"],
			Title:    title,
			Text:     text,
			MrkdwnIn: []string{"text"},
			Ts:       startsAt(a).Unix(),
		})
	}
	var parts []string
	if firing > 0 {
		parts = append(parts, fmt.Sprintf("%d firing", firing))
	}
	if resolved > 0 {
		parts = append(parts, fmt.Sprintf("%d resolved", resolved))
	}
	m.Text = "tds alerts: " + strings.Join(parts, ", ")
	if len(alerts) == 1 {
		m.Text = "tds: " + annotations(alerts[0])["summary"]
	}
	return m
}

func slackColor(a Alert) string {
	if a.State == StateResolved {
		return colorResolved
	}
	switch a.Severity {
	case SeverityCritical:
		return colorCritical
	case SeverityInfo:
		return colorInfo
	default:
		return colorWarning
	}
}
