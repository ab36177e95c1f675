package tdsreconcile

import (
	"context"
	"time"

	"github.com/tdscore/tds/internal/zoho"
)

// Hooks are functions a [Reconciler] calls as it works, for metrics and
// alerting (packages tdsprom and tdsalert give such hooks). Nil fields are
// skipped; give several sets with [WithHooks] and every one is called.
// Hooks may be called concurrently, from the goroutine of a run (a run
// started with [Reconciler.Start] runs in the background); they must be
// quick and must not call the Reconciler.
type Hooks struct {
	// RunStarting is called when a run starts, or resumes, in this
	// process, before its first step, with the run as recorded then. It
	// returns the run's context, which must be derived from ctx: the
	// run's Zoho API calls, the events it ingests and its log lines use
	// it (package tdsotel starts a span here). The function it returns,
	// if not nil, is called once the run stops in this process: with nil
	// when it completed (or needs confirmation), else with the error that
	// failed, cancelled, paused or handed it over.
	RunStarting func(ctx context.Context, run SyncRun) (context.Context, func(err error))
	// RunEnded is called once a run has ended and its end is recorded:
	// completed, needs_confirmation, failed or cancelled (a run that pauses at the daily budget
	// has not ended, nor one handed over by Close). run is the record as
	// ended, as [Reconciler.GetRun] returns it: Status, Mode, DryRun,
	// StartedAt and FinishedAt set.
	RunEnded func(run SyncRun)
	// DriftFound is called for each drift item a run is about to deal
	// with (repair, or in a dry run confirm or skip).
	DriftFound func(entityType string, kind DriftKind)
	// DriftRepaired is called for each drift item repaired by an ingested
	// event, once the event and the item's record of it have committed
	// (the item resolves once the event is applied; see
	// [Reconciler.Settle]); for a held delete, when it is confirmed. kind
	// is the kind it was repaired as: a record missing from a listing that
	// turns out to exist but newer is repaired as [DriftStaleLocal].
	DriftRepaired func(entityType string, kind DriftKind)
	// APIResponse is called after every response of Zoho's API (not of its
	// token endpoint), retries included, with the endpoint ("GET /items",
	// or "GET /items/{id}" for a detail call, so that it is a bounded
	// label), the HTTP status (0 when no answer came) and how long the
	// call took.
	APIResponse func(endpoint string, status int, elapsed time.Duration)
	// TokenRefresh is called after every request for an access token,
	// with its error (nil when a token came).
	TokenRefresh func(err error)
}

// hookSet is every Hooks given.
type hookSet []Hooks

func (hs hookSet) runEnded(run SyncRun) {
	for _, h := range hs {
		if h.RunEnded != nil {
			h.RunEnded(run)
		}
	}
}

func (hs hookSet) driftFound(entityType string, kind DriftKind) {
	for _, h := range hs {
		if h.DriftFound != nil {
			h.DriftFound(entityType, kind)
		}
	}
}

func (hs hookSet) driftRepaired(entityType string, kind DriftKind) {
	for _, h := range hs {
		if h.DriftRepaired != nil {
			h.DriftRepaired(entityType, kind)
		}
	}
}

// runStarting calls the RunStarting hooks; end is never nil.
func (hs hookSet) runStarting(ctx context.Context, run SyncRun) (context.Context, func(error)) {
	var ends []func(error)
	for _, h := range hs {
		if h.RunStarting == nil {
			continue
		}
		var end func(error)
		if ctx, end = h.RunStarting(ctx, run); end != nil {
			ends = append(ends, end)
		}
	}
	return ctx, func(err error) {
		for i := len(ends) - 1; i >= 0; i-- {
			ends[i](err)
		}
	}
}

// zohoHooks are the client's hooks: request counts against the budget
// (before), the rest calls hs.
func (hs hookSet) zohoHooks(before func(ctx context.Context, endpoint string) error) zoho.Hooks {
	h := zoho.Hooks{Request: before}
	var resp []func(string, int, time.Duration)
	var refresh []func(error)
	for _, x := range hs {
		if x.APIResponse != nil {
			resp = append(resp, x.APIResponse)
		}
		if x.TokenRefresh != nil {
			refresh = append(refresh, x.TokenRefresh)
		}
	}
	if len(resp) > 0 {
		h.Response = func(endpoint string, status int, elapsed time.Duration) {
			for _, f := range resp {
				f(endpoint, status, elapsed)
			}
		}
	}
	if len(refresh) > 0 {
		h.Refresh = func(err error) {
			for _, f := range refresh {
				f(err)
			}
		}
	}
	return h
}
