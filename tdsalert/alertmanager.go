package tdsalert

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tdscore/tds/internal/alert"
)

// amState is what the evaluating process sent to the Alertmanagers
// ([WithAlertmanager]). It lives in memory: a process that takes over the
// evaluation sends every firing alert at its first evaluation, and
// Alertmanager de-duplicates. Only Evaluate, under evalMu, touches it.
type amState struct {
	pusher   *alert.Pusher
	resend   time.Duration
	validity time.Duration
	last     time.Time       // when the state was last pushed
	pushed   map[string]bool // the firing alerts of that push
	// resolved are the alerts resolved within validity, sent with every
	// push, as Prometheus keeps sending resolved alerts for a while: a
	// resolution whose delivery failed still arrives.
	resolved []alert.Alert
}

// newAMState returns the Alertmanagers' state, nil without any.
func (a *Alerter) newAMState(s *settings) (*amState, error) {
	if len(s.alertmanagers) == 0 {
		return nil, nil
	}
	am := &amState{
		resend:   s.amResend,
		validity: alert.AlertmanagerValidity * max(s.amResend, s.interval),
		pushed:   map[string]bool{},
	}
	notifiers := make(map[string]alert.Notifier, len(s.alertmanagers))
	for i, u := range s.alertmanagers {
		name := fmt.Sprintf("alertmanager %d (%s)", i+1, alert.RedactURL(u))
		notifiers[name] = alert.NewAlertmanager(alert.AlertmanagerConfig{
			URL: u, ExternalURL: s.externalURL, Validity: am.validity, Now: a.now,
		})
	}
	var err error
	am.pusher, err = alert.NewPusher(alert.PusherConfig{Timeout: s.timeout, Logger: a.log, OnResult: a.delivered}, notifiers)
	if err != nil {
		return nil, err
	}
	return am, nil
}

// push sends the alerts after an evaluation at now when one fired or
// resolved since the last push, or the last push is a resend interval old:
// every firing alert, and those resolved within the validity.
func (am *amState) push(next []alert.Alert, now time.Time) {
	if am == nil {
		return
	}
	var firing, fresh []alert.Alert
	pushed := make(map[string]bool, len(am.pushed))
	for _, al := range next {
		switch {
		case al.State == alert.StateFiring:
			k := amKey(al)
			pushed[k] = true
			firing = append(firing, al)
			if !am.pushed[k] {
				fresh = append(fresh, al)
			}
		case al.State == alert.StateResolved && al.ResolvedAt != nil && al.ResolvedAt.Equal(now):
			am.resolved = append(am.resolved, al)
			fresh = append(fresh, al)
		}
	}
	// A resolution is dropped once old, or once its rule and labels fire
	// again: Alertmanager keys alerts by their labels, so it would end
	// the new firing.
	refired := make(map[string]bool, len(firing))
	for _, al := range firing {
		refired[al.Fingerprint] = true
	}
	am.resolved = slices.DeleteFunc(am.resolved, func(r alert.Alert) bool {
		return now.Sub(*r.ResolvedAt) > am.validity || refired[r.Fingerprint]
	})
	if len(fresh) == 0 && !am.last.IsZero() && now.Sub(am.last) < am.resend {
		return
	}
	am.last, am.pushed = now, pushed
	am.pusher.Push(append(slices.Clone(am.resolved), firing...), fresh)
}

// amKey tells apart the firings of one rule and label set.
func amKey(a alert.Alert) string {
	return a.Fingerprint + "|" + a.StartedAt.String()
}

func (am *amState) close(ctx context.Context) error {
	if am == nil {
		return nil
	}
	return am.pusher.Close(ctx)
}
