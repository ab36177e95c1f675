package tdsreconcile

import (
	"encoding/json"
	"time"

	"github.com/tdscore/tds/internal/record"
	"github.com/tdscore/tds/internal/store"
)

// Mode is the kind of a reconciliation run.
type Mode string

// The reconciliation modes.
const (
	// Incremental reads each type's records newest first, down to the last
	// completed run's watermark (less the lookback, see [WithLookback]),
	// and repairs those tds has not applied.
	Incremental Mode = "incremental"
	// Full lists every record of every type and compares the whole list
	// with what tds has applied: the only run that finds records deleted
	// in the source, and changes of types without a version field.
	Full Mode = "full"
)

// RunStatus is the state of a reconciliation run.
type RunStatus string

// The run statuses.
const (
	// RunRunning: the run is going, or paused until [SyncRun.ResumesAt],
	// or waiting to be resumed after its process died.
	RunRunning RunStatus = store.RunRunning
	// RunCompleted: the run read and dealt with everything it covers.
	RunCompleted RunStatus = store.RunCompleted
	// RunFailed: the run stopped on an error, [SyncRun.Error].
	RunFailed RunStatus = store.RunFailed
	// RunCancelled: the run stopped at the cancel asked with
	// [Reconciler.Cancel].
	RunCancelled RunStatus = store.RunCancelled
	// RunNeedsConfirmation: the run would have deleted more records of a
	// type than its threshold (see [WithMaxDeletes]); it applied its other
	// repairs, and holds its deletes as drift, pending, until
	// [Reconciler.Confirm].
	RunNeedsConfirmation RunStatus = store.RunNeedsConfirmation
)

// DriftKind is the kind of a difference between the source and what tds
// has applied.
type DriftKind string

// The drift kinds.
const (
	// DriftMissingLocal: the source has a record tds never applied (or
	// applied as deleted).
	DriftMissingLocal DriftKind = store.DriftMissingLocal
	// DriftStaleLocal: the source's record is newer than the one applied.
	DriftStaleLocal DriftKind = store.DriftStaleLocal
	// DriftMissingRemote: tds applied a record the source no longer has
	// (confirmed with a detail request before a delete is ingested).
	DriftMissingRemote DriftKind = store.DriftMissingRemote
	// DriftChanged: for a type without a version field, the fields of the
	// source's list record differ from the same fields of what was
	// applied.
	DriftChanged DriftKind = store.DriftChanged
)

// Why a drift item is open ([Drift].Reason starts with one of these; some
// go on with the repair's own error).
const (
	// ReasonQueued: its repair is stored and queued, not applied yet.
	ReasonQueued = store.ReasonQueued
	// ReasonPendingDelete: a delete held for an operator's confirmation
	// (see [RunNeedsConfirmation]).
	ReasonPendingDelete = store.ReasonPendingDelete
	// ReasonInvalid: its repair failed validation and was stored invalid.
	ReasonInvalid = store.ReasonInvalid
	// ReasonSuperseded: a newer local version won over its repair.
	ReasonSuperseded = store.ReasonSuperseded
	// ReasonDeadLettered: its repair's job ran out of attempts.
	ReasonDeadLettered = store.ReasonDeadLettered
	// ReasonDiscarded: its repair's dead letter was discarded.
	ReasonDiscarded = store.ReasonDiscarded
	// ReasonDryRun: a dry run records drift and repairs nothing.
	ReasonDryRun = store.ReasonDryRun
	// ReasonChangedLocally: a held delete skipped at its confirmation,
	// the record having changed here after the sweep.
	ReasonChangedLocally = store.ReasonChangedLocally
	// ReasonNotIngestedAgain: the same repair (same content) of an
	// earlier run is still open; it is not ingested again while nothing
	// changed.
	ReasonNotIngestedAgain = store.ReasonNotIngestedAgain
)

// Request asks for a run.
type Request struct {
	// EntityTypes to reconcile; empty means every type with an API (for an
	// incremental run, every such type with a version field).
	EntityTypes []string `json:"entity_types"`
	// Mode is [Incremental] (the default) or [Full].
	Mode Mode `json:"mode"`
	// DryRun records the drift and repairs nothing.
	DryRun bool `json:"dry_run"`
}

// DriftCounts counts a run's drift by kind.
type DriftCounts struct {
	MissingLocal  int64 `json:"missing_local"`
	StaleLocal    int64 `json:"stale_local"`
	MissingRemote int64 `json:"missing_remote"`
	Changed       int64 `json:"changed"`
}

// SyncRun is a reconciliation run, as recorded in tds_sync_runs.
type SyncRun struct {
	ID          int64      `json:"id"`
	Source      string     `json:"source"`
	Mode        Mode       `json:"mode"`
	Status      RunStatus  `json:"status"`
	DryRun      bool       `json:"dry_run"`
	EntityTypes []string   `json:"entity_types"`
	StartedAt   time.Time  `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	// APICalls counts the API requests made, retries included; Pages the
	// list pages read.
	APICalls int64       `json:"api_calls"`
	Pages    int64       `json:"pages"`
	Counts   DriftCounts `json:"counts"`
	// Repaired counts the drifted records ingested again (repairs
	// queued; a drift item is resolved once its repair is applied).
	Repaired int64 `json:"repaired"`
	// Deletes counts the deletes ingested among them; PendingDeletes the
	// deletes held for confirmation (see [RunNeedsConfirmation]).
	Deletes        int64 `json:"deletes"`
	PendingDeletes int64 `json:"pending_deletes"`
	// ConfirmedBy and ConfirmedAt tell who confirmed the held deletes, and
	// when.
	ConfirmedBy string     `json:"confirmed_by,omitempty"`
	ConfirmedAt *time.Time `json:"confirmed_at,omitempty"`
	// Error says why a run failed, or why it is paused, or, for a
	// completed run, what it left for the next one (records missing from
	// the listing over the [ConfirmationShare] cap); APIError is the
	// source API's error body ({"code", "message"}) when a call failed.
	Error    string          `json:"error"`
	APIError json.RawMessage `json:"api_error,omitempty"`
	// ResumesAt is set while the run is paused, its status running: it
	// reached the daily budget, and the first start from then on (the
	// schedule's, or Start's or Run's) resumes it.
	ResumesAt *time.Time `json:"resumes_at,omitempty"`
	// CancelRequested tells that a cancel was asked of a running run.
	CancelRequested bool `json:"cancel_requested"`
}

// Drift is one difference a run found, and how it was repaired.
type Drift struct {
	ID            int64      `json:"id"`
	RunID         int64      `json:"run_id"`
	EntityType    string     `json:"entity_type"`
	EntityID      string     `json:"entity_id"`
	Kind          DriftKind  `json:"kind"`
	LocalVersion  *time.Time `json:"local_version"`
	RemoteVersion *time.Time `json:"remote_version"`
	// Resolved tells that its repair was applied (synced);
	// InboxEventID is the event ingested to repair it (none in a dry run,
	// nor for a delete pending confirmation).
	Resolved     bool      `json:"resolved"`
	InboxEventID *int64    `json:"inbox_event_id,omitempty"`
	DetectedAt   time.Time `json:"detected_at"`
	// Reason says why it is open: the repair queued, stored invalid,
	// superseded by a newer local version, dead-lettered, not ingested
	// again (the same repair failed before), a dry run, or a delete
	// pending confirmation.
	Reason string `json:"reason,omitempty"`
	// PendingDelete marks a delete held for confirmation.
	PendingDelete bool `json:"pending_delete"`
}

// publicRun converts a stored run.
func publicRun(r *store.Run) *SyncRun {
	out := &SyncRun{ID: r.ID, Source: r.Source, Mode: Mode(r.Mode), Status: RunStatus(r.Status), DryRun: r.DryRun,
		StartedAt: r.StartedAt.UTC(), FinishedAt: record.UTCPtr(r.FinishedAt), APICalls: r.APICalls, Pages: r.Pages,
		Counts:   DriftCounts{MissingLocal: r.MissingLocal, StaleLocal: r.StaleLocal, MissingRemote: r.MissingRemote, Changed: r.Changed},
		Repaired: r.Repaired, Deletes: r.Deletes, PendingDeletes: r.PendingDeletes, ConfirmedAt: record.UTCPtr(r.ConfirmedAt),
		APIError: r.APIError, CancelRequested: r.CancelRequested, EntityTypes: []string{},
		ResumesAt: r.PausedUntil()}
	if r.Error != nil {
		out.Error = *r.Error
	}
	if r.ConfirmedBy != nil {
		out.ConfirmedBy = *r.ConfirmedBy
	}
	_ = json.Unmarshal(r.EntityTypes, &out.EntityTypes)
	if len(out.APIError) == 0 {
		out.APIError = nil
	}
	return out
}

// publicDrift converts a stored drift item.
func publicDrift(d *store.Drift) Drift {
	out := Drift{ID: d.ID, RunID: d.RunID, EntityType: d.EntityType, EntityID: d.EntityID, Kind: DriftKind(d.Kind),
		LocalVersion: record.UTCPtr(d.LocalVersion), RemoteVersion: record.UTCPtr(d.RemoteVersion), Resolved: d.Resolved,
		InboxEventID: d.InboxEventID, DetectedAt: d.DetectedAt.UTC(), PendingDelete: d.PendingDelete}
	if d.Reason != nil {
		out.Reason = *d.Reason
	}
	return out
}
