package tdsui

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/ui"
	"github.com/tdscore/tds/tdsalert"
)

// The dashboard's alerts: the overview's firing alerts and the alerts
// page; see [WithAlerter].

// overviewAlerts is the overview's part on alerts.
type overviewAlerts struct {
	AlertsOn bool
	Firing   []tdsalert.Alert
}

// firingAlerts reads the firing alerts, if alerting is on.
func (d *dashboard) firingAlerts(ctx context.Context, data *overviewAlerts) error {
	a := d.h.alerter
	if a == nil {
		return nil
	}
	data.AlertsOn = true
	var err error
	data.Firing, err = a.Alerts(ctx, tdsalert.StateFiring)
	return err
}

type alertsData struct {
	On             bool
	Open, Resolved []tdsalert.Alert
}

func (d *dashboard) serveAlerts(w http.ResponseWriter, r *http.Request, p *ui.Page, _ ui.Session) {
	data := &alertsData{}
	p.Title, p.Nav, p.Data = "Alerts", "alerts", data
	if a := d.h.alerter; a != nil {
		data.On = true
		all, err := a.Alerts(r.Context(), "")
		if err != nil {
			d.fail(w, r, p, err)
			return
		}
		for _, al := range all {
			if al.State == tdsalert.StateResolved {
				data.Resolved = append(data.Resolved, al)
			} else {
				data.Open = append(data.Open, al)
			}
		}
	}
	d.render(w, r, http.StatusOK, "alerts", p)
}

// alertAction reads the alert id and the Alerter, answering when either
// is missing.
func (d *dashboard) alertAction(w http.ResponseWriter, r *http.Request, p *ui.Page) (*tdsalert.Alerter, int64, bool) {
	a := d.h.alerter
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	switch {
	case a == nil:
		d.refuse(w, r, p, http.StatusNotImplemented, "Alerting is off", "Alerting is not configured.")
		return nil, 0, false
	case err != nil:
		d.fail(w, r, p, fmt.Errorf("%w: alert %q", tds.ErrNotFound, r.PathValue("id")))
		return nil, 0, false
	}
	return a, id, true
}

func (d *dashboard) serveAck(w http.ResponseWriter, r *http.Request, p *ui.Page, _ ui.Session) {
	a, id, ok := d.alertAction(w, r, p)
	if !ok {
		return
	}
	if err := a.Ack(r.Context(), id); err != nil {
		d.fail(w, r, p, err)
		return
	}
	d.h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: alert acknowledged", slog.Int64("alert_id", id), actor(r))
	done(w, p.Base+"alerts", "acked", id)
}

// serveSilence silences an alert until a local time given with the
// browser's UTC offset in minutes (0 without the page's script: UTC).
func (d *dashboard) serveSilence(w http.ResponseWriter, r *http.Request, p *ui.Page, _ ui.Session) {
	a, id, ok := d.alertAction(w, r, p)
	if !ok {
		return
	}
	offset, err := strconv.Atoi(r.PostForm.Get("tz_offset"))
	if err != nil || offset < -14*60 || offset > 14*60 {
		offset = 0
	}
	until, err := time.ParseInLocation("2006-01-02T15:04", r.PostForm.Get("until"), time.FixedZone("", offset*60))
	switch {
	case err != nil:
		d.refuse(w, r, p, http.StatusBadRequest, "Not silenced", "Give the time until which to silence the alert.")
		return
	case !until.After(d.h.now()):
		d.refuse(w, r, p, http.StatusBadRequest, "Not silenced", "The time to silence the alert until must be in the future.")
		return
	}
	if err := a.Silence(r.Context(), id, until); err != nil {
		d.fail(w, r, p, err)
		return
	}
	d.h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: alert silenced", slog.Int64("alert_id", id),
		slog.Time("until", until), actor(r))
	done(w, p.Base+"alerts", "silenced", id)
}
