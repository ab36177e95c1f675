package tdsui

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/tdscore/tds/internal/httpx"
	"github.com/tdscore/tds/tdsalert"
)

// The alert routes of the admin API; see [WithAlerter].

// alerterOf answers 501 when the Handler has no Alerter.
func (h *Handler) alerterOf(w http.ResponseWriter) *tdsalert.Alerter {
	a := h.alerter
	if a == nil {
		httpx.WriteError(w, http.StatusNotImplemented, "alerting is not configured")
	}
	return a
}

type alertsResponse struct {
	Success bool             `json:"success"`
	Alerts  []tdsalert.Alert `json:"alerts"`
}

type alertActionResponse struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
}

// serveListAlerts answers GET /admin/alerts?state=pending|firing|resolved.
func (h *Handler) serveListAlerts(w http.ResponseWriter, r *http.Request) {
	a := h.alerterOf(w)
	if a == nil {
		return
	}
	state := r.URL.Query().Get("state")
	switch state {
	case "", tdsalert.StatePending, tdsalert.StateFiring, tdsalert.StateResolved:
	default:
		httpx.WriteError(w, http.StatusBadRequest, "state must be pending, firing or resolved")
		return
	}
	alerts, err := a.Alerts(r.Context(), state)
	if err != nil {
		h.adminError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, alertsResponse{Success: true, Alerts: alerts})
}

// serveAckAlert answers POST /admin/alerts/{id}/ack.
func (h *Handler) serveAckAlert(w http.ResponseWriter, r *http.Request) {
	a := h.alerterOf(w)
	if a == nil {
		return
	}
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if err := a.Ack(r.Context(), id); err != nil {
		h.adminError(w, r, err)
		return
	}
	h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: alert acknowledged", slog.Int64("alert_id", id), actor(r))
	httpx.WriteJSON(w, http.StatusOK, alertActionResponse{Success: true, Message: "acknowledged"})
}

// serveSilenceAlert answers POST /admin/alerts/{id}/silence with
// {"until": RFC 3339}.
func (h *Handler) serveSilenceAlert(w http.ResponseWriter, r *http.Request) {
	a := h.alerterOf(w)
	if a == nil {
		return
	}
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var req struct {
		Until string `json:"until"`
	}
	if !readJSONBody(w, r, &req) {
		return
	}
	until, err := time.Parse(time.RFC3339, req.Until)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, `"until" must be an RFC 3339 time`)
		return
	}
	if !until.After(h.now()) {
		httpx.WriteError(w, http.StatusBadRequest, `"until" must be in the future`)
		return
	}
	if err := a.Silence(r.Context(), id, until); err != nil {
		h.adminError(w, r, err)
		return
	}
	h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: alert silenced", slog.Int64("alert_id", id),
		slog.Time("until", until), actor(r))
	httpx.WriteJSON(w, http.StatusOK, alertActionResponse{Success: true, Message: "silenced until " + until.UTC().Format(time.RFC3339)})
}
