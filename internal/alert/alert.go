// Package alert is tds's alert engine without a database: the built-in
// rules and their configuration ([DefaultRules], [LoadRules]), the state
// machine that turns evaluation results into alerts ([Step]), and the
// notifiers that deliver them ([NewWebhook], [NewSlack], [Dispatcher];
// [NewAlertmanager] and [Pusher] for Alertmanager, which keeps the alerts'
// state and is sent the whole state again and again).
//
// One evaluation, as the caller runs it:
//
//	samples := evaluate(rules)                  // the caller's queries
//	next, send := alert.Step(current, samples, rules, now, alert.DefaultRepeat)
//	alert.MarkClaimed(next, send, now)          // persist next: the claim to send
//	dispatcher.Enqueue(send)                    // asynchronous; OnResult says
//	                                            // what was delivered
//
// Step marks what to send; it never records that anything was sent. The
// caller claims the notifications it is about to send ([MarkClaimed]) in
// the write that persists the step, so that a restart, or a second
// process, does not send a firing alert again before its repeat interval;
// when a delivery succeeded is the caller's to record apart
// ([DispatcherConfig].OnResult).
package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sort"
	"strings"
	"time"
)

// Alert states.
const (
	StatePending  = "pending"  // breaching, not yet for the rule's For
	StateFiring   = "firing"   // breaching for at least For; notified
	StateResolved = "resolved" // no longer breaching; history
)

// DefaultRepeat is how often a firing alert is notified again.
const DefaultRepeat = 4 * time.Hour

// Sample is one evaluation result of one rule for one label set.
type Sample struct {
	// Rule is the rule's name.
	Rule string
	// Labels tell apart the label sets of one rule (entity_type, say);
	// nil for a rule with one series.
	Labels map[string]string
	// Value is the measure (seconds, a count, a ratio).
	Value float64
	// Breaching tells whether Value crosses the rule's threshold: it
	// starts an alert, or keeps one open.
	Breaching bool
	// Holds tells, for a sample that does not breach, that the condition
	// of an alert already open still holds: it keeps the alert open (and
	// lets a pending one fire) but starts none. drift uses it: a run that
	// found more than the threshold starts the alert, which lasts while
	// any of that drift is unresolved.
	Holds bool
}

// Alert is one rule's alert for one label set, from its first breaching
// sample to its resolution.
type Alert struct {
	// ID is the caller's (the database's); Step leaves 0 on new alerts.
	ID int64
	// Rule is the rule's name.
	Rule string
	// Fingerprint identifies the rule and label set; see [Fingerprint].
	Fingerprint string
	// Labels are the sample's labels.
	Labels map[string]string
	// State is StatePending, StateFiring or StateResolved.
	State string
	// Severity is the rule's severity.
	Severity string
	// Value is the last sample's value; once resolved, the value that
	// resolved it (when the rule still had a sample).
	Value float64
	// FiredValue is the value at which the alert fired, PeakValue the
	// highest value while it was firing; both 0 while FiringAt is zero.
	FiredValue, PeakValue float64
	// StartedAt is when the alert first breached; FiringAt when it fired
	// (zero while pending).
	StartedAt, FiringAt time.Time
	// ResolvedAt is set when the alert resolves.
	ResolvedAt *time.Time
	// AcknowledgedAt, set by an operator, stops the repeats (not the
	// resolution).
	AcknowledgedAt *time.Time
	// SilencedUntil, set by an operator, holds every notification of the
	// alert until then.
	SilencedUntil *time.Time
	// ClaimedAt is when a notification of the alert was last claimed for
	// sending (nil: never, or the claim was given up); set by the caller
	// ([MarkClaimed]), never by Step. Step decides on it whether to send
	// again.
	ClaimedAt *time.Time
}

// Fingerprint returns a stable identifier of rule and labels: 16 hex
// digits of a SHA-256 over the rule and the labels sorted by name (the
// length of Alertmanager's fingerprints). The labels' order does not matter.
func Fingerprint(rule string, labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	// Separators that cannot appear in valid UTF-8 keep "a"+"bc" apart
	// from "ab"+"c".
	h.Write([]byte(rule))
	for _, k := range keys {
		h.Write([]byte{0xff})
		h.Write([]byte(k))
		h.Write([]byte{0xfe})
		h.Write([]byte(labels[k]))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Step advances the alerts by one evaluation at now and returns the new
// set and the alerts to notify. It is pure: nothing is read or written
// but its arguments' copies.
//
// For each rule and label set (one fingerprint):
//   - a breaching sample without an active alert starts one, pending; with
//     For 0 it fires at once;
//   - a pending alert fires once it has breached for at least For;
//   - a firing alert is sent when it fires, and again when now -
//     ClaimedAt >= repeat (or ClaimedAt is nil: the last
//     delivery failed), unless SilencedUntil is after now or it is
//     acknowledged;
//   - no breaching sample (none at all, or not breaching) drops a pending
//     alert and resolves a firing one, unless a sample of it Holds; the
//     resolution is sent when the firing was claimed (ClaimedAt set),
//     acknowledged or silenced alike, since it closes what the receiver
//     opened;
//   - a firing alert keeps the value it fired at (FiredValue) and its
//     highest value (PeakValue); Value follows every sample;
//   - a rule missing from rules or disabled breaches nothing.
//
// Several samples of one fingerprint count as breaching (or holding) when
// any is; the value is the last breaching one's (else the last holding
// one's, else the last one's). Resolved alerts in
// current are kept unchanged in next, as history. repeat <= 0 means
// DefaultRepeat. Alerts in next keep the order of current, new ones follow
// sorted by rule and fingerprint; send is in next's order.
func Step(current []Alert, samples []Sample, rules []Rule, now time.Time, repeat time.Duration) (next []Alert, send []Alert) {
	if repeat <= 0 {
		repeat = DefaultRepeat
	}
	byName := make(map[string]Rule, len(rules))
	for _, r := range rules {
		byName[r.Name] = r
	}

	type obs struct {
		sample           Sample
		breaching, holds bool
	}
	observed := make(map[string]*obs)
	var order []string
	for _, s := range samples {
		r, ok := byName[s.Rule]
		breaching := s.Breaching && ok && r.Enabled
		fp := Fingerprint(s.Rule, s.Labels)
		o := observed[fp]
		if o == nil {
			o = &obs{}
			observed[fp] = o
			order = append(order, fp)
		}
		holds := s.Holds && ok && r.Enabled
		if breaching || (!o.breaching && (holds || !o.holds)) {
			o.sample = s
		}
		o.breaching = o.breaching || breaching
		o.holds = o.holds || holds
	}

	seen := make(map[string]bool)
	for _, a := range current {
		if a.State == StateResolved {
			next = append(next, a)
			continue
		}
		if a.Fingerprint == "" {
			a.Fingerprint = Fingerprint(a.Rule, a.Labels)
		}
		if seen[a.Fingerprint] {
			continue // one active alert per fingerprint: the first wins
		}
		seen[a.Fingerprint] = true
		o := observed[a.Fingerprint]
		if o != nil {
			a.Value = o.sample.Value
		}
		if o == nil || !(o.breaching || o.holds) {
			if a.State == StatePending {
				continue
			}
			at := now
			a.State = StateResolved
			a.ResolvedAt = &at
			next = append(next, a)
			if a.ClaimedAt != nil {
				send = append(send, a)
			}
			continue
		}
		r := byName[a.Rule]
		a.Severity = r.Severity
		notify := false
		if a.State == StatePending && now.Sub(a.StartedAt) >= r.For {
			a.State = StateFiring
			a.FiringAt = now
			a.FiredValue, a.PeakValue = a.Value, a.Value
			notify = true
		} else if a.State == StateFiring {
			a.PeakValue = max(a.PeakValue, a.Value)
			notify = a.ClaimedAt == nil || now.Sub(*a.ClaimedAt) >= repeat
		}
		if notify && a.AcknowledgedAt == nil && !silenced(a, now) {
			send = append(send, a)
		}
		next = append(next, a)
	}

	var fresh []Alert
	for _, fp := range order {
		o := observed[fp]
		if seen[fp] || !o.breaching {
			continue
		}
		r := byName[o.sample.Rule]
		a := Alert{
			Rule:        o.sample.Rule,
			Fingerprint: fp,
			Labels:      copyLabels(o.sample.Labels),
			State:       StatePending,
			Severity:    r.Severity,
			Value:       o.sample.Value,
			StartedAt:   now,
		}
		if r.For <= 0 {
			a.State = StateFiring
			a.FiringAt = now
			a.FiredValue, a.PeakValue = a.Value, a.Value
		}
		fresh = append(fresh, a)
	}
	slices.SortFunc(fresh, func(a, b Alert) int {
		if c := strings.Compare(a.Rule, b.Rule); c != 0 {
			return c
		}
		return strings.Compare(a.Fingerprint, b.Fingerprint)
	})
	for _, a := range fresh {
		next = append(next, a)
		if a.State == StateFiring {
			send = append(send, a)
		}
	}
	return next, send
}

func silenced(a Alert, now time.Time) bool {
	return a.SilencedUntil != nil && a.SilencedUntil.After(now)
}

func copyLabels(l map[string]string) map[string]string {
	if l == nil {
		return nil
	}
	out := make(map[string]string, len(l))
	for k, v := range l {
		out[k] = v
	}
	return out
}

// MarkClaimed records in alerts that the notification of sent was claimed
// at at: each alert of alerts with a sent alert's fingerprint, state and
// start gets ClaimedAt = at. Call it with Step's next and send, then
// persist next. It returns how many alerts it marked.
func MarkClaimed(alerts []Alert, sent []Alert, at time.Time) int {
	type key struct {
		fp, state string
		start     int64
	}
	want := make(map[key]bool, len(sent))
	for _, s := range sent {
		want[key{s.Fingerprint, s.State, s.StartedAt.UnixNano()}] = true
	}
	n := 0
	for i := range alerts {
		a := &alerts[i]
		if want[key{a.Fingerprint, a.State, a.StartedAt.UnixNano()}] {
			t := at
			a.ClaimedAt = &t
			n++
		}
	}
	return n
}
