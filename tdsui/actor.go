package tdsui

import (
	"context"
	"log/slog"
	"net/http"
)

// The actor of a change is who made it, on its log line: the client
// address and the index of the admin token (its position among the
// [WithAdminToken] tokens, never the token), or the dashboard session's id.

// actorKey is the context key of a request's actor.
type actorKey struct{}

// withActor returns r carrying its actor's attributes, set by the guard
// that authenticated it.
func withActor(r *http.Request, attrs ...slog.Attr) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), actorKey{}, attrs))
}

// actor is the log attribute naming who made r: a group "actor" of what
// the guard recorded.
func actor(r *http.Request) slog.Attr {
	attrs, _ := r.Context().Value(actorKey{}).([]slog.Attr)
	return slog.Attr{Key: "actor", Value: slog.GroupValue(attrs...)}
}
