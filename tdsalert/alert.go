package tdsalert

import (
	"encoding/json"
	"time"

	"github.com/tdscore/tds/internal/alert"
	"github.com/tdscore/tds/internal/record"
	"github.com/tdscore/tds/internal/store"
)

// The states of an [Alert].
const (
	// StatePending: the rule breaches, not yet for its "for" duration.
	StatePending = alert.StatePending
	// StateFiring: the rule has breached for its "for" duration; the alert
	// is notified.
	StateFiring = alert.StateFiring
	// StateResolved: the rule no longer breaches; the alert is history.
	StateResolved = alert.StateResolved
)

// Alert is one built-in rule's alert for one label set, from its first
// breaching evaluation to its resolution.
type Alert struct {
	// ID identifies the alert in tds_alerts.
	ID int64 `json:"id"`
	// Rule is the rule's name, such as "queue_oldest_pending".
	Rule string `json:"rule"`
	// State is [StatePending], [StateFiring] or [StateResolved].
	State string `json:"state"`
	// Severity is the rule's: "info", "warning" or "critical".
	Severity string `json:"severity"`
	// Labels tell apart the alerts of one rule (entity_type, say); empty
	// for a rule with one series.
	Labels map[string]string `json:"labels"`
	// Value is the rule's measure at the last evaluation; once resolved,
	// the measure that resolved it.
	Value float64 `json:"value"`
	// FiredValue is the measure when the alert fired, PeakValue the
	// highest while it was firing: what happened, which Value no longer
	// tells after the resolution. Nil while pending, and for alerts
	// resolved before tds recorded them.
	FiredValue *float64 `json:"fired_value"`
	PeakValue  *float64 `json:"peak_value"`
	// StartedAt is when the rule first breached; FiringAt when the alert
	// fired (nil while pending); ResolvedAt when it resolved.
	StartedAt  time.Time  `json:"started_at"`
	FiringAt   *time.Time `json:"firing_at,omitempty"`
	ResolvedAt *time.Time `json:"resolved_at"`
	// AcknowledgedAt is set by [Alerter.Ack], SilencedUntil by
	// [Alerter.Silence].
	AcknowledgedAt *time.Time `json:"acknowledged_at"`
	SilencedUntil  *time.Time `json:"silenced_until"`
	// LastNotifiedAt is when a receiver (webhook, Slack or Alertmanager)
	// last accepted a notification of the alert (for Alertmanager: its
	// firing or its resolution, not the re-sends); nil when none did, as
	// when no receiver is configured.
	LastNotifiedAt *time.Time `json:"last_notified_at,omitempty"`
}

func fromAlertRow(r store.Alert) alert.Alert {
	a := alert.Alert{
		ID: r.ID, Rule: r.Rule, Fingerprint: r.Fingerprint, State: r.State, Severity: r.Severity,
		Value: r.Value, StartedAt: r.StartedAt.UTC(), ResolvedAt: record.UTCPtr(r.ResolvedAt),
		AcknowledgedAt: record.UTCPtr(r.AcknowledgedAt), SilencedUntil: record.UTCPtr(r.SilencedUntil),
		ClaimedAt: record.UTCPtr(r.NotifyClaimedAt),
	}
	if r.FiredValue != nil {
		a.FiredValue = *r.FiredValue
	}
	if r.PeakValue != nil {
		a.PeakValue = *r.PeakValue
	}
	if r.FiringAt != nil {
		a.FiringAt = r.FiringAt.UTC()
	}
	if len(r.Labels) > 0 {
		_ = json.Unmarshal(r.Labels, &a.Labels)
		if len(a.Labels) == 0 {
			a.Labels = nil
		}
	}
	return a
}

func toAlertRow(a alert.Alert, now time.Time) store.Alert {
	r := store.Alert{
		ID: a.ID, Rule: a.Rule, Fingerprint: a.Fingerprint, State: a.State, Severity: a.Severity,
		Value: a.Value, StartedAt: a.StartedAt, ResolvedAt: a.ResolvedAt, NotifyClaimedAt: a.ClaimedAt,
		UpdatedAt: now,
	}
	if !a.FiringAt.IsZero() {
		f, fired, peak := a.FiringAt, a.FiredValue, a.PeakValue
		r.FiringAt, r.FiredValue, r.PeakValue = &f, &fired, &peak
	}
	r.Labels, _ = json.Marshal(a.Labels)
	if a.Labels == nil {
		r.Labels = json.RawMessage(`{}`)
	}
	return r
}

func publicAlert(r store.Alert) Alert {
	a := fromAlertRow(r)
	out := Alert{
		ID: a.ID, Rule: a.Rule, State: a.State, Severity: a.Severity, Labels: a.Labels, Value: a.Value,
		FiredValue: r.FiredValue, PeakValue: r.PeakValue,
		StartedAt: a.StartedAt, ResolvedAt: a.ResolvedAt, AcknowledgedAt: a.AcknowledgedAt,
		SilencedUntil: a.SilencedUntil, LastNotifiedAt: record.UTCPtr(r.LastNotifiedAt),
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if !a.FiringAt.IsZero() {
		f := a.FiringAt
		out.FiringAt = &f
	}
	return out
}
