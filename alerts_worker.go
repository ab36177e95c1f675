package tds

import (
	"context"
	"time"
)

// alertTicks returns the ticks of the Worker's alert evaluations (none
// without [WithAlerter]) and a function stopping them.
func (w *Worker) alertTicks() (<-chan time.Time, func()) {
	a := w.cfg.alerting.alerter
	if a == nil {
		return nil, func() {}
	}
	t := time.NewTicker(a.interval)
	return t.C, t.Stop
}

// evaluateAlerts is one evaluation by the housekeeping leader.
func (w *Worker) evaluateAlerts(ctx context.Context) {
	a := w.cfg.alerting.alerter
	if a == nil {
		return
	}
	if r := w.cfg.reconciler; r != nil && a.reconciler() == nil {
		a.attach(r)
	}
	a.evaluateLogged(ctx)
}
