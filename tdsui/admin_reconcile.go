package tdsui

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/httpx"
	"github.com/tdscore/tds/tdsreconcile"
)

// The reconciliation routes of the admin API; see [WithReconciler].

type reconcileResponse struct {
	Success bool  `json:"success"`
	RunID   int64 `json:"run_id"`
}

type runsResponse struct {
	Success      bool                   `json:"success"`
	Runs         []tdsreconcile.SyncRun `json:"runs"`
	NextBeforeID int64                  `json:"next_before_id,omitempty"`
}

type runResponse struct {
	Success      bool                  `json:"success"`
	Run          *tdsreconcile.SyncRun `json:"run"`
	Drift        []tdsreconcile.Drift  `json:"drift"`
	NextBeforeID int64                 `json:"next_before_id,omitempty"`
}

// reconcilerOf answers 501 when the Handler has no Reconciler.
func (h *Handler) reconcilerOf(w http.ResponseWriter) *tdsreconcile.Reconciler {
	r := h.reconciler
	if r == nil {
		httpx.WriteError(w, http.StatusNotImplemented, "reconciliation is not configured: no Zoho API credentials")
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
	var req tdsreconcile.Request
	if !readJSONBody(w, r, &req) {
		return
	}
	id, err := rc.Start(r.Context(), req)
	switch {
	case errors.Is(err, tdsreconcile.ErrRunInProgress):
		httpx.WriteError(w, http.StatusConflict, httpx.PublicError(err))
		return
	case errors.Is(err, tdsreconcile.ErrInvalidRequest):
		httpx.WriteError(w, http.StatusBadRequest, httpx.PublicError(err))
		return
	case err != nil:
		h.adminError(w, r, err)
		return
	}
	h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: reconciliation run started", slog.Int64("run_id", id),
		slog.String("mode", string(req.Mode)), slog.Bool("dry_run", req.DryRun), actor(r))
	httpx.WriteJSON(w, http.StatusAccepted, reconcileResponse{Success: true, RunID: id})
}

// serveListRuns lists runs newest first: GET /admin/sync-runs?before_id=&limit=.
func (h *Handler) serveListRuns(w http.ResponseWriter, r *http.Request) {
	rc := h.reconcilerOf(w)
	if rc == nil {
		return
	}
	page, ok := pageParams(w, r)
	if !ok {
		return
	}
	runs, err := rc.ListRuns(r.Context(), page)
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	resp := runsResponse{Success: true, Runs: runs}
	if len(runs) == page.Limit {
		resp.NextBeforeID = runs[len(runs)-1].ID
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
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
	page, ok := pageParams(w, r)
	if !ok {
		return
	}
	run, err := rc.GetRun(r.Context(), id)
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	drift, err := rc.ListDrift(r.Context(), id, page)
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	resp := runResponse{Success: true, Run: run, Drift: drift}
	if len(drift) == page.Limit {
		resp.NextBeforeID = drift[len(drift)-1].ID
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
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
	h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: reconciliation run cancel asked", slog.Int64("run_id", id), actor(r))
	httpx.WriteJSON(w, http.StatusOK, jobResponse{Success: true, Message: "cancel requested"})
}

// confirmResponse is the answer of POST /admin/sync-runs/{id}/confirm.
type confirmResponse struct {
	Success bool `json:"success"`
	*tdsreconcile.Confirmation
}

// serveConfirmRun applies the deletes a run held for confirmation:
// POST /admin/sync-runs/{id}/confirm. 409 when the run does not wait for
// one (confirmed already, or never held a delete).
func (h *Handler) serveConfirmRun(w http.ResponseWriter, r *http.Request) {
	rc := h.reconcilerOf(w)
	if rc == nil {
		return
	}
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	c, err := h.confirmRun(r, rc, id)
	switch {
	case errors.Is(err, tdsreconcile.ErrNotAwaitingConfirmation):
		httpx.WriteError(w, http.StatusConflict, httpx.PublicError(err))
		return
	case err != nil:
		h.adminError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, confirmResponse{Success: true, Confirmation: c})
}

// confirmRun confirms run id's held deletes for the admin API and the
// dashboard alike, and logs who did and what it did.
func (h *Handler) confirmRun(r *http.Request, rc *tdsreconcile.Reconciler, id int64) (*tdsreconcile.Confirmation, error) {
	c, err := rc.Confirm(r.Context(), id, actorString(r))
	if err != nil {
		return nil, err
	}
	h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: reconciliation deletes confirmed", slog.Int64("run_id", id),
		slog.Int64("deleted", c.Deleted), slog.Int64("skipped", c.Skipped), slog.Int64("already_deleted", c.AlreadyDeleted), actor(r))
	return c, nil
}

// actorString is r's actor in words, for a record kept in the database:
// "client=… token=…" or "session=…".
func actorString(r *http.Request) string {
	var b strings.Builder
	for _, a := range actor(r).Value.Group() {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a.String())
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

// pageParams reads a keyset page's before_id and limit, answering 400 when
// they are malformed.
func pageParams(w http.ResponseWriter, r *http.Request) (tds.Page, bool) {
	q := queryParams{v: r.URL.Query()}
	page := q.page()
	if q.err != nil {
		httpx.WriteError(w, http.StatusBadRequest, q.err.Error())
		return tds.Page{}, false
	}
	return page, true
}
