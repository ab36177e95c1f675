package tdsui

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/httpx"
	"github.com/tdscore/tds/internal/ui"
	"github.com/tdscore/tds/tdsreconcile"
)

// The dashboard's reconciliation: the overview's last run, the runs and
// one run's drift, and starting a run; see [WithReconciler].

// overviewReconcile is the overview's part on reconciliation.
type overviewReconcile struct {
	ReconcileOn bool
	LastRun     *tdsreconcile.SyncRun
}

// lastRun reads the last run, if reconciliation is on.
func (d *dashboard) lastRun(ctx context.Context, data *overviewReconcile) error {
	rc := d.h.reconciler
	if rc == nil {
		return nil
	}
	data.ReconcileOn = true
	runs, err := rc.ListRuns(ctx, tds.Page{Limit: 1})
	if err != nil {
		return err
	}
	if len(runs) > 0 {
		data.LastRun = &runs[0]
	}
	return nil
}

type runsData struct {
	On   bool
	Runs []tdsreconcile.SyncRun
	Next int64
}

func (d *dashboard) serveRuns(w http.ResponseWriter, r *http.Request, p *ui.Page, _ ui.Session) {
	data := &runsData{}
	p.Title, p.Nav, p.Data = "Reconciliation", "reconcile", data
	if rc := d.h.reconciler; rc != nil {
		data.On = true
		q := queryParams{v: r.URL.Query()}
		before := q.id("before_id")
		runs, err := rc.ListRuns(r.Context(), tds.Page{Limit: dashboardPageSize, BeforeID: before})
		if err != nil {
			d.fail(w, r, p, err)
			return
		}
		data.Runs = runs
		if len(runs) == dashboardPageSize {
			data.Next = runs[len(runs)-1].ID
		}
	}
	d.render(w, r, http.StatusOK, "runs", p)
}

type runData struct {
	Run   *tdsreconcile.SyncRun
	Drift []tdsreconcile.Drift
	Next  int64
}

func (d *dashboard) serveRun(w http.ResponseWriter, r *http.Request, p *ui.Page, _ ui.Session) {
	p.Nav = "reconcile"
	rc := d.h.reconciler
	if rc == nil {
		d.refuse(w, r, p, http.StatusNotImplemented, "Reconciliation is off", "Reconciliation is not configured: no Zoho API credentials.")
		return
	}
	q := queryParams{v: r.URL.Query()}
	before := q.id("before_id")
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		d.fail(w, r, p, fmt.Errorf("%w: run %q", tds.ErrNotFound, r.PathValue("id")))
		return
	}
	data := &runData{}
	if data.Run, err = rc.GetRun(r.Context(), id); err != nil {
		d.fail(w, r, p, err)
		return
	}
	if data.Drift, err = rc.ListDrift(r.Context(), id, tds.Page{Limit: dashboardPageSize, BeforeID: before}); err != nil {
		d.fail(w, r, p, err)
		return
	}
	if len(data.Drift) == dashboardPageSize {
		data.Next = data.Drift[len(data.Drift)-1].ID
	}
	p.Title, p.Data = fmt.Sprintf("Run %d", id), data
	d.render(w, r, http.StatusOK, "run", p)
}

func (d *dashboard) serveStartRun(w http.ResponseWriter, r *http.Request, p *ui.Page, _ ui.Session) {
	rc := d.h.reconciler
	if rc == nil {
		d.refuse(w, r, p, http.StatusNotImplemented, "Reconciliation is off", "Reconciliation is not configured: no Zoho API credentials.")
		return
	}
	req := tdsreconcile.Request{Mode: tdsreconcile.Mode(r.PostForm.Get("mode")), DryRun: r.PostForm.Get("dry_run") == "true"}
	id, err := rc.Start(r.Context(), req)
	switch {
	case errors.Is(err, tdsreconcile.ErrRunInProgress), errors.Is(err, tdsreconcile.ErrInvalidRequest):
		d.refuse(w, r, p, http.StatusConflict, "Not started", httpx.PublicError(err)+".")
		return
	case err != nil:
		d.fail(w, r, p, err)
		return
	}
	d.h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: reconciliation run started", slog.Int64("run_id", id),
		slog.String("mode", string(req.Mode)), slog.Bool("dry_run", req.DryRun), actor(r))
	done(w, p.Base+"reconcile", "started", id)
}

// serveConfirmRun is the run page's "Apply the held deletes" button: the
// admin API's confirmation, through the same code path.
func (d *dashboard) serveConfirmRun(w http.ResponseWriter, r *http.Request, p *ui.Page, _ ui.Session) {
	p.Nav = "reconcile"
	rc := d.h.reconciler
	if rc == nil {
		d.refuse(w, r, p, http.StatusNotImplemented, "Reconciliation is off", "Reconciliation is not configured: no Zoho API credentials.")
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		d.fail(w, r, p, fmt.Errorf("%w: run %q", tds.ErrNotFound, r.PathValue("id")))
		return
	}
	c, err := d.h.confirmRun(r, rc, id)
	switch {
	case errors.Is(err, tdsreconcile.ErrNotAwaitingConfirmation):
		d.refuse(w, r, p, http.StatusConflict, "Not confirmed", httpx.PublicError(err)+".")
		return
	case err != nil:
		d.fail(w, r, p, err)
		return
	}
	done(w, fmt.Sprintf("%sreconcile/%d", p.Base, id), "confirmed", c.Deleted)
}
