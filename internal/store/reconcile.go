package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// Run statuses, as stored.
const (
	RunRunning   = "running"
	RunCompleted = "completed"
	RunFailed    = "failed"
	RunCancelled = "cancelled"
	// RunNeedsConfirmation: the run ended holding deletes over its
	// threshold, waiting for an operator to confirm them.
	RunNeedsConfirmation = "needs_confirmation"
)

// Reasons a drift row is open, as stored (a repair's own error is appended
// to some).
const (
	ReasonQueued           = "repair queued, not yet applied"
	ReasonPendingDelete    = "delete pending confirmation"
	ReasonInvalid          = "repair stored invalid"
	ReasonSuperseded       = "repair superseded by a newer local version"
	ReasonDeadLettered     = "repair dead-lettered"
	ReasonDiscarded        = "repair dead-lettered, then discarded"
	ReasonDryRun           = "dry run: not repaired"
	ReasonChangedLocally   = "delete skipped at confirmation: the record changed here after the sweep"
	ReasonNotIngestedAgain = "not ingested again"
)

// Drift kinds, as stored.
const (
	DriftMissingLocal  = "missing_local"
	DriftStaleLocal    = "stale_local"
	DriftMissingRemote = "missing_remote"
	DriftChanged       = "changed"
)

// ErrRunRunning refuses to start a run while another run of its source and
// mode is running (or paused).
var ErrRunRunning = errors.New("tds: a reconciliation run of this source and mode is already running")

// Applied is a row of tds_applied: what tds has applied of one entity.
type Applied struct {
	bun.BaseModel `bun:"table:tds_applied"`

	Source       string          `bun:"source" json:"source"`
	EntityType   string          `bun:"entity_type" json:"entity_type"`
	EntityID     string          `bun:"source_entity_id" json:"entity_id"`
	Version      time.Time       `bun:"version" json:"-"`
	ContentHash  string          `bun:"content_hash" json:"hash"`
	Deleted      bool            `bun:"deleted" json:"deleted"`
	SyncedAt     time.Time       `bun:"synced_at" json:"-"`
	InboxEventID int64           `bun:"inbox_event_id" json:"event"`
	Data         json.RawMessage `bun:"data" json:"data,omitempty"`
}

// appliedParam is an Applied as it travels in a JSON parameter, its times
// written the dialect's way.
type appliedParam struct {
	*Applied
	Version  string `json:"version"`
	SyncedAt string `json:"synced_at"`
}

// Run is a row of tds_sync_runs: one reconciliation run. A running run
// with no holder (LockedBy nil) is paused until LockedUntil (see
// [Runs.PauseRun]).
type Run struct {
	bun.BaseModel `bun:"table:tds_sync_runs"`

	ID              int64           `bun:"id,pk,autoincrement"`
	Source          string          `bun:"source"`
	Mode            string          `bun:"mode"`
	EntityTypes     json.RawMessage `bun:"entity_types"`
	DryRun          bool            `bun:"dry_run"`
	Status          string          `bun:"status"`
	CancelRequested bool            `bun:"cancel_requested"`
	StartedAt       time.Time       `bun:"started_at"`
	FinishedAt      *time.Time      `bun:"finished_at"`
	LockedBy        *string         `bun:"locked_by"`
	LockedUntil     *time.Time      `bun:"locked_until"`
	Cursor          json.RawMessage `bun:"cursor"`
	APICalls        int64           `bun:"api_calls"`
	Pages           int64           `bun:"pages"`
	MissingLocal    int64           `bun:"missing_local"`
	StaleLocal      int64           `bun:"stale_local"`
	MissingRemote   int64           `bun:"missing_remote"`
	Changed         int64           `bun:"changed"`
	Repaired        int64           `bun:"repaired"`
	Error           *string         `bun:"error"`
	APIError        json.RawMessage `bun:"api_error"`
	Deletes         int64           `bun:"deletes"`
	PendingDeletes  int64           `bun:"pending_deletes"`
	ConfirmedBy     *string         `bun:"confirmed_by"`
	ConfirmedAt     *time.Time      `bun:"confirmed_at"`
}

// PausedUntil is when a paused run may be resumed; nil when r is not
// paused.
func (r *Run) PausedUntil() *time.Time {
	if r.Status != RunRunning || r.LockedBy != nil {
		return nil
	}
	return utcPtr(r.LockedUntil)
}

// Drift is a row of tds_sync_drift: a difference a run found.
type Drift struct {
	bun.BaseModel `bun:"table:tds_sync_drift"`

	ID            int64      `bun:"id,pk,autoincrement"`
	RunID         int64      `bun:"run_id"`
	EntityType    string     `bun:"entity_type"`
	EntityID      string     `bun:"source_entity_id"`
	Kind          string     `bun:"kind"`
	LocalVersion  *time.Time `bun:"local_version"`
	RemoteVersion *time.Time `bun:"remote_version"`
	Resolved      bool       `bun:"resolved"`
	InboxEventID  *int64     `bun:"inbox_event_id"`
	DetectedAt    time.Time  `bun:"detected_at"`
	// Reason says why an unresolved row is open (see the Reason
	// constants); PendingDelete marks a delete held for confirmation;
	// RepairHash is the content hash of the repair ingested.
	Reason        *string `bun:"reason"`
	PendingDelete bool    `bun:"pending_delete"`
	RepairHash    *string `bun:"repair_hash"`
}

// Repair is what became of a drift row's repair (see [Runs.RecordRepair]).
type Repair struct {
	Kind   string
	Remote *time.Time
	// EventID is the event ingested (nil: none); Hash its content hash.
	EventID *int64
	Hash    string
	// Resolved marks the row resolved; otherwise Reason says why it is open.
	Resolved bool
	Reason   string
}

// Remote is one record of the source's listing, staged by a full sweep.
type Remote struct {
	EntityID string
	// Version is the record's version; nil for types without one.
	Version *time.Time
	// FieldsHash and LocalHash, for records without a version, are the
	// hashes of the list record's fields and of the same fields of what
	// was applied ("" when nothing was).
	FieldsHash, LocalHash string
}

// remoteParam is a Remote as it travels in a JSON parameter.
type remoteParam struct {
	EntityID   string  `json:"entity_id"`
	Version    *string `json:"version"`
	FieldsHash *string `json:"fields_hash"`
	LocalHash  *string `json:"local_hash"`
}

// Progress is what a run saves as it goes.
type Progress struct {
	Cursor json.RawMessage
	// APICalls counts the run's calls over its life; Calls, per UTC day,
	// those it counted in this process (each with every call of the run
	// on that day, saved or not).
	APICalls int64
	Calls    []DayCalls
	Pages    int64
}

// DayCalls is a run's API calls on one UTC day.
type DayCalls struct {
	// Day is the day's start (UTC midnight); a time within it will do.
	Day   time.Time
	Calls int64
}

// Runs is the reconciliation part of [Store]: what has been applied, the
// runs, their drift, the staged listings and the watermarks.
type Runs interface {
	// RecordApplied records what the completed jobs applied: one row per
	// entity, kept unless the row holds a newer version. db is the
	// transaction that completes them.
	RecordApplied(ctx context.Context, db bun.IDB, rows []Applied) error
	// AppliedOf returns the applied rows of these entities.
	AppliedOf(ctx context.Context, db bun.IDB, source, entityType string, ids []string) ([]Applied, error)

	// A run's progress (SaveRun, PauseRun, ReleaseRun, FinishRun) is saved
	// with its calls per day into the budget's ledger, tds_sync_calls.

	// StartRun inserts r as running, held by r.LockedBy until
	// r.LockedUntil, and sets its id; ErrRunRunning when a run of r.Source
	// and r.Mode is running.
	StartRun(ctx context.Context, db bun.IDB, r *Run) error
	// TakeOverRun gives owner, until until, the oldest of source's running
	// runs whose hold expired before at (interrupted, or paused until before at), and
	// returns it, its pause's message cleared; ErrNoRows when there is
	// none. A run of another source is never taken: it reads another API.
	TakeOverRun(ctx context.Context, db bun.IDB, source, owner string, at, until time.Time) (*Run, error)
	// GetRun returns a run, or ErrNoRows.
	GetRun(ctx context.Context, db bun.IDB, id int64) (*Run, error)
	// ListRuns lists up to limit runs, newest first, with ids below
	// beforeID when it is positive.
	ListRuns(ctx context.Context, db bun.IDB, beforeID int64, limit int) ([]Run, error)
	// SaveRun saves owner's progress on run id, counts its drift, and
	// extends the hold until until. It reports whether a cancel was
	// asked; ErrLeaseLost when owner no longer holds the run.
	SaveRun(ctx context.Context, db bun.IDB, id int64, owner string, p Progress, until time.Time) (cancel bool, err error)
	// FinishRun ends owner's run id with status, counts its drift and
	// drops its staged listing; ErrLeaseLost when owner no longer holds it.
	FinishRun(ctx context.Context, db bun.IDB, id int64, owner string, p Progress, status, errMsg string, apiErr json.RawMessage, at time.Time) error
	// ReleaseRun saves owner's progress and gives the run up at once, for
	// the next start to resume.
	ReleaseRun(ctx context.Context, db bun.IDB, id int64, owner string, p Progress, at time.Time) error
	// PauseRun saves owner's progress and, unless a cancel was asked (it
	// then reports it and changes nothing else), gives the run up until
	// until, with why in its error: it stays running, holding off other
	// runs, without a holder. ErrLeaseLost when owner no longer holds it.
	PauseRun(ctx context.Context, db bun.IDB, id int64, owner string, p Progress, until time.Time, why string) (cancel bool, err error)
	// LastRunStart returns when source's last run of mode started.
	LastRunStart(ctx context.Context, db bun.IDB, source, mode string) (time.Time, bool, error)
	// CancelRun asks running run id to stop; one without a holder
	// (paused, or its hold expired before at) is cancelled at once.
	// ErrNoRows when id is not running.
	CancelRun(ctx context.Context, db bun.IDB, id int64, at time.Time) error
	// APICallsOn returns the API calls saved for source on the UTC day of
	// day, by all its runs, and by run runID among them.
	APICallsOn(ctx context.Context, db bun.IDB, source string, day time.Time, runID int64) (all, ofRun int64, err error)

	// StageRemote stages one page of a full sweep's listing.
	StageRemote(ctx context.Context, db bun.IDB, runID int64, entityType string, rows []Remote) error
	// CompareRemote records as drift of run runID every difference
	// between the staged listing of entityType and what source's
	// entities have applied, and returns how many it recorded.
	CompareRemote(ctx context.Context, db bun.IDB, runID int64, source, entityType string, at time.Time) (int64, error)
	// AddDrift records drift rows; an entity already recorded in the run
	// is skipped.
	AddDrift(ctx context.Context, db bun.IDB, rows []Drift) error
	// ListDrift lists up to limit drift rows of a run in id order, after
	// afterID; only the unresolved ones when unresolved is set.
	ListDrift(ctx context.Context, db bun.IDB, runID, afterID int64, unresolved bool, limit int) ([]Drift, error)
	// DriftPage lists up to limit drift rows of a run, newest first, with
	// ids below beforeID when it is positive.
	DriftPage(ctx context.Context, db bun.IDB, runID, beforeID int64, limit int) ([]Drift, error)
	// RecordRepair records what became of drift row id's repair, and
	// clears its pending delete.
	RecordRepair(ctx context.Context, db bun.IDB, id int64, r Repair) error
	// HoldDelete marks drift row id as a delete pending confirmation (kind
	// missing_remote).
	HoldDelete(ctx context.Context, db bun.IDB, id int64) error
	// PendingDeletes counts run runID's unresolved pending deletes per
	// entity type.
	PendingDeletes(ctx context.Context, db bun.IDB, runID int64) (map[string]int64, error)
	// AppliedCount counts source's applied, not deleted, entities of
	// entityType.
	AppliedCount(ctx context.Context, db bun.IDB, source, entityType string) (int64, error)
	// SameRepair returns the newest unresolved drift row of another run of
	// source, for the same entity, whose repair (an event) had hash;
	// ErrNoRows when there is none.
	SameRepair(ctx context.Context, db bun.IDB, source, entityType, entityID, hash string, runID int64) (*Drift, error)
	// SettleDrift brings the unresolved drift rows with a repair event up
	// to date with their jobs: resolved once synced, the reason set when
	// superseded, dead-lettered or discarded; and resolves the earlier
	// open rows of an entity whose later repair was applied.
	SettleDrift(ctx context.Context, db bun.IDB) error
	// CloseUnfound resolves the open drift of source's earlier runs, of
	// the entity types given, that full sweep runID did not find again,
	// and ends as completed the runs needing confirmation left with no
	// pending delete.
	CloseUnfound(ctx context.Context, db bun.IDB, runID int64, source string, entityTypes []string, at time.Time) error
	// ConfirmRun moves run id from needs_confirmation to completed,
	// confirmed by by at at, and returns it; ErrNoRows when it does not
	// need confirmation (or does not exist).
	ConfirmRun(ctx context.Context, db bun.IDB, id int64, by string, at time.Time) (*Run, error)
	// RecountRun counts run id's drift again and sets its message.
	RecountRun(ctx context.Context, db bun.IDB, id int64, msg string) error
	// LocalChange tells whether source's entity changed here after since:
	// a webhook received, or a version applied, after it; and whether it
	// is deleted here (or was never applied).
	LocalChange(ctx context.Context, db bun.IDB, source, entityType, entityID string, since time.Time) (changed, gone bool, err error)
	// DropDrift deletes drift row id: the difference turned out not to be
	// one.
	DropDrift(ctx context.Context, db bun.IDB, id int64) error

	// Watermarks returns source's watermark per entity type.
	Watermarks(ctx context.Context, db bun.IDB, source string) (map[string]time.Time, error)
	// SetWatermarks moves source's watermarks forward (never back).
	SetWatermarks(ctx context.Context, db bun.IDB, source string, marks map[string]time.Time, at time.Time) error
}

// reconcileSQL are the reconciliation statements that differ by dialect.
type reconcileSQL struct {
	// upsertApplied takes one JSON array of appliedParam.
	upsertApplied string
	// appliedOf takes source, entity type and a list of ids.
	appliedOf string
	// stageRemote takes the run id, the entity type and a JSON array of
	// remoteParam.
	stageRemote string
	// comparePlan, when set, runs first in CompareRemote's transaction.
	comparePlan string
	// jsonTime writes a time the way the dialect reads it from JSON.
	jsonTime func(time.Time) string
}

// appliedHead and appliedTail select, from the completed jobs q (a
// relation "done") and their events e, the tds_applied row of each synced
// job: the event's version and hash, whether it deleted, when (a parameter
// between the two parts, typed the dialect's way), and the record itself
// only when it carries no version (its version is when it arrived), for a
// sweep to compare its fields instead.
const (
	appliedHead = `q.source, q.entity_type, q.source_entity_id, e.source_modified_at, e.content_hash,
	q.event_type = 'delete', `
	appliedTail = `, e.id,
	CASE WHEN e.source_modified_at = e.received_at THEN e.payload END
	FROM done AS q JOIN tds_inbox_events AS e ON e.id = q.inbox_event_id
	WHERE q.outcome = 'synced'`
)

const appliedSet = `version = excluded.version, content_hash = excluded.content_hash,
	deleted = excluded.deleted, synced_at = excluded.synced_at, inbox_event_id = excluded.inbox_event_id,
	data = excluded.data`

var pgReconcile = reconcileSQL{
	upsertApplied: `INSERT INTO tds_applied AS a (source, entity_type, source_entity_id, version, content_hash,
	deleted, synced_at, inbox_event_id, data)
SELECT x.source, x.entity_type, x.entity_id, x.version, x.hash, x.deleted, x.synced_at, x.event, x.data
FROM jsonb_to_recordset(?::jsonb) AS x (source text, entity_type text, entity_id text, version timestamptz,
	hash text, deleted boolean, synced_at timestamptz, event bigint, data jsonb)
ON CONFLICT (source, entity_type, source_entity_id) DO UPDATE SET ` + appliedSet + `
WHERE a.version <= excluded.version`,
	appliedOf: `SELECT * FROM tds_applied WHERE source = ? AND entity_type = ? AND source_entity_id = ANY(?::text[])`,
	stageRemote: `INSERT INTO tds_sync_remote (run_id, entity_type, source_entity_id, version, fields_hash, local_hash)
SELECT ?, ?, x.entity_id, x.version, x.fields_hash, x.local_hash
FROM jsonb_to_recordset(?::jsonb) AS x (entity_id text, version timestamptz, fields_hash text, local_hash text)
ON CONFLICT DO NOTHING`,
	// Both comparisons read two whole sets, best joined by hashing; but
	// the staging table's statistics lag behind a sweep that just filled
	// it, and with them PostgreSQL nests a scan of the listing inside a
	// scan of what was applied: quadratic.
	comparePlan: `SELECT set_config('enable_nestloop', 'off', true)`,
	jsonTime:    func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
}

var sqReconcile = reconcileSQL{
	upsertApplied: `INSERT INTO tds_applied (source, entity_type, source_entity_id, version, content_hash,
	deleted, synced_at, inbox_event_id, data)
SELECT value ->> '$.source', value ->> '$.entity_type', value ->> '$.entity_id', value ->> '$.version',
	value ->> '$.hash', value ->> '$.deleted', value ->> '$.synced_at', value ->> '$.event', value -> '$.data'
FROM json_each(?) WHERE TRUE
ON CONFLICT (source, entity_type, source_entity_id) DO UPDATE SET ` + appliedSet + `
WHERE tds_applied.version <= excluded.version`,
	appliedOf: `SELECT * FROM tds_applied WHERE source = ? AND entity_type = ?
	AND source_entity_id IN (SELECT value FROM json_each(?))`,
	stageRemote: `INSERT INTO tds_sync_remote (run_id, entity_type, source_entity_id, version, fields_hash, local_hash)
SELECT ?, ?, value ->> '$.entity_id', value ->> '$.version', value ->> '$.fields_hash', value ->> '$.local_hash'
FROM json_each(?) WHERE TRUE
ON CONFLICT DO NOTHING`,
	jsonTime: sqTime,
}

// The reconciliation statements both dialects share.
const (
	startRunSQL = `INSERT INTO tds_sync_runs (source, mode, entity_types, dry_run, status, started_at,
	locked_by, locked_until, cursor)
VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?)
ON CONFLICT DO NOTHING
RETURNING id`

	// takeOverRunSQL takes one run (the oldest) of a source, as a source
	// may have a run of each mode waiting; the outer conditions are checked
	// again on the row, so two processes never both take it.
	takeOverRunSQL = `UPDATE tds_sync_runs SET locked_by = ?, locked_until = ?, error = NULL
WHERE id = (SELECT id FROM tds_sync_runs WHERE source = ? AND status = 'running' AND locked_until < ? ORDER BY id LIMIT 1)
	AND status = 'running' AND locked_until < ?
RETURNING *`

	listRunsSQL = `SELECT * FROM tds_sync_runs WHERE (? <= 0 OR id < ?) ORDER BY id DESC LIMIT ?`

	// driftCounts sets a run's counts from its drift rows; its one
	// parameter is the run id.
	driftCounts = `missing_local = (SELECT count(*) FROM tds_sync_drift WHERE run_id = tds_sync_runs.id AND kind = 'missing_local'),
	stale_local = (SELECT count(*) FROM tds_sync_drift WHERE run_id = tds_sync_runs.id AND kind = 'stale_local'),
	missing_remote = (SELECT count(*) FROM tds_sync_drift WHERE run_id = tds_sync_runs.id AND kind = 'missing_remote'),
	changed = (SELECT count(*) FROM tds_sync_drift WHERE run_id = tds_sync_runs.id AND kind = 'changed'),
	repaired = (SELECT count(*) FROM tds_sync_drift WHERE run_id = tds_sync_runs.id AND inbox_event_id IS NOT NULL),
	deletes = (SELECT count(*) FROM tds_sync_drift WHERE run_id = tds_sync_runs.id AND kind = 'missing_remote' AND inbox_event_id IS NOT NULL),
	pending_deletes = (SELECT count(*) FROM tds_sync_drift WHERE run_id = tds_sync_runs.id AND pending_delete AND NOT resolved)`

	saveRunSQL = `UPDATE tds_sync_runs SET cursor = ?, api_calls = ?, pages = ?, locked_until = ?, ` + driftCounts + `
WHERE id = ? AND status = 'running' AND locked_by = ?
RETURNING cancel_requested`

	finishRunSQL = `UPDATE tds_sync_runs SET cursor = ?, api_calls = ?, pages = ?, status = ?, error = ?,
	api_error = ?, finished_at = ?, locked_by = NULL, locked_until = NULL, ` + driftCounts + `
WHERE id = ? AND status = 'running' AND locked_by = ?`

	releaseRunSQL = `UPDATE tds_sync_runs SET cursor = ?, api_calls = ?, pages = ?, locked_until = ?
WHERE id = ? AND status = 'running' AND locked_by = ?`

	// pauseRunSQL follows saveRunSQL in PauseRun's transaction.
	pauseRunSQL = `UPDATE tds_sync_runs SET locked_by = NULL, locked_until = ?, error = ?
WHERE id = ? AND status = 'running' AND locked_by = ?`

	// recordCallsSQL sets a run's calls on a day: never down, so that
	// saves racing each other (the heartbeat's and a step's) leave the
	// highest count.
	recordCallsSQL = `INSERT INTO tds_sync_calls (source, day, run_id, calls)
VALUES ((SELECT source FROM tds_sync_runs WHERE id = ?), ?, ?, ?)
ON CONFLICT (source, day, run_id) DO UPDATE SET calls = excluded.calls
WHERE tds_sync_calls.calls < excluded.calls`

	apiCallsOnSQL = `SELECT COALESCE(SUM(calls), 0) AS all_calls,
	COALESCE(SUM(CASE WHEN run_id = ? THEN calls END), 0) AS run_calls
FROM tds_sync_calls WHERE source = ? AND day = ?`

	lastRunStartSQL = `SELECT max(started_at) FROM tds_sync_runs WHERE source = ? AND mode = ?`

	dropStagedSQL = `DELETE FROM tds_sync_remote WHERE run_id = ?`

	// cancelRunSQL cancels a run without a holder (paused, or its holder
	// gone) at once, and asks a held one to stop.
	cancelRunSQL = `UPDATE tds_sync_runs SET cancel_requested = TRUE,
	status = CASE WHEN ` + holderGone + ` THEN 'cancelled' ELSE status END,
	finished_at = CASE WHEN ` + holderGone + ` THEN ? ELSE finished_at END,
	locked_by = CASE WHEN ` + holderGone + ` THEN NULL ELSE locked_by END,
	locked_until = CASE WHEN ` + holderGone + ` THEN NULL ELSE locked_until END
WHERE id = ? AND status = 'running'`

	// holderGone tells a run that no process holds at the time given.
	holderGone = `(locked_by IS NULL OR locked_until < ?)`

	// dropCancelledStagedSQL drops the staged listing of a run cancelled
	// without a holder to drop it.
	dropCancelledStagedSQL = `DELETE FROM tds_sync_remote WHERE run_id = ?
	AND EXISTS (SELECT 1 FROM tds_sync_runs WHERE id = ? AND status = 'cancelled')`

	// compareStaleSQL records the staged records missing locally (never
	// applied, or applied as deleted), newer than what was applied, or,
	// without a version, with fields that differ from it.
	compareStaleSQL = `INSERT INTO tds_sync_drift (run_id, entity_type, source_entity_id, kind, local_version,
	remote_version, detected_at)
SELECT r.run_id, r.entity_type, r.source_entity_id,
	CASE WHEN a.source_entity_id IS NULL OR a.deleted THEN 'missing_local'
		WHEN r.version IS NULL THEN 'changed' ELSE 'stale_local' END,
	a.version, r.version, ?
FROM tds_sync_remote AS r LEFT JOIN tds_applied AS a
	ON a.source = ? AND a.entity_type = r.entity_type AND a.source_entity_id = r.source_entity_id
WHERE r.run_id = ? AND r.entity_type = ?
	AND (a.source_entity_id IS NULL OR a.deleted
		OR (r.version IS NOT NULL AND r.version > a.version)
		OR (r.version IS NULL AND r.fields_hash <> COALESCE(r.local_hash, '')))
ON CONFLICT DO NOTHING`

	// compareMissingSQL records the entities applied (and not deleted)
	// that the listing lacks; the run confirms each before it deletes.
	compareMissingSQL = `INSERT INTO tds_sync_drift (run_id, entity_type, source_entity_id, kind, local_version,
	remote_version, detected_at)
SELECT ?, a.entity_type, a.source_entity_id, 'missing_remote', a.version, NULL, ?
FROM tds_applied AS a
WHERE a.source = ? AND a.entity_type = ? AND NOT a.deleted
	AND NOT EXISTS (SELECT 1 FROM tds_sync_remote AS r
		WHERE r.run_id = ? AND r.entity_type = a.entity_type AND r.source_entity_id = a.source_entity_id)
ON CONFLICT DO NOTHING`

	listDriftSQL = `SELECT * FROM tds_sync_drift WHERE run_id = ? AND id > ? AND (? OR NOT resolved)
ORDER BY id LIMIT ?`

	driftPageSQL = `SELECT * FROM tds_sync_drift WHERE run_id = ? AND (? <= 0 OR id < ?) ORDER BY id DESC LIMIT ?`

	recordRepairSQL = `UPDATE tds_sync_drift SET resolved = ?, kind = ?, reason = ?, pending_delete = FALSE,
	remote_version = COALESCE(?, remote_version), inbox_event_id = ?, repair_hash = ? WHERE id = ?`

	holdDeleteSQL = `UPDATE tds_sync_drift SET pending_delete = TRUE, kind = 'missing_remote', reason = '` + ReasonPendingDelete + `'
WHERE id = ?`

	pendingDeletesSQL = `SELECT entity_type, count(*) AS n FROM tds_sync_drift
WHERE run_id = ? AND pending_delete AND NOT resolved GROUP BY entity_type`

	appliedCountSQL = `SELECT count(*) FROM tds_applied WHERE source = ? AND entity_type = ? AND NOT deleted`

	sameRepairSQL = `SELECT d.* FROM tds_sync_drift AS d JOIN tds_sync_runs AS r ON r.id = d.run_id
WHERE d.entity_type = ? AND d.source_entity_id = ? AND r.source = ? AND d.repair_hash = ?
	AND NOT d.resolved AND d.inbox_event_id IS NOT NULL AND d.run_id <> ?
ORDER BY d.id DESC LIMIT 1`

	// settleDriftSQL follows each open repair's job: resolved once it
	// synced; otherwise the reason tells where it stands. A job deleted
	// by retention leaves its row as it was.
	settleDriftSQL = `UPDATE tds_sync_drift SET
	resolved = EXISTS (SELECT 1 FROM tds_sync_queue AS q WHERE q.inbox_event_id = tds_sync_drift.inbox_event_id
		AND q.status = 'completed' AND q.outcome = 'synced'),
	reason = (SELECT CASE
		WHEN q.status = 'completed' AND q.outcome = 'synced' THEN NULL
		WHEN q.status = 'completed' AND q.outcome = 'superseded' THEN '` + ReasonSuperseded + `'
		WHEN q.status = 'completed' AND q.outcome = 'discarded' THEN '` + ReasonDiscarded + `'
		WHEN q.status = 'completed' THEN 'repair completed as ' || COALESCE(q.outcome, 'unknown')
		WHEN q.status = 'dead_letter' THEN '` + ReasonDeadLettered + `: ' || COALESCE(q.last_error, '')
		ELSE '` + ReasonQueued + `' END
		FROM tds_sync_queue AS q WHERE q.inbox_event_id = tds_sync_drift.inbox_event_id)
WHERE NOT resolved AND inbox_event_id IS NOT NULL
	AND EXISTS (SELECT 1 FROM tds_sync_queue AS q WHERE q.inbox_event_id = tds_sync_drift.inbox_event_id)`

	// settleEarlierSQL resolves the open rows of an entity that a later
	// row of the same source saw repaired.
	settleEarlierSQL = `UPDATE tds_sync_drift SET resolved = TRUE, pending_delete = FALSE,
	reason = 'resolved by a later repair'
WHERE NOT resolved AND EXISTS (SELECT 1 FROM tds_sync_drift AS n
	JOIN tds_sync_runs AS rn ON rn.id = n.run_id
	JOIN tds_sync_runs AS ro ON ro.id = tds_sync_drift.run_id
	WHERE n.entity_type = tds_sync_drift.entity_type AND n.source_entity_id = tds_sync_drift.source_entity_id
		AND n.id > tds_sync_drift.id AND n.resolved AND n.inbox_event_id IS NOT NULL AND rn.source = ro.source)`

	// closeUnfoundSQL takes the sweep's id (twice), its source and a JSON
	// array of its types.
	closeUnfoundSQL = `UPDATE tds_sync_drift SET resolved = TRUE, pending_delete = FALSE,
	reason = 'not found again by full sweep ' || CAST(? AS TEXT)
WHERE NOT resolved AND run_id < ? AND entity_type IN (%s)
	AND run_id IN (SELECT id FROM tds_sync_runs WHERE source = ?)
	AND NOT EXISTS (SELECT 1 FROM tds_sync_drift AS n WHERE n.run_id = ?
		AND n.entity_type = tds_sync_drift.entity_type AND n.source_entity_id = tds_sync_drift.source_entity_id)`

	// endConfirmedSQL ends the runs needing confirmation that a later
	// sweep left no pending delete.
	endConfirmedSQL = `UPDATE tds_sync_runs SET status = 'completed',
	error = 'its held deletes were no longer needed: full sweep ' || CAST(? AS TEXT) || ' found them in the source', ` + driftCounts + `
WHERE source = ? AND status = 'needs_confirmation'
	AND NOT EXISTS (SELECT 1 FROM tds_sync_drift WHERE run_id = tds_sync_runs.id AND pending_delete AND NOT resolved)`

	confirmRunSQL = `UPDATE tds_sync_runs SET status = 'completed', confirmed_by = ?, confirmed_at = ?
WHERE id = ? AND status = 'needs_confirmation'
RETURNING *`

	recountRunSQL = `UPDATE tds_sync_runs SET error = ?, ` + driftCounts + ` WHERE id = ?`

	localChangeSQL = `SELECT
	EXISTS (SELECT 1 FROM tds_inbox_events WHERE entity_type = ? AND source_entity_id = ? AND source = ?
		AND sync_run_id IS NULL AND received_at > ?)
	OR EXISTS (SELECT 1 FROM tds_applied WHERE source = ? AND entity_type = ? AND source_entity_id = ? AND synced_at > ?) AS changed,
	NOT EXISTS (SELECT 1 FROM tds_applied WHERE source = ? AND entity_type = ? AND source_entity_id = ? AND NOT deleted) AS gone`

	dropDriftSQL = `DELETE FROM tds_sync_drift WHERE id = ?`

	watermarksSQL = `SELECT entity_type, watermark FROM tds_sync_watermarks WHERE source = ?`

	setWatermarkSQL = `INSERT INTO tds_sync_watermarks AS w (source, entity_type, watermark, updated_at)
VALUES (?, ?, ?, ?)
ON CONFLICT (source, entity_type) DO UPDATE SET watermark = excluded.watermark, updated_at = excluded.updated_at
WHERE w.watermark < excluded.watermark`
)

// RecordApplied implements [Runs.RecordApplied].
func (c common) RecordApplied(ctx context.Context, db bun.IDB, rows []Applied) error {
	if len(rows) == 0 {
		return nil
	}
	// One row per entity: the last wins (a batch holds one job per
	// entity, but the statement must not touch a row twice).
	last := make(map[Entity]int, len(rows))
	for i, r := range rows {
		last[Entity{r.Source, r.EntityType, r.EntityID}] = i
	}
	rs := c.dialect.reconcile()
	params := make([]appliedParam, 0, len(last))
	for i := range rows {
		r := &rows[i]
		if last[Entity{r.Source, r.EntityType, r.EntityID}] != i {
			continue
		}
		params = append(params, appliedParam{Applied: r, Version: rs.jsonTime(r.Version), SyncedAt: rs.jsonTime(r.SyncedAt)})
	}
	_, err := db.ExecContext(ctx, rs.upsertApplied, jsonParam(params))
	return err
}

// AppliedOf implements [Runs.AppliedOf].
func (c common) AppliedOf(ctx context.Context, db bun.IDB, source, entityType string, ids []string) ([]Applied, error) {
	out := []Applied{}
	if len(ids) == 0 {
		return out, nil
	}
	err := db.NewRaw(c.dialect.reconcile().appliedOf, source, entityType, c.dialect.texts(ids)).Scan(ctx, &out)
	return out, err
}

// StartRun implements [Runs.StartRun].
func (c common) StartRun(ctx context.Context, db bun.IDB, r *Run) error {
	cursor := r.Cursor
	if len(cursor) == 0 {
		cursor = json.RawMessage("{}")
	}
	var id int64
	err := db.NewRaw(startRunSQL, r.Source, r.Mode, string(r.EntityTypes), r.DryRun, r.StartedAt.UTC(),
		r.LockedBy, utcPtr(r.LockedUntil), string(cursor)).Scan(ctx, &id)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrRunRunning
	}
	if err != nil {
		return err
	}
	r.ID, r.Status, r.Cursor = id, RunRunning, cursor
	return nil
}

// TakeOverRun implements [Runs.TakeOverRun].
func (c common) TakeOverRun(ctx context.Context, db bun.IDB, source, owner string, at, until time.Time) (*Run, error) {
	r := new(Run)
	if err := db.NewRaw(takeOverRunSQL, owner, until.UTC(), source, at.UTC(), at.UTC()).Scan(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

// GetRun implements [Runs.GetRun].
func (c common) GetRun(ctx context.Context, db bun.IDB, id int64) (*Run, error) {
	r := new(Run)
	if err := db.NewSelect().Model(r).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// ListRuns implements [Runs.ListRuns].
func (c common) ListRuns(ctx context.Context, db bun.IDB, beforeID int64, limit int) ([]Run, error) {
	out := []Run{}
	err := db.NewRaw(listRunsSQL, beforeID, beforeID, limit).Scan(ctx, &out)
	return out, err
}

// SaveRun implements [Runs.SaveRun].
func (c common) SaveRun(ctx context.Context, db bun.IDB, id int64, owner string, p Progress, until time.Time) (bool, error) {
	var cancel bool
	err := RunInTx(ctx, c, db, func(ctx context.Context, tx bun.IDB) error {
		var err error
		cancel, err = saveRun(ctx, tx, id, owner, p, until)
		return err
	})
	return cancel, err
}

// saveRun is SaveRun in transaction tx.
func saveRun(ctx context.Context, tx bun.IDB, id int64, owner string, p Progress, until time.Time) (bool, error) {
	var cancel bool
	err := tx.NewRaw(saveRunSQL, string(orEmptyObject(p.Cursor)), p.APICalls, p.Pages, until.UTC(), id, owner).Scan(ctx, &cancel)
	if errors.Is(err, sql.ErrNoRows) {
		return false, ErrLeaseLost
	}
	if err != nil {
		return false, err
	}
	return cancel, recordCalls(ctx, tx, id, p.Calls)
}

// recordCalls saves run id's calls per day into the budget's ledger; tx is
// the transaction that saves its progress.
func recordCalls(ctx context.Context, tx bun.IDB, id int64, calls []DayCalls) error {
	for _, d := range calls {
		if d.Calls <= 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, recordCallsSQL, id, ledgerDay(d.Day), id, d.Calls); err != nil {
			return err
		}
	}
	return nil
}

// ledgerDay is the UTC day of t as the ledger keys it.
func ledgerDay(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// FinishRun implements [Runs.FinishRun].
func (c common) FinishRun(ctx context.Context, db bun.IDB, id int64, owner string, p Progress, status, errMsg string,
	apiErr json.RawMessage, at time.Time) error {
	return RunInTx(ctx, c, db, func(ctx context.Context, tx bun.IDB) error {
		res, err := tx.ExecContext(ctx, finishRunSQL, string(orEmptyObject(p.Cursor)), p.APICalls, p.Pages, status,
			nullString(truncate(errMsg, MaxErrorLen)), nullJSON(apiErr), at.UTC(), id, owner)
		if err != nil {
			return err
		}
		if rowsAffected(res) == 0 {
			return ErrLeaseLost
		}
		if err := recordCalls(ctx, tx, id, p.Calls); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, dropStagedSQL, id)
		return err
	})
}

// ReleaseRun implements [Runs.ReleaseRun]. The hold ends just before at;
// ErrLeaseLost when owner no longer holds the run.
func (c common) ReleaseRun(ctx context.Context, db bun.IDB, id int64, owner string, p Progress, at time.Time) error {
	return RunInTx(ctx, c, db, func(ctx context.Context, tx bun.IDB) error {
		res, err := tx.ExecContext(ctx, releaseRunSQL, string(orEmptyObject(p.Cursor)), p.APICalls, p.Pages,
			at.UTC().Add(-time.Microsecond), id, owner)
		if err != nil {
			return err
		}
		if rowsAffected(res) == 0 {
			return ErrLeaseLost
		}
		return recordCalls(ctx, tx, id, p.Calls)
	})
}

// PauseRun implements [Runs.PauseRun].
func (c common) PauseRun(ctx context.Context, db bun.IDB, id int64, owner string, p Progress, until time.Time,
	why string) (bool, error) {
	var cancel bool
	err := RunInTx(ctx, c, db, func(ctx context.Context, tx bun.IDB) error {
		var err error
		if cancel, err = saveRun(ctx, tx, id, owner, p, until); err != nil || cancel {
			return err
		}
		// The save holds the row: no cancel can come between.
		_, err = tx.ExecContext(ctx, pauseRunSQL, until.UTC(), nullString(truncate(why, MaxErrorLen)), id, owner)
		return err
	})
	return cancel, err
}

// LastRunStart implements [Runs.LastRunStart].
func (c common) LastRunStart(ctx context.Context, db bun.IDB, source, mode string) (time.Time, bool, error) {
	var at *time.Time
	if err := db.NewRaw(lastRunStartSQL, source, mode).Scan(ctx, &at); err != nil {
		return time.Time{}, false, err
	}
	if at == nil {
		return time.Time{}, false, nil
	}
	return at.UTC(), true, nil
}

// CancelRun implements [Runs.CancelRun].
func (c common) CancelRun(ctx context.Context, db bun.IDB, id int64, at time.Time) error {
	at = at.UTC()
	res, err := db.ExecContext(ctx, cancelRunSQL, at, at, at, at, at, id)
	if err != nil {
		return err
	}
	if rowsAffected(res) == 0 {
		return ErrNoRows
	}
	// A run cancelled here has no holder to drop its staged listing.
	_, err = db.ExecContext(ctx, dropCancelledStagedSQL, id, id)
	return err
}

// APICallsOn implements [Runs.APICallsOn].
func (c common) APICallsOn(ctx context.Context, db bun.IDB, source string, day time.Time, runID int64) (int64, int64, error) {
	var n struct {
		All int64 `bun:"all_calls"`
		Run int64 `bun:"run_calls"`
	}
	err := db.NewRaw(apiCallsOnSQL, runID, source, ledgerDay(day)).Scan(ctx, &n)
	return n.All, n.Run, err
}

// StageRemote implements [Runs.StageRemote].
func (c common) StageRemote(ctx context.Context, db bun.IDB, runID int64, entityType string, rows []Remote) error {
	if len(rows) == 0 {
		return nil
	}
	rs := c.dialect.reconcile()
	params := make([]remoteParam, len(rows))
	for i, r := range rows {
		p := remoteParam{EntityID: r.EntityID, FieldsHash: nullString(r.FieldsHash), LocalHash: nullString(r.LocalHash)}
		if r.Version != nil {
			v := rs.jsonTime(*r.Version)
			p.Version = &v
		}
		params[i] = p
	}
	_, err := db.ExecContext(ctx, rs.stageRemote, runID, entityType, jsonParam(params))
	return err
}

// CompareRemote implements [Runs.CompareRemote].
func (c common) CompareRemote(ctx context.Context, db bun.IDB, runID int64, source, entityType string, at time.Time) (int64, error) {
	at = at.UTC()
	var n int64
	err := RunInTx(ctx, c, db, func(ctx context.Context, tx bun.IDB) error {
		if plan := c.dialect.reconcile().comparePlan; plan != "" {
			if _, err := tx.ExecContext(ctx, plan); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, compareStaleSQL, at, source, runID, entityType)
		if err != nil {
			return err
		}
		n = rowsAffected(res)
		res, err = tx.ExecContext(ctx, compareMissingSQL, runID, at, source, entityType, runID)
		if err != nil {
			return err
		}
		n += rowsAffected(res)
		return nil
	})
	return n, err
}

// AddDrift implements [Runs.AddDrift].
func (c common) AddDrift(ctx context.Context, db bun.IDB, rows []Drift) error {
	if len(rows) == 0 {
		return nil
	}
	for i := range rows {
		rows[i].DetectedAt = rows[i].DetectedAt.UTC()
		rows[i].LocalVersion, rows[i].RemoteVersion = utcPtr(rows[i].LocalVersion), utcPtr(rows[i].RemoteVersion)
	}
	_, err := db.NewInsert().Model(&rows).ExcludeColumn("id").On("CONFLICT DO NOTHING").Exec(ctx)
	return err
}

// ListDrift implements [Runs.ListDrift].
func (c common) ListDrift(ctx context.Context, db bun.IDB, runID, afterID int64, unresolved bool, limit int) ([]Drift, error) {
	out := []Drift{}
	err := db.NewRaw(listDriftSQL, runID, afterID, !unresolved, limit).Scan(ctx, &out)
	return out, err
}

// DriftPage implements [Runs.DriftPage].
func (c common) DriftPage(ctx context.Context, db bun.IDB, runID, beforeID int64, limit int) ([]Drift, error) {
	out := []Drift{}
	err := db.NewRaw(driftPageSQL, runID, beforeID, beforeID, limit).Scan(ctx, &out)
	return out, err
}

// RecordRepair implements [Runs.RecordRepair].
func (c common) RecordRepair(ctx context.Context, db bun.IDB, id int64, r Repair) error {
	reason := nullString(truncate(r.Reason, MaxErrorLen))
	if r.Resolved {
		reason = nil
	}
	_, err := db.ExecContext(ctx, recordRepairSQL, r.Resolved, r.Kind, reason, utcPtr(r.Remote), r.EventID,
		nullString(r.Hash), id)
	return err
}

// HoldDelete implements [Runs.HoldDelete].
func (c common) HoldDelete(ctx context.Context, db bun.IDB, id int64) error {
	_, err := db.ExecContext(ctx, holdDeleteSQL, id)
	return err
}

// PendingDeletes implements [Runs.PendingDeletes].
func (c common) PendingDeletes(ctx context.Context, db bun.IDB, runID int64) (map[string]int64, error) {
	var rows []struct {
		EntityType string `bun:"entity_type"`
		N          int64  `bun:"n"`
	}
	if err := db.NewRaw(pendingDeletesSQL, runID).Scan(ctx, &rows); err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.EntityType] = r.N
	}
	return out, nil
}

// AppliedCount implements [Runs.AppliedCount].
func (c common) AppliedCount(ctx context.Context, db bun.IDB, source, entityType string) (int64, error) {
	var n int64
	err := db.NewRaw(appliedCountSQL, source, entityType).Scan(ctx, &n)
	return n, err
}

// SameRepair implements [Runs.SameRepair].
func (c common) SameRepair(ctx context.Context, db bun.IDB, source, entityType, entityID, hash string, runID int64) (*Drift, error) {
	d := new(Drift)
	if err := db.NewRaw(sameRepairSQL, entityType, entityID, source, hash, runID).Scan(ctx, d); err != nil {
		return nil, err
	}
	return d, nil
}

// SettleDrift implements [Runs.SettleDrift].
func (c common) SettleDrift(ctx context.Context, db bun.IDB) error {
	return RunInTx(ctx, c, db, func(ctx context.Context, tx bun.IDB) error {
		if _, err := tx.ExecContext(ctx, settleDriftSQL); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, settleEarlierSQL)
		return err
	})
}

// CloseUnfound implements [Runs.CloseUnfound].
func (c common) CloseUnfound(ctx context.Context, db bun.IDB, runID int64, source string, entityTypes []string, _ time.Time) error {
	if len(entityTypes) == 0 {
		return nil
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(entityTypes)), ", ")
	args := []any{runID, runID}
	for _, t := range entityTypes {
		args = append(args, t)
	}
	args = append(args, source, runID)
	return RunInTx(ctx, c, db, func(ctx context.Context, tx bun.IDB) error {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(closeUnfoundSQL, marks), args...); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, endConfirmedSQL, runID, source)
		return err
	})
}

// ConfirmRun implements [Runs.ConfirmRun].
func (c common) ConfirmRun(ctx context.Context, db bun.IDB, id int64, by string, at time.Time) (*Run, error) {
	r := new(Run)
	if err := db.NewRaw(confirmRunSQL, by, at.UTC(), id).Scan(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

// RecountRun implements [Runs.RecountRun].
func (c common) RecountRun(ctx context.Context, db bun.IDB, id int64, msg string) error {
	_, err := db.ExecContext(ctx, recountRunSQL, nullString(truncate(msg, MaxErrorLen)), id)
	return err
}

// LocalChange implements [Runs.LocalChange].
func (c common) LocalChange(ctx context.Context, db bun.IDB, source, entityType, entityID string, since time.Time) (bool, bool, error) {
	since = since.UTC()
	var out struct {
		Changed bool `bun:"changed"`
		Gone    bool `bun:"gone"`
	}
	err := db.NewRaw(localChangeSQL, entityType, entityID, source, since, source, entityType, entityID, since,
		source, entityType, entityID).Scan(ctx, &out)
	return out.Changed, out.Gone, err
}

// DropDrift implements [Runs.DropDrift].
func (c common) DropDrift(ctx context.Context, db bun.IDB, id int64) error {
	_, err := db.ExecContext(ctx, dropDriftSQL, id)
	return err
}

// Watermarks implements [Runs.Watermarks].
func (c common) Watermarks(ctx context.Context, db bun.IDB, source string) (map[string]time.Time, error) {
	var rows []struct {
		EntityType string    `bun:"entity_type"`
		Watermark  time.Time `bun:"watermark"`
	}
	if err := db.NewRaw(watermarksSQL, source).Scan(ctx, &rows); err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(rows))
	for _, r := range rows {
		out[r.EntityType] = r.Watermark.UTC()
	}
	return out, nil
}

// SetWatermarks implements [Runs.SetWatermarks].
func (c common) SetWatermarks(ctx context.Context, db bun.IDB, source string, marks map[string]time.Time, at time.Time) error {
	return RunInTx(ctx, c, db, func(ctx context.Context, tx bun.IDB) error {
		for typ, mark := range marks {
			if _, err := tx.ExecContext(ctx, setWatermarkSQL, source, typ, mark.UTC(), at.UTC()); err != nil {
				return err
			}
		}
		return nil
	})
}

func orEmptyObject(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("{}")
	}
	return b
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
