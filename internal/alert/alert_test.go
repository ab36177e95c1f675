package alert

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ptr(t time.Time) *time.Time { return &t }

func TestFingerprint(t *testing.T) {
	t.Parallel()
	a := Fingerprint("dead_letters", map[string]string{"entity_type": "invoice", "x": "1"})
	require.Len(t, a, 16)
	require.Equal(t, a, Fingerprint("dead_letters", map[string]string{"x": "1", "entity_type": "invoice"}))
	require.NotEqual(t, a, Fingerprint("dead_letters", map[string]string{"entity_type": "item", "x": "1"}))
	require.NotEqual(t, a, Fingerprint("drift", map[string]string{"entity_type": "invoice", "x": "1"}))
	// Boundaries between rule, names and values are kept.
	require.NotEqual(t, Fingerprint("a", map[string]string{"bc": ""}), Fingerprint("ab", map[string]string{"c": ""}))
	require.NotEqual(t, Fingerprint("r", map[string]string{"a": "bc"}), Fingerprint("r", map[string]string{"ab": "c"}))
	require.Equal(t, Fingerprint("r", nil), Fingerprint("r", map[string]string{}))
}

func TestStep(t *testing.T) {
	t.Parallel()
	const rule = RuleQueueOldestPending
	rules := []Rule{
		{Name: rule, Threshold: 300, For: time.Minute, Severity: SeverityWarning, Enabled: true},
		{Name: RuleDeadLetters, Severity: SeverityCritical, Enabled: true},
		{Name: RuleSourceSilent, Severity: SeverityWarning, Enabled: false},
	}
	fp := Fingerprint(rule, nil)
	dlLabels := map[string]string{"entity_type": "invoice"}
	dlFP := Fingerprint(RuleDeadLetters, dlLabels)
	breach := []Sample{{Rule: rule, Value: 400, Breaching: true}}
	calm := []Sample{{Rule: rule, Value: 10}}
	pending := Alert{ID: 7, Rule: rule, Fingerprint: fp, State: StatePending, Severity: SeverityWarning, Value: 350, StartedAt: t0}
	firing := Alert{ID: 7, Rule: rule, Fingerprint: fp, State: StateFiring, Severity: SeverityWarning, Value: 350,
		FiredValue: 350, PeakValue: 350, StartedAt: t0, FiringAt: t0.Add(time.Minute), ClaimedAt: ptr(t0.Add(time.Minute))}
	resolvedOld := Alert{ID: 3, Rule: rule, Fingerprint: fp, State: StateResolved, StartedAt: t0.Add(-time.Hour), ResolvedAt: ptr(t0.Add(-30 * time.Minute))}
	with := func(a Alert, f func(*Alert)) Alert { f(&a); return a }

	for _, tc := range []struct {
		name     string
		current  []Alert
		samples  []Sample
		now      time.Time
		wantNext []Alert
		wantSend []Alert
	}{
		{
			name: "nothing breaching, nothing happens", samples: calm, now: t0,
		},
		{
			name: "breaching starts a pending alert", samples: breach, now: t0,
			wantNext: []Alert{{Rule: rule, Fingerprint: fp, State: StatePending, Severity: SeverityWarning, Value: 400, StartedAt: t0}},
		},
		{
			name: "For 0 fires at once", now: t0,
			samples:  []Sample{{Rule: RuleDeadLetters, Labels: dlLabels, Value: 2, Breaching: true}},
			wantNext: []Alert{{Rule: RuleDeadLetters, Fingerprint: dlFP, Labels: dlLabels, State: StateFiring, Severity: SeverityCritical, Value: 2, FiredValue: 2, PeakValue: 2, StartedAt: t0, FiringAt: t0}},
			wantSend: []Alert{{Rule: RuleDeadLetters, Fingerprint: dlFP, Labels: dlLabels, State: StateFiring, Severity: SeverityCritical, Value: 2, FiredValue: 2, PeakValue: 2, StartedAt: t0, FiringAt: t0}},
		},
		{
			name: "pending stays pending before For", current: []Alert{pending}, samples: breach, now: t0.Add(59 * time.Second),
			wantNext: []Alert{with(pending, func(a *Alert) { a.Value = 400 })},
		},
		{
			name: "pending fires at For", current: []Alert{pending}, samples: breach, now: t0.Add(time.Minute),
			wantNext: []Alert{with(pending, func(a *Alert) {
				a.Value, a.State, a.FiringAt, a.FiredValue, a.PeakValue = 400, StateFiring, t0.Add(time.Minute), 400, 400
			})},
			wantSend: []Alert{with(pending, func(a *Alert) {
				a.Value, a.State, a.FiringAt, a.FiredValue, a.PeakValue = 400, StateFiring, t0.Add(time.Minute), 400, 400
			})},
		},
		{
			name: "pending that stops breaching is dropped", current: []Alert{pending}, samples: calm, now: t0.Add(30 * time.Second),
		},
		{
			name: "pending without a sample is dropped", current: []Alert{pending}, now: t0.Add(30 * time.Second),
		},
		{
			name: "firing stays firing, not re-sent before repeat", current: []Alert{firing}, samples: breach, now: t0.Add(time.Hour),
			wantNext: []Alert{with(firing, func(a *Alert) { a.Value, a.PeakValue = 400, 400 })},
		},
		{
			name: "firing is re-sent after repeat", current: []Alert{firing}, samples: breach, now: t0.Add(time.Minute + 4*time.Hour),
			wantNext: []Alert{with(firing, func(a *Alert) { a.Value, a.PeakValue = 400, 400 })},
			wantSend: []Alert{with(firing, func(a *Alert) { a.Value, a.PeakValue = 400, 400 })},
		},
		{
			name: "firing never delivered is sent again", current: []Alert{with(firing, func(a *Alert) { a.ClaimedAt = nil })}, samples: breach, now: t0.Add(2 * time.Minute),
			wantNext: []Alert{with(firing, func(a *Alert) { a.Value, a.PeakValue, a.ClaimedAt = 400, 400, nil })},
			wantSend: []Alert{with(firing, func(a *Alert) { a.Value, a.PeakValue, a.ClaimedAt = 400, 400, nil })},
		},
		{
			name: "acknowledged firing is not repeated", current: []Alert{with(firing, func(a *Alert) { a.AcknowledgedAt = ptr(t0.Add(2 * time.Minute)) })}, samples: breach, now: t0.Add(5 * time.Hour),
			wantNext: []Alert{with(firing, func(a *Alert) { a.Value, a.AcknowledgedAt = 400, ptr(t0.Add(2*time.Minute)); a.PeakValue = 400 })},
		},
		{
			name: "silenced firing is not repeated", current: []Alert{with(firing, func(a *Alert) { a.SilencedUntil = ptr(t0.Add(6 * time.Hour)) })}, samples: breach, now: t0.Add(5 * time.Hour),
			wantNext: []Alert{with(firing, func(a *Alert) { a.Value, a.SilencedUntil = 400, ptr(t0.Add(6*time.Hour)); a.PeakValue = 400 })},
		},
		{
			name: "an expired silence lets the repeat through", current: []Alert{with(firing, func(a *Alert) { a.SilencedUntil = ptr(t0.Add(5 * time.Hour)) })}, samples: breach, now: t0.Add(5 * time.Hour),
			wantNext: []Alert{with(firing, func(a *Alert) { a.Value, a.SilencedUntil = 400, ptr(t0.Add(5*time.Hour)); a.PeakValue = 400 })},
			wantSend: []Alert{with(firing, func(a *Alert) { a.Value, a.SilencedUntil = 400, ptr(t0.Add(5*time.Hour)); a.PeakValue = 400 })},
		},
		{
			name: "pending that fires while silenced is not sent", current: []Alert{with(pending, func(a *Alert) { a.SilencedUntil = ptr(t0.Add(time.Hour)) })}, samples: breach, now: t0.Add(time.Minute),
			wantNext: []Alert{with(pending, func(a *Alert) {
				a.Value, a.State, a.FiringAt, a.SilencedUntil = 400, StateFiring, t0.Add(time.Minute), ptr(t0.Add(time.Hour))
				a.FiredValue, a.PeakValue = 400, 400
			})},
		},
		{
			name: "firing resolves and the resolution is sent", current: []Alert{firing}, samples: calm, now: t0.Add(time.Hour),
			wantNext: []Alert{with(firing, func(a *Alert) { a.Value, a.State, a.ResolvedAt = 10, StateResolved, ptr(t0.Add(time.Hour)) })},
			wantSend: []Alert{with(firing, func(a *Alert) { a.Value, a.State, a.ResolvedAt = 10, StateResolved, ptr(t0.Add(time.Hour)) })},
		},
		{
			name: "firing without a sample resolves", current: []Alert{firing}, now: t0.Add(time.Hour),
			wantNext: []Alert{with(firing, func(a *Alert) { a.State, a.ResolvedAt = StateResolved, ptr(t0.Add(time.Hour)) })},
			wantSend: []Alert{with(firing, func(a *Alert) { a.State, a.ResolvedAt = StateResolved, ptr(t0.Add(time.Hour)) })},
		},
		{
			name: "acknowledgement does not hold the resolution", current: []Alert{with(firing, func(a *Alert) { a.AcknowledgedAt = ptr(t0) })}, now: t0.Add(time.Hour),
			wantNext: []Alert{with(firing, func(a *Alert) {
				a.AcknowledgedAt, a.State, a.ResolvedAt = ptr(t0), StateResolved, ptr(t0.Add(time.Hour))
			})},
			wantSend: []Alert{with(firing, func(a *Alert) {
				a.AcknowledgedAt, a.State, a.ResolvedAt = ptr(t0), StateResolved, ptr(t0.Add(time.Hour))
			})},
		},
		{
			name:    "a resolution keeps the fired and the peak value, Value is the resolving one",
			current: []Alert{with(firing, func(a *Alert) { a.FiredValue, a.PeakValue, a.Value = 340, 900, 500 })}, samples: calm, now: t0.Add(time.Hour),
			wantNext: []Alert{with(firing, func(a *Alert) {
				a.FiredValue, a.PeakValue, a.Value, a.State, a.ResolvedAt = 340, 900, 10, StateResolved, ptr(t0.Add(time.Hour))
			})},
			wantSend: []Alert{with(firing, func(a *Alert) {
				a.FiredValue, a.PeakValue, a.Value, a.State, a.ResolvedAt = 340, 900, 10, StateResolved, ptr(t0.Add(time.Hour))
			})},
		},
		{
			name: "a lower value while firing keeps the peak", current: []Alert{with(firing, func(a *Alert) { a.PeakValue = 900 })},
			samples: []Sample{{Rule: rule, Value: 310, Breaching: true}}, now: t0.Add(time.Hour),
			wantNext: []Alert{with(firing, func(a *Alert) { a.Value, a.PeakValue = 310, 900 })},
		},
		{
			name: "a holding sample keeps a firing alert open, with its value", current: []Alert{firing},
			samples: []Sample{{Rule: rule, Value: 3, Holds: true}}, now: t0.Add(time.Hour),
			wantNext: []Alert{with(firing, func(a *Alert) { a.Value = 3 })},
		},
		{
			name: "a holding sample keeps a pending alert, which fires at For", current: []Alert{pending},
			samples: []Sample{{Rule: rule, Value: 3, Holds: true}}, now: t0.Add(time.Minute),
			wantNext: []Alert{with(pending, func(a *Alert) {
				a.Value, a.State, a.FiringAt, a.FiredValue, a.PeakValue = 3, StateFiring, t0.Add(time.Minute), 3, 3
			})},
			wantSend: []Alert{with(pending, func(a *Alert) {
				a.Value, a.State, a.FiringAt, a.FiredValue, a.PeakValue = 3, StateFiring, t0.Add(time.Minute), 3, 3
			})},
		},
		{
			name: "a holding sample starts no alert", samples: []Sample{{Rule: rule, Value: 3, Holds: true}}, now: t0,
		},
		{
			name: "a breaching sample wins over a holding one of the same fingerprint", current: []Alert{firing},
			samples: []Sample{{Rule: rule, Value: 3, Holds: true}, {Rule: rule, Value: 450, Breaching: true}, {Rule: rule, Value: 1}}, now: t0.Add(time.Hour),
			wantNext: []Alert{with(firing, func(a *Alert) { a.Value, a.PeakValue = 450, 450 })},
		},
		{
			name:    "a holding sample of a disabled rule holds nothing",
			current: []Alert{{Rule: RuleSourceSilent, Fingerprint: Fingerprint(RuleSourceSilent, nil), State: StateFiring, StartedAt: t0, FiringAt: t0}},
			samples: []Sample{{Rule: RuleSourceSilent, Value: 5, Holds: true}}, now: t0.Add(time.Hour),
			wantNext: []Alert{{Rule: RuleSourceSilent, Fingerprint: Fingerprint(RuleSourceSilent, nil), State: StateResolved, Value: 5, StartedAt: t0, FiringAt: t0, ResolvedAt: ptr(t0.Add(time.Hour))}},
		},
		{
			name: "a firing never notified resolves quietly", current: []Alert{with(firing, func(a *Alert) { a.ClaimedAt = nil })}, now: t0.Add(time.Hour),
			wantNext: []Alert{with(firing, func(a *Alert) { a.ClaimedAt, a.State, a.ResolvedAt = nil, StateResolved, ptr(t0.Add(time.Hour)) })},
		},
		{
			name: "resolved history is kept unchanged; a new episode starts beside it", current: []Alert{resolvedOld}, samples: breach, now: t0,
			wantNext: []Alert{resolvedOld, {Rule: rule, Fingerprint: fp, State: StatePending, Severity: SeverityWarning, Value: 400, StartedAt: t0}},
		},
		{
			name: "a disabled rule breaches nothing", now: t0,
			samples: []Sample{{Rule: RuleSourceSilent, Value: 1e6, Breaching: true}},
		},
		{
			name: "an unknown rule breaches nothing", now: t0,
			samples: []Sample{{Rule: "nope", Value: 1, Breaching: true}},
		},
		{
			name:    "firing of a rule since disabled resolves",
			current: []Alert{{Rule: RuleSourceSilent, Fingerprint: Fingerprint(RuleSourceSilent, nil), State: StateFiring, StartedAt: t0, FiringAt: t0, ClaimedAt: ptr(t0)}},
			samples: []Sample{{Rule: RuleSourceSilent, Value: 1e6, Breaching: true}}, now: t0.Add(time.Hour),
			wantNext: []Alert{{Rule: RuleSourceSilent, Fingerprint: Fingerprint(RuleSourceSilent, nil), State: StateResolved, Value: 1e6, StartedAt: t0, FiringAt: t0, ClaimedAt: ptr(t0), ResolvedAt: ptr(t0.Add(time.Hour))}},
			wantSend: []Alert{{Rule: RuleSourceSilent, Fingerprint: Fingerprint(RuleSourceSilent, nil), State: StateResolved, Value: 1e6, StartedAt: t0, FiringAt: t0, ClaimedAt: ptr(t0), ResolvedAt: ptr(t0.Add(time.Hour))}},
		},
		{
			name: "one alert per fingerprint: duplicate samples merge, any breaching wins", now: t0,
			samples:  []Sample{{Rule: rule, Value: 500, Breaching: true}, {Rule: rule, Value: 1}, {Rule: rule, Value: 450, Breaching: true}},
			wantNext: []Alert{{Rule: rule, Fingerprint: fp, State: StatePending, Severity: SeverityWarning, Value: 450, StartedAt: t0}},
		},
		{
			name: "one alert per fingerprint: a duplicate active alert is dropped", current: []Alert{pending, with(pending, func(a *Alert) { a.ID = 8 })}, samples: breach, now: t0.Add(time.Second),
			wantNext: []Alert{with(pending, func(a *Alert) { a.Value = 400 })},
		},
		{
			name: "an alert without a fingerprint gets one", current: []Alert{with(pending, func(a *Alert) { a.Fingerprint = "" })}, samples: breach, now: t0.Add(time.Second),
			wantNext: []Alert{with(pending, func(a *Alert) { a.Value = 400 })},
		},
		{
			name: "label sets are separate alerts, new ones sorted", now: t0,
			samples: []Sample{
				{Rule: RuleDeadLetters, Labels: map[string]string{"entity_type": "item"}, Value: 1, Breaching: true},
				{Rule: RuleDeadLetters, Labels: dlLabels, Value: 2, Breaching: true},
			},
			wantNext: sortedDL(t0, 1, 2),
			wantSend: sortedDL(t0, 1, 2),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			next, send := Step(tc.current, tc.samples, rules, tc.now, 0)
			require.Equal(t, tc.wantNext, next)
			require.Equal(t, tc.wantSend, send)
		})
	}
}

func sortedDL(now time.Time, itemValue, invoiceValue float64) []Alert {
	item := Alert{Rule: RuleDeadLetters, Labels: map[string]string{"entity_type": "item"}, Value: itemValue}
	inv := Alert{Rule: RuleDeadLetters, Labels: map[string]string{"entity_type": "invoice"}, Value: invoiceValue}
	out := []Alert{item, inv}
	for i := range out {
		out[i].Fingerprint = Fingerprint(out[i].Rule, out[i].Labels)
		out[i].State, out[i].Severity, out[i].StartedAt, out[i].FiringAt = StateFiring, SeverityCritical, now, now
		out[i].FiredValue, out[i].PeakValue = out[i].Value, out[i].Value
	}
	if out[0].Fingerprint > out[1].Fingerprint {
		out[0], out[1] = out[1], out[0]
	}
	return out
}

func TestStepRepeatArgument(t *testing.T) {
	t.Parallel()
	rules := []Rule{{Name: RuleDrift, Enabled: true}}
	a := Alert{Rule: RuleDrift, Fingerprint: Fingerprint(RuleDrift, nil), State: StateFiring, StartedAt: t0, FiringAt: t0, ClaimedAt: ptr(t0)}
	s := []Sample{{Rule: RuleDrift, Value: 20, Breaching: true}}
	_, send := Step([]Alert{a}, s, rules, t0.Add(time.Hour), time.Hour)
	require.Len(t, send, 1)
	_, send = Step([]Alert{a}, s, rules, t0.Add(time.Hour), 2*time.Hour)
	require.Empty(t, send)
	_, send = Step([]Alert{a}, s, rules, t0.Add(DefaultRepeat-time.Second), -1)
	require.Empty(t, send)
}

func TestStepDoesNotAliasInputs(t *testing.T) {
	t.Parallel()
	labels := map[string]string{"entity_type": "invoice"}
	rules := []Rule{{Name: RuleDeadLetters, Enabled: true}}
	next, send := Step(nil, []Sample{{Rule: RuleDeadLetters, Labels: labels, Value: 1, Breaching: true}}, rules, t0, 0)
	labels["entity_type"] = "changed"
	require.Equal(t, "invoice", next[0].Labels["entity_type"])
	require.Equal(t, "invoice", send[0].Labels["entity_type"])
}

func TestMarkClaimedAndRestart(t *testing.T) {
	t.Parallel()
	rules := []Rule{{Name: RuleDrift, Enabled: true, Severity: SeverityWarning}}
	s := []Sample{{Rule: RuleDrift, Value: 20, Breaching: true}}
	old := Alert{Rule: RuleDrift, Fingerprint: Fingerprint(RuleDrift, nil), State: StateResolved, StartedAt: t0.Add(-time.Hour), ResolvedAt: ptr(t0)}

	next, send := Step([]Alert{old}, s, rules, t0, 0)
	require.Len(t, send, 1)
	require.Equal(t, 1, MarkClaimed(next, send, t0.Add(time.Second)))
	require.Nil(t, next[0].ClaimedAt, "history of another episode is not marked")
	require.Equal(t, t0.Add(time.Second), *next[1].ClaimedAt)

	// A restart reads next back: nothing is sent before the repeat interval.
	next, send = Step(next, s, rules, t0.Add(time.Hour), 0)
	require.Empty(t, send)
	next, send = Step(next, s, rules, t0.Add(4*time.Hour+time.Second), 0)
	require.Len(t, send, 1)
	MarkClaimed(next, send, t0.Add(4*time.Hour+2*time.Second))

	// Resolution, then its delivery is marked too.
	next, send = Step(next, nil, rules, t0.Add(5*time.Hour), 0)
	require.Len(t, send, 1)
	require.Equal(t, StateResolved, send[0].State)
	require.Equal(t, 1, MarkClaimed(next, send, t0.Add(5*time.Hour+time.Second)))
	require.Equal(t, t0.Add(5*time.Hour+time.Second), *next[1].ClaimedAt)
	require.Equal(t, 0, MarkClaimed(next, nil, t0))
}
