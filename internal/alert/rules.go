package alert

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Built-in rule names. An evaluator produces [Sample]s under these names.
const (
	// RuleQueueOldestPending measures the age in seconds of the oldest job
	// waiting to be claimed; it breaches above Threshold (default 300 s)
	// and fires after For (default 60 s).
	RuleQueueOldestPending = "queue_oldest_pending"
	// RuleDeadLetters measures the dead letters waiting for an operator
	// (labelled by entity_type): jobs dead-lettered and neither retried
	// nor discarded. It breaches above Threshold (default 0, so while any
	// is there), whenever it was recorded.
	RuleDeadLetters = "dead_letters"
	// RuleSyncFailureRatio measures the share of sync attempts in Window
	// (default 5 min) that failed (retry or dead letter); it breaches above
	// Threshold (default 0.10) once at least MinCount (default 20) of the
	// attempts in Window failed. The minimum counts failures, not attempts,
	// so that successes arriving later (a retry that recovers) can only
	// lower the ratio and never lift a sample over the minimum.
	RuleSyncFailureRatio = "sync_failure_ratio"
	// RuleAuthFailures measures the webhook requests refused as
	// unauthorized in Window (default 5 min); it breaches above Threshold
	// (default 20).
	RuleAuthFailures = "auth_failures"
	// RuleSourceSilent measures the seconds since the last webhook was
	// received; it breaches above Threshold (default 86400, 24 h). Disabled
	// by default: a quiet organisation is not an incident everywhere.
	RuleSourceSilent = "source_silent"
	// RuleReconcileStale measures the seconds since the last successful
	// reconciliation run; it breaches above Threshold seconds, or, when
	// Threshold is 0 (the default), above twice the configured
	// reconciliation interval (see [StaleAfter]).
	RuleReconcileStale = "reconcile_stale"
	// RuleDrift measures the drift (differences with the source) found by
	// the last finished reconciliation run of each mode, dry runs aside. A
	// run that found more than Threshold (default 10) starts the alert,
	// which lasts while any drift of those runs is unresolved (its repair
	// not applied yet, or a delete waiting for confirmation); its value is
	// then the unresolved drift.
	RuleDrift = "drift"
	// RuleReconcileNeedsConfirmation measures, per run (labelled run_id),
	// a reconciliation run that waits for an operator to confirm its
	// deletes (status needs_confirmation); it breaches above Threshold
	// (default 0) and lasts until the run is confirmed or cancelled.
	RuleReconcileNeedsConfirmation = "reconcile_needs_confirmation"
	// RuleZohoRateLimited measures Zoho API responses with status 429 in
	// Window (default 15 min); it breaches above Threshold (default 0, so
	// any 429).
	RuleZohoRateLimited = "zoho_rate_limited"
	// RuleZohoDailyWebhooks measures the webhooks received today, against
	// Zoho's cap of 1,000 a day; it breaches above Threshold (default 900).
	RuleZohoDailyWebhooks = "zoho_daily_webhooks"
	// RuleZohoAuth measures the consecutive failed OAuth token refreshes;
	// it breaches above Threshold (default 0, so the last refresh failed).
	RuleZohoAuth = "zoho_auth"
)

// Severities, from least to most urgent.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Rule is the configuration of one built-in rule. A sample breaches when
// its value is above Threshold (and, for ratio rules, MinCount is met); the
// evaluator, not this package, computes values and decides Breaching.
type Rule struct {
	// Name is one of the Rule* constants.
	Name string
	// Threshold is the value the measure must exceed; durations are in
	// seconds.
	Threshold float64
	// For is how long a sample must breach before the alert fires; 0
	// fires at once.
	For time.Duration
	// Window is the period counts are taken over, for the rules that count
	// (sync_failure_ratio, auth_failures, zoho_rate_limited); 0 elsewhere.
	Window time.Duration
	// MinCount is the least number of failures in Window for a ratio to
	// count (sync_failure_ratio); 0 elsewhere.
	MinCount int
	// Severity is SeverityInfo, SeverityWarning or SeverityCritical.
	Severity string
	// Enabled tells whether the rule is evaluated at all.
	Enabled bool
}

// DefaultRules returns the built-in rules with the defaults of tds issue
// 13, in a fixed order. The slice is new on every call.
func DefaultRules() []Rule {
	return []Rule{
		{Name: RuleQueueOldestPending, Threshold: 300, For: time.Minute, Severity: SeverityWarning, Enabled: true},
		{Name: RuleDeadLetters, Threshold: 0, Severity: SeverityCritical, Enabled: true},
		{Name: RuleSyncFailureRatio, Threshold: 0.10, Window: 5 * time.Minute, MinCount: 20, Severity: SeverityWarning, Enabled: true},
		{Name: RuleAuthFailures, Threshold: 20, Window: 5 * time.Minute, Severity: SeverityWarning, Enabled: true},
		{Name: RuleSourceSilent, Threshold: 24 * 3600, Severity: SeverityWarning, Enabled: false},
		{Name: RuleReconcileStale, Threshold: 0, Severity: SeverityWarning, Enabled: true},
		{Name: RuleDrift, Threshold: 10, Severity: SeverityWarning, Enabled: true},
		{Name: RuleReconcileNeedsConfirmation, Threshold: 0, Severity: SeverityWarning, Enabled: true},
		{Name: RuleZohoRateLimited, Threshold: 0, Window: 15 * time.Minute, Severity: SeverityWarning, Enabled: true},
		{Name: RuleZohoDailyWebhooks, Threshold: 900, Severity: SeverityWarning, Enabled: true},
		{Name: RuleZohoAuth, Threshold: 0, Severity: SeverityCritical, Enabled: true},
	}
}

// descriptions say in a sentence what each rule means when it fires; they
// become the notifications' description.
var descriptions = map[string]string{
	RuleQueueOldestPending:         "The oldest job waiting in the queue is older than the threshold: workers are stuck, stopped or too few.",
	RuleDeadLetters:                "Dead letters wait for an operator: jobs exhausted their retries; retry or discard them.",
	RuleSyncFailureRatio:           "Too large a share of sync attempts failed in the window, and at least the minimum number of them.",
	RuleAuthFailures:               "Many webhook requests were refused as unauthorized: a wrong key or secret, or a probe.",
	RuleSourceSilent:               "No webhook has been received for longer than the threshold.",
	RuleReconcileStale:             "No reconciliation run has succeeded for longer than the threshold.",
	RuleDrift:                      "A reconciliation run found more drift than the threshold (webhooks are being lost); the alert lasts while any of it is unresolved.",
	RuleReconcileNeedsConfirmation: "A reconciliation run waits for an operator to confirm its deletes: it would delete more than its threshold.",
	RuleZohoRateLimited:            "Zoho answered 429 (rate limited) in the window.",
	RuleZohoDailyWebhooks:          "Webhooks received today approach Zoho's cap of 1,000 a day.",
	RuleZohoAuth:                   "Refreshing the Zoho OAuth token fails: API calls (reconciliation) cannot run.",
}

// StaleAfter returns the age of the last successful reconciliation at
// which reconcile_stale breaches: Threshold seconds when set, else twice
// interval, the reconciliation interval in force.
func StaleAfter(r Rule, interval time.Duration) time.Duration {
	if r.Threshold > 0 {
		return time.Duration(r.Threshold * float64(time.Second))
	}
	return 2 * interval
}

// ruleFile is the YAML document: rules: [{name: ..., ...}].
type ruleFile struct {
	Rules []ruleEntry `yaml:"rules"`
}

// ruleEntry is one rule's overrides; an absent field (Kind 0) keeps the
// default. The
// values stay YAML nodes so that a bad one is reported with its rule and
// field.
type ruleEntry struct {
	Name      string    `yaml:"name"`
	Threshold yaml.Node `yaml:"threshold"`
	For       yaml.Node `yaml:"for"`
	Window    yaml.Node `yaml:"window"`
	MinCount  yaml.Node `yaml:"min_count"`
	Severity  yaml.Node `yaml:"severity"`
	Enabled   yaml.Node `yaml:"enabled"`
}

// parseThreshold accepts a number or a Go duration ("300s", read as
// seconds).
func parseThreshold(n *yaml.Node) (float64, error) {
	if n.Kind != yaml.ScalarNode {
		return 0, errors.New("must be a number or a duration such as 300s")
	}
	if f, err := strconv.ParseFloat(n.Value, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, errors.New("must be a finite number")
		}
		return f, nil
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, fmt.Errorf("%q is neither a number nor a duration such as 300s", n.Value)
	}
	return d.Seconds(), nil
}

// parseDuration accepts a Go duration ("60s", "5m"; "0").
func parseDuration(n *yaml.Node) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode {
		return 0, errors.New("must be a duration such as 60s")
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 60s", n.Value)
	}
	if d < 0 {
		return 0, errors.New("must be >= 0")
	}
	return d, nil
}

// LoadRules reads a rules file and returns [DefaultRules] with the file's
// values applied to the rules it names, in DefaultRules' order. The file
// is YAML:
//
//	rules:
//	  - name: queue_oldest_pending
//	    threshold: 300s   # a number, or a Go duration read as seconds
//	    for: 60s
//	    window: 5m
//	    min_count: 20
//	    severity: warning # info, warning or critical
//	    enabled: true
//
// Every field but name is optional. An unknown rule or field, a rule named
// twice, or a bad value is an error naming the rule and the field. An
// empty file gives the defaults.
func LoadRules(r io.Reader) ([]Rule, error) {
	var f ruleFile
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("alert: rules file: %w", err)
	}
	rules := DefaultRules()
	index := make(map[string]int, len(rules))
	for i, r := range rules {
		index[r.Name] = i
	}
	seen := make(map[string]bool)
	var errs []error
	for i, e := range f.Rules {
		if e.Name == "" {
			errs = append(errs, fmt.Errorf("alert: rules[%d]: name is missing", i))
			continue
		}
		at, ok := index[e.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("alert: rules[%d]: unknown rule %q (known: %s)", i, e.Name, knownRules()))
			continue
		}
		if seen[e.Name] {
			errs = append(errs, fmt.Errorf("alert: rule %s: named twice", e.Name))
			continue
		}
		seen[e.Name] = true
		if err := apply(&rules[at], e); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rules, nil
}

// apply sets the fields e gives on r and checks them.
func apply(r *Rule, e ruleEntry) error {
	var errs []error
	bad := func(field string, err error) {
		errs = append(errs, fmt.Errorf("alert: rule %s: %s: %w", r.Name, field, err))
	}
	if e.Threshold.Kind != 0 {
		t, err := parseThreshold(&e.Threshold)
		switch {
		case err != nil:
			bad("threshold", err)
		case t < 0:
			bad("threshold", errors.New("must be >= 0"))
		case r.Name == RuleSyncFailureRatio && t > 1:
			bad("threshold", errors.New("is a ratio and must be <= 1"))
		default:
			r.Threshold = t
		}
	}
	if e.For.Kind != 0 {
		if d, err := parseDuration(&e.For); err != nil {
			bad("for", err)
		} else {
			r.For = d
		}
	}
	if e.Window.Kind != 0 {
		if d, err := parseDuration(&e.Window); err != nil {
			bad("window", err)
		} else {
			r.Window = d
		}
	}
	if e.MinCount.Kind != 0 {
		var n int
		if err := e.MinCount.Decode(&n); err != nil || e.MinCount.Kind != yaml.ScalarNode {
			bad("min_count", fmt.Errorf("%q is not an integer", e.MinCount.Value))
		} else if n < 0 {
			bad("min_count", errors.New("must be >= 0"))
		} else {
			r.MinCount = n
		}
	}
	if e.Severity.Kind != 0 {
		switch v := e.Severity.Value; {
		case e.Severity.Kind == yaml.ScalarNode && (v == SeverityInfo || v == SeverityWarning || v == SeverityCritical):
			r.Severity = v
		default:
			bad("severity", fmt.Errorf("%q is not one of info, warning, critical", v))
		}
	}
	if e.Enabled.Kind != 0 {
		var b bool
		if err := e.Enabled.Decode(&b); err != nil || e.Enabled.Kind != yaml.ScalarNode {
			bad("enabled", fmt.Errorf("%q is not true or false", e.Enabled.Value))
		} else {
			r.Enabled = b
		}
	}
	return errors.Join(errs...)
}

func knownRules() string {
	var names []string
	for _, r := range DefaultRules() {
		names = append(names, r.Name)
	}
	return strings.Join(names, ", ")
}
