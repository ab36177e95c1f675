package alert

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDefaultRules(t *testing.T) {
	t.Parallel()
	rules := DefaultRules()
	require.Len(t, rules, 11)
	byName := map[string]Rule{}
	for _, r := range rules {
		require.NotContains(t, byName, r.Name)
		byName[r.Name] = r
		require.NotEmpty(t, descriptions[r.Name], r.Name)
		require.Contains(t, []string{SeverityInfo, SeverityWarning, SeverityCritical}, r.Severity)
	}
	require.Equal(t, Rule{Name: RuleQueueOldestPending, Threshold: 300, For: time.Minute, Severity: SeverityWarning, Enabled: true}, byName[RuleQueueOldestPending])
	require.Equal(t, 0.10, byName[RuleSyncFailureRatio].Threshold)
	require.Equal(t, 20, byName[RuleSyncFailureRatio].MinCount)
	require.Equal(t, 5*time.Minute, byName[RuleSyncFailureRatio].Window)
	require.Equal(t, 5*time.Minute, byName[RuleAuthFailures].Window)
	require.Equal(t, 15*time.Minute, byName[RuleZohoRateLimited].Window)
	require.False(t, byName[RuleSourceSilent].Enabled)
	require.Equal(t, float64(86400), byName[RuleSourceSilent].Threshold)
	require.Equal(t, float64(900), byName[RuleZohoDailyWebhooks].Threshold)
	require.Equal(t, float64(10), byName[RuleDrift].Threshold)
	require.Equal(t, Rule{Name: RuleReconcileNeedsConfirmation, Severity: SeverityWarning, Enabled: true}, byName[RuleReconcileNeedsConfirmation])
	// A fresh slice each time.
	rules[0].Threshold = 1
	require.Equal(t, float64(300), DefaultRules()[0].Threshold)
}

func TestLoadRules(t *testing.T) {
	t.Parallel()
	rules, err := LoadRules(strings.NewReader(`
rules:
  - name: queue_oldest_pending
    threshold: 10m
    for: 30s
    severity: critical
  - name: sync_failure_ratio
    threshold: 0.25
    window: 10m
    min_count: 50
  - name: source_silent
    enabled: true
    threshold: 3600
  - name: drift
    enabled: false
`))
	require.NoError(t, err)
	want := DefaultRules()
	want[0] = Rule{Name: RuleQueueOldestPending, Threshold: 600, For: 30 * time.Second, Severity: SeverityCritical, Enabled: true}
	want[2] = Rule{Name: RuleSyncFailureRatio, Threshold: 0.25, Window: 10 * time.Minute, MinCount: 50, Severity: SeverityWarning, Enabled: true}
	want[4].Enabled, want[4].Threshold = true, 3600
	want[6].Enabled = false
	require.Equal(t, want, rules)

	for _, empty := range []string{"", "rules: []\n", "rules:\n"} {
		rules, err := LoadRules(strings.NewReader(empty))
		require.NoError(t, err, "%q", empty)
		require.Equal(t, DefaultRules(), rules)
	}
}

func TestLoadRulesErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, file string
		want       []string // all in the error
	}{
		{"unknown rule", "rules: [{name: queue_age}]", []string{`unknown rule "queue_age"`, "queue_oldest_pending"}},
		{"unknown field", "rules: [{name: drift, treshold: 3}]", []string{"treshold"}},
		{"unknown top-level field", "rule: []", []string{"rule"}},
		{"missing name", "rules: [{threshold: 3}]", []string{"rules[0]", "name is missing"}},
		{"named twice", "rules: [{name: drift}, {name: drift}]", []string{"drift", "named twice"}},
		{"bad threshold", "rules: [{name: drift, threshold: lots}]", []string{"rule drift", "threshold", "lots"}},
		{"negative threshold", "rules: [{name: drift, threshold: -1}]", []string{"rule drift", "threshold", ">= 0"}},
		{"infinite threshold", "rules: [{name: drift, threshold: .inf}]", []string{"rule drift", "threshold", ".inf"}},
		{"overflowing threshold", "rules: [{name: drift, threshold: 1e999}]", []string{"rule drift", "threshold", "1e999"}},
		{"ratio above 1", "rules: [{name: sync_failure_ratio, threshold: 10}]", []string{"sync_failure_ratio", "threshold", "<= 1"}},
		{"bad for", "rules: [{name: queue_oldest_pending, for: 60}]", []string{"queue_oldest_pending", "for", `"60"`}},
		{"negative for", "rules: [{name: queue_oldest_pending, for: -1s}]", []string{"queue_oldest_pending", "for", ">= 0"}},
		{"bad window", "rules: [{name: auth_failures, window: [5m]}]", []string{"auth_failures", "window"}},
		{"bad min_count", "rules: [{name: sync_failure_ratio, min_count: many}]", []string{"sync_failure_ratio", "min_count", "many"}},
		{"negative min_count", "rules: [{name: sync_failure_ratio, min_count: -2}]", []string{"sync_failure_ratio", "min_count"}},
		{"bad severity", "rules: [{name: drift, severity: page}]", []string{"rule drift", "severity", `"page"`}},
		{"bad enabled", "rules: [{name: drift, enabled: maybe}]", []string{"rule drift", "enabled", "maybe"}},
		{"not YAML", "rules: [", []string{"rules file"}},
		{"several at once", "rules: [{name: drift, severity: page, for: x}, {name: nope}]", []string{"severity", "for", "nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rules, err := LoadRules(strings.NewReader(tc.file))
			require.Error(t, err)
			require.Nil(t, rules)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestStaleAfter(t *testing.T) {
	t.Parallel()
	r := Rule{Name: RuleReconcileStale}
	require.Equal(t, 30*time.Minute, StaleAfter(r, 15*time.Minute))
	r.Threshold = 3600
	require.Equal(t, time.Hour, StaleAfter(r, 15*time.Minute))
}

func FuzzLoadRules(f *testing.F) {
	f.Add("rules: [{name: queue_oldest_pending, threshold: 300s, for: 60s, severity: warning}]")
	f.Add("rules: [{name: drift, threshold: 1e309}]")
	f.Add("rules: {name: drift}")
	f.Fuzz(func(t *testing.T, s string) {
		rules, err := LoadRules(strings.NewReader(s))
		if err == nil {
			require.Len(t, rules, len(DefaultRules()))
		}
	})
}
