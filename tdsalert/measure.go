package tdsalert

import (
	"context"
	"strconv"
	"time"

	"github.com/tdscore/tds/internal/alert"
	"github.com/tdscore/tds/internal/dberr"
)

// defaultCountWindow is the window of a counter rule that sets none.
const defaultCountWindow = 15 * time.Minute

// samples collects the samples of one evaluation.
type samples []alert.Sample

func (s *samples) add(rule string, labels map[string]string, v float64, breaching bool) {
	*s = append(*s, alert.Sample{Rule: rule, Labels: labels, Value: v, Breaching: breaching})
}

// measurer measures one rule at now into out.
type measurer func(a *Alerter, ctx context.Context, r alert.Rule, now time.Time, out *samples) error

// measurers are the measures of the built-in rules.
var measurers = map[string]measurer{
	alert.RuleQueueOldestPending: (*Alerter).measureOldestPending,
	alert.RuleDeadLetters:        (*Alerter).measureDeadLetters,
	alert.RuleSyncFailureRatio:   (*Alerter).measureFailureRatio,
	alert.RuleAuthFailures:       counterMeasure(counterRefused, 5*time.Minute),
	alert.RuleZohoRateLimited:    counterMeasure(counterZoho429, defaultCountWindow),
	alert.RuleZohoAuth:           counterMeasure(counterRefreshFailure, defaultCountWindow),
	alert.RuleSourceSilent:       (*Alerter).measureSourceSilent,
	alert.RuleZohoDailyWebhooks:  (*Alerter).measureDailyWebhooks,
	alert.RuleReconcileStale:     (*Alerter).measureReconcileStale,
	alert.RuleDrift:              (*Alerter).measureDrift,

	alert.RuleReconcileNeedsConfirmation: (*Alerter).measureNeedsConfirmation,
}

// measure computes a sample of every enabled rule at now.
func (a *Alerter) measure(ctx context.Context, now time.Time) ([]alert.Sample, error) {
	var out samples
	for _, r := range a.rules {
		m := measurers[r.Name]
		if !r.Enabled || m == nil {
			continue
		}
		if err := m(a, ctx, r, now, &out); err != nil {
			return nil, dberr.Wrap("measuring alert rule "+r.Name, err)
		}
	}
	return out, nil
}

// measureOldestPending: the age of the oldest job waiting.
func (a *Alerter) measureOldestPending(ctx context.Context, r alert.Rule, now time.Time, out *samples) error {
	oldest, err := a.st.OldestWaiting(ctx, a.db, now)
	if err != nil {
		return err
	}
	age := 0.0
	if oldest != nil {
		age = now.Sub(*oldest).Seconds()
	}
	out.add(r.Name, nil, age, age > r.Threshold)
	return nil
}

// measureDeadLetters: the dead letters waiting for an operator, by entity
// type. Counting those that exist, not those recorded since the last
// evaluation, keeps the alert firing for as long as they wait.
func (a *Alerter) measureDeadLetters(ctx context.Context, r alert.Rule, _ time.Time, out *samples) error {
	dead, err := a.st.DeadLetters(ctx, a.db)
	if err != nil {
		return err
	}
	for typ, n := range dead {
		out.add(r.Name, map[string]string{"entity_type": typ}, float64(n), float64(n) > r.Threshold)
	}
	return nil
}

// measureFailureRatio: the share of failed sync attempts in the window.
// The minimum is on failures: with a minimum on all attempts, failures
// under it would fire once later successes (a recovery) lifted the count
// over it. With the minimum on failures, successes only ever lower the
// ratio, so no sample breaches because of them.
func (a *Alerter) measureFailureRatio(ctx context.Context, r alert.Rule, now time.Time, out *samples) error {
	o, err := a.st.SyncOutcomesSince(ctx, a.db, now.Add(-window(r, 5*time.Minute)))
	if err != nil {
		return err
	}
	total := o.Failed + o.Completed
	ratio := 0.0
	if total > 0 {
		ratio = float64(o.Failed) / float64(total)
	}
	out.add(r.Name, nil, ratio, o.Failed >= int64(r.MinCount) && o.Failed > 0 && ratio > r.Threshold)
	return nil
}

// counterMeasure measures one of the flushed counters over the rule's
// window (def when it sets none).
func counterMeasure(name string, def time.Duration) measurer {
	return func(a *Alerter, ctx context.Context, r alert.Rule, now time.Time, out *samples) error {
		n, err := a.st.SumCount(ctx, a.db, name, now.Add(-window(r, def)))
		if err != nil {
			return err
		}
		out.add(r.Name, nil, float64(n), float64(n) > r.Threshold)
		return nil
	}
}

// measureSourceSilent: the seconds since the source's last webhook; no
// sample before its first.
func (a *Alerter) measureSourceSilent(ctx context.Context, r alert.Rule, now time.Time, out *samples) error {
	last, err := a.st.LastReceived(ctx, a.db, a.source)
	if err != nil || last == nil {
		return err
	}
	v := now.Sub(*last).Seconds()
	out.add(r.Name, nil, v, v > r.Threshold)
	return nil
}

// measureDailyWebhooks: the source's webhooks received today (UTC).
func (a *Alerter) measureDailyWebhooks(ctx context.Context, r alert.Rule, now time.Time, out *samples) error {
	day := now.UTC().Truncate(24 * time.Hour)
	n, err := a.st.CountReceived(ctx, a.db, a.source, day)
	if err != nil {
		return err
	}
	out.add(r.Name, nil, float64(n), float64(n) > r.Threshold)
	return nil
}

// measureReconcileStale: the seconds since the source's last completed
// run (since this Alerter started, before any); no sample without a
// schedule to be stale against.
func (a *Alerter) measureReconcileStale(ctx context.Context, r alert.Rule, now time.Time, out *samples) error {
	last, err := a.st.LastCompletedRun(ctx, a.db, a.source)
	if err != nil || a.reconcileInterval <= 0 {
		return err
	}
	since := a.started
	if last != nil {
		since = last.FinishedAt
	}
	v := now.Sub(since).Seconds()
	out.add(r.Name, nil, v, v > alert.StaleAfter(r, a.reconcileInterval).Seconds())
	return nil
}

// measureDrift: a run of the source that finished since the last
// evaluation (one interval ago on this Alerter's first) and found more
// drift than the threshold breaches, with what it found as the value;
// afterwards the alert holds, with the unresolved drift as the value,
// while any drift of the last finished run of each mode is unresolved.
// So the alert lasts while drift waits for its repair (or its deletes
// for a confirmation), and ends once none does, not when a next run
// happens to finish.
func (a *Alerter) measureDrift(ctx context.Context, r alert.Rule, now time.Time, out *samples) error {
	runs, err := a.st.LatestRunDrift(ctx, a.db, a.source)
	if err != nil || len(runs) == 0 {
		return err
	}
	since := a.lastEval
	if since.IsZero() {
		since = now.Add(-a.interval)
	}
	var unresolved, found int64
	for _, d := range runs {
		unresolved += d.Unresolved
		if d.FinishedAt != nil && d.FinishedAt.After(since) && float64(d.Found) > r.Threshold {
			found = max(found, d.Found)
		}
	}
	if found > 0 {
		out.add(r.Name, nil, float64(found), true)
		return nil
	}
	*out = append(*out, alert.Sample{Rule: r.Name, Value: float64(unresolved), Holds: unresolved > 0})
	return nil
}

// measureNeedsConfirmation: one sample per run waiting for an operator
// to confirm its deletes, labelled with its id so that the alert links to
// it and ends when that run is confirmed or cancelled.
func (a *Alerter) measureNeedsConfirmation(ctx context.Context, r alert.Rule, _ time.Time, out *samples) error {
	ids, err := a.st.RunsNeedingConfirmation(ctx, a.db)
	if err != nil {
		return err
	}
	for _, id := range ids {
		out.add(r.Name, map[string]string{"run_id": strconv.FormatInt(id, 10)}, 1, 1 > r.Threshold)
	}
	return nil
}

func window(r alert.Rule, def time.Duration) time.Duration {
	if r.Window > 0 {
		return r.Window
	}
	return def
}
