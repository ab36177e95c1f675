package tds

import (
	"errors"
	"log/slog"
	"net/http"
)

// The reconciliation routes of the admin API; see [WithReconciler].

type reconcileResponse struct {
	Success bool  `json:"success"`
	RunID   int64 `json:"run_id"`
}

type runsResponse struct {
	Success      bool      `json:"success"`
	Runs         []SyncRun `json:"runs"`
	NextBeforeID int64     `json:"next_before_id,omitempty"`
}

type runResponse struct {
	Success      bool     `json:"success"`
	Run          *SyncRun `json:"run"`
	Drift        []Drift  `json:"drift"`
	NextBeforeID int64    `json:"next_before_id,omitempty"`
}

// reconcilerOf answers 501 when the Handler has no Reconciler.
func (h *Handler) reconcilerOf(w http.ResponseWriter) *Reconciler {
	r := h.cfg.reconciler
	if r == nil {
		writeError(w, http.StatusNotImplemented, "reconciliation is not configured: no Zoho API credentials")
	}
	return r
}

// serveReconcile starts a run: POST /admin/reconcile
// {"entity_types": [...], "mode": "incremental"|"full", "dry_run": bool}.
func (h *Handler) serveReconcile(w http.ResponseWriter, r *http.Request) {
	rc := h.reconcilerOf(w)
	if rc == nil {
		return
	}
	var req ReconcileRequest
	if !readJSONBody(w, r, &req) {
		return
	}
	id, err := rc.Start(r.Context(), req)
	switch {
	case errors.Is(err, ErrRunInProgress):
		writeError(w, http.StatusConflict, publicError(err))
		return
	case errors.Is(err, ErrInvalidRequest):
		writeError(w, http.StatusBadRequest, publicError(err))
		return
	case err != nil:
		h.adminError(w, r, err)
		return
	}
	h.cfg.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: reconciliation run started", slog.Int64("run_id", id),
		slog.String("mode", string(req.Mode)), slog.Bool("dry_run", req.DryRun))
	writeJSON(w, http.StatusAccepted, reconcileResponse{Success: true, RunID: id})
}

// serveListRuns lists runs newest first: GET /admin/sync-runs?before_id=&limit=.
func (h *Handler) serveListRuns(w http.ResponseWriter, r *http.Request) {
	rc := h.reconcilerOf(w)
	if rc == nil {
		return
	}
	before, limit, ok := pageParams(w, r)
	if !ok {
		return
	}
	runs, err := rc.ListRuns(r.Context(), before, limit)
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	resp := runsResponse{Success: true, Runs: runs}
	if len(runs) == limit {
		resp.NextBeforeID = runs[len(runs)-1].ID
	}
	writeJSON(w, http.StatusOK, resp)
}

// serveRun shows a run and a page of its drift, newest first:
// GET /admin/sync-runs/{id}?before_id=&limit=.
func (h *Handler) serveRun(w http.ResponseWriter, r *http.Request) {
	rc := h.reconcilerOf(w)
	if rc == nil {
		return
	}
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	before, limit, ok := pageParams(w, r)
	if !ok {
		return
	}
	run, err := rc.GetRun(r.Context(), id)
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	drift, err := rc.ListDrift(r.Context(), id, before, limit)
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	resp := runResponse{Success: true, Run: run, Drift: drift}
	if len(drift) == limit {
		resp.NextBeforeID = drift[len(drift)-1].ID
	}
	writeJSON(w, http.StatusOK, resp)
}

// serveCancelRun asks a run to stop: POST /admin/sync-runs/{id}/cancel.
func (h *Handler) serveCancelRun(w http.ResponseWriter, r *http.Request) {
	rc := h.reconcilerOf(w)
	if rc == nil {
		return
	}
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if err := rc.Cancel(r.Context(), id); err != nil {
		h.adminError(w, r, err)
		return
	}
	h.cfg.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: reconciliation run cancel asked", slog.Int64("run_id", id))
	writeJSON(w, http.StatusOK, jobResponse{Success: true, Message: "cancel requested"})
}

// pageParams reads a keyset page's before_id and limit, answering 400 when
// they are malformed.
func pageParams(w http.ResponseWriter, r *http.Request) (before int64, limit int, ok bool) {
	q := queryParams{v: r.URL.Query()}
	before, limit = q.id("before_id"), q.limit()
	if q.err != nil {
		writeError(w, http.StatusBadRequest, q.err.Error())
		return 0, 0, false
	}
	return before, limit, true
}
