package tds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/internal/zoho"
)

// Defaults of reconciliation.
const (
	// DefaultReconcileInterval is how often the leading Worker starts an
	// incremental run.
	DefaultReconcileInterval = 15 * time.Minute
	// DefaultFullReconcileInterval is how often it starts a full sweep.
	DefaultFullReconcileInterval = 7 * 24 * time.Hour
	// DefaultReconcileLookback is how far before its watermark an
	// incremental run keeps reading: clock skew and edits within the
	// same second as the watermark.
	DefaultReconcileLookback = 10 * time.Minute
	// DefaultZohoRequestsPerMinute is the client-side limit of Zoho API
	// calls a minute, Zoho's own per organisation.
	DefaultZohoRequestsPerMinute = 100
	// DefaultZohoDailyBudget is how many Zoho API calls reconciliation may
	// make a day (UTC), across all processes; a run that reaches it pauses
	// until the next day.
	DefaultZohoDailyBudget = 1000
	// DefaultRunLease is how long a run is held by its process without a
	// renewal; a run whose process died is resumed after it.
	DefaultRunLease = time.Minute
)

// ReconcileMode is the kind of a reconciliation run.
type ReconcileMode string

// The reconciliation modes.
const (
	// ReconcileIncremental reads each type's records newest first, down
	// to the last completed run's watermark (less the lookback), and
	// repairs those tds has not applied.
	ReconcileIncremental ReconcileMode = "incremental"
	// ReconcileFull lists every record of every type and compares the
	// whole list with what tds has applied: the only run that finds
	// records deleted in the source, and changes of types without a
	// version field.
	ReconcileFull ReconcileMode = "full"
)

// RunStatus is the state of a reconciliation run.
type RunStatus string

// The run statuses.
const (
	RunRunning   RunStatus = store.RunRunning
	RunCompleted RunStatus = store.RunCompleted
	RunFailed    RunStatus = store.RunFailed
	RunCancelled RunStatus = store.RunCancelled
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

var (
	// ErrRunInProgress refuses to start a run while another run of the
	// same source runs, in any process, or is paused until the next UTC
	// day. Runs of different sources (organisations, see [WithSource]) do
	// not hold each other off.
	ErrRunInProgress = errors.New("tds: a reconciliation run of this source is already running (or paused at the daily budget)")
	// ErrRunNotFound reports an unknown run id (or, for a cancel, a run
	// that is not running). It wraps [ErrNotFound].
	ErrRunNotFound = fmt.Errorf("%w: reconciliation run", ErrNotFound)
	// ErrInvalidRequest refuses a reconciliation request that names an
	// unknown mode or entity type.
	ErrInvalidRequest = errors.New("tds: invalid reconciliation request")
	// ErrBudgetExhausted pauses a run that would exceed the daily budget
	// of API calls (see [Reconciler.Run]).
	ErrBudgetExhausted = errors.New("tds: the daily budget of Zoho API calls is spent")
	// errRunCancelled ends a run whose cancel was asked.
	errRunCancelled = errors.New("tds: the run was cancelled")
)

// ZohoAPI is how tds reaches Zoho's REST API (OAuth 2.0 refresh-token
// flow) to reconcile. The client secret and refresh token are kept in
// memory only: never stored in the database, never logged.
type ZohoAPI struct {
	// ClientID, ClientSecret and RefreshToken are the OAuth client's and
	// the grant's, from Zoho's API console. Required.
	ClientID, ClientSecret, RefreshToken string
	// OrganizationID is sent as organization_id on every call. Required.
	OrganizationID string
	// DataCenter picks the accounts and API hosts: com (the default), eu,
	// in, com.au, jp, ca, com.cn or sa.
	DataCenter string
	// Product is "books" (the default, /books/v3) or "inventory"
	// (/inventory/v1).
	Product string
	// AccountsURL and APIURL override the data centre's hosts, such as
	// "https://accounts.zoho.eu"; an APIURL wins over the api_domain of
	// the token answer, which wins over the data centre's.
	AccountsURL, APIURL string
	// RequestsPerMinute limits API calls in this process. Zero means
	// [DefaultZohoRequestsPerMinute]; negative means no limit.
	RequestsPerMinute int
	// DailyBudget is how many API calls runs may make per UTC day, counted
	// across processes in the ledger tds_sync_calls, retries included. A
	// run that reaches it pauses, and resumes at the next start after the
	// day has turned. Calls made but not yet saved (a run saves as it
	// goes) when a process is killed are not counted. Zero means
	// [DefaultZohoDailyBudget]; negative means no budget.
	DailyBudget int
	// HTTPClient makes the calls. Nil means a client with a 30 s timeout.
	HTTPClient *http.Client
}

// ReconcileRequest asks for a run.
type ReconcileRequest struct {
	// EntityTypes to reconcile; empty means every type with an API.
	EntityTypes []string `json:"entity_types"`
	// Mode is incremental (the default) or full.
	Mode ReconcileMode `json:"mode"`
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
	ID          int64         `json:"id"`
	Source      string        `json:"source"`
	Mode        ReconcileMode `json:"mode"`
	Status      RunStatus     `json:"status"`
	DryRun      bool          `json:"dry_run"`
	EntityTypes []string      `json:"entity_types"`
	StartedAt   time.Time     `json:"started_at"`
	FinishedAt  *time.Time    `json:"finished_at"`
	// APICalls counts the API requests made, retries included; Pages the
	// list pages read.
	APICalls int64       `json:"api_calls"`
	Pages    int64       `json:"pages"`
	Counts   DriftCounts `json:"counts"`
	// Repaired counts the drifted records ingested again.
	Repaired int64 `json:"repaired"`
	// Error says why a run failed, or why it is paused; APIError is the
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
	// Resolved tells that the run dealt with it; InboxEventID is the event
	// it ingested to repair it (none in a dry run).
	Resolved     bool      `json:"resolved"`
	InboxEventID *int64    `json:"inbox_event_id,omitempty"`
	DetectedAt   time.Time `json:"detected_at"`
}

// reconcileSettings are read by NewReconciler.
type reconcileSettings struct {
	interval, fullInterval, lookback, lease time.Duration
	scheduleSet                             bool
}

// WithReconcileSchedule sets how often the leading Worker (see
// [WithReconciler]) starts an incremental run and a full sweep; zero turns
// that one off.
// Applies to [NewReconciler].
// Defaults to [DefaultReconcileInterval] and [DefaultFullReconcileInterval].
func WithReconcileSchedule(incremental, full time.Duration) Option {
	return newOption("WithReconcileSchedule", forReconciler, func(c *config) error {
		if incremental < 0 || full < 0 {
			return optErr("WithReconcileSchedule", "intervals must be >= 0, got %s and %s", incremental, full)
		}
		c.reconcile.interval, c.reconcile.fullInterval, c.reconcile.scheduleSet = incremental, full, true
		return nil
	})
}

// WithReconcileLookback sets how far before its watermark an incremental
// run keeps reading.
// Applies to [NewReconciler].
// Defaults to [DefaultReconcileLookback].
func WithReconcileLookback(d time.Duration) Option {
	return newOption("WithReconcileLookback", forReconciler, func(c *config) error {
		if d < 0 {
			return optErr("WithReconcileLookback", "must be >= 0, got %s", d)
		}
		c.reconcile.lookback = d
		return nil
	})
}

// WithReconciler gives a Handler the reconciliation routes of the admin API
// (POST /admin/reconcile, GET /admin/sync-runs, …), and a Worker the
// schedule: while it leads housekeeping it starts r's scheduled runs.
// Applies to [NewWorker] and [NewHandler].
// Defaults to none.
func WithReconciler(r *Reconciler) Option {
	return newOption("WithReconciler", forHandler|forWorker, func(c *config) error {
		if r == nil {
			return optErr("WithReconciler", "reconciler is nil")
		}
		c.reconciler = r
		return nil
	})
}

// Reconciler finds and repairs what the webhooks missed: it compares Zoho's
// records, read through its API, with what tds has applied (the
// tds_applied table, which the Worker keeps for any Syncer), and ingests
// each drifted record again through a [Processor], so that validation,
// per-entity order, the stale guard and exactly-once hold as for a
// webhook. Runs are recorded in tds_sync_runs and their drift in
// tds_sync_drift; one run per source at a time across all processes, and
// a run whose process died is resumed where it stood by the next start. A
// run that reaches the daily budget of API calls ([ZohoAPI.DailyBudget])
// pauses, and is resumed the same way once the UTC day has turned. Its
// methods are safe for concurrent use; call [Reconciler.Close] when done.
type Reconciler struct {
	db     *bun.DB
	st     store.Store
	cfg    *config
	rs     reconcileSettings
	api    ZohoAPI
	proc   *Processor
	client *zoho.Client
	owner  string

	// runCtx is the parent of runs started in the background; Close
	// cancels it and waits for them.
	runCtx    context.Context
	stopRuns  context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	// budgetMu guards the day's calls made before the current run.
	budgetMu sync.Mutex
	cur      *runner

	// sleep replaces the client's waits in tests.
	sleep func(ctx context.Context, d time.Duration) error
}

// NewReconciler returns a Reconciler that reads Zoho through api and writes
// to db. opts are the options that apply to NewReconciler; see [Option].
func NewReconciler(db *bun.DB, api ZohoAPI, opts ...Option) (*Reconciler, error) {
	if db == nil {
		return nil, errors.New("tds: NewReconciler: db is nil")
	}
	st, err := store.For(db)
	if err != nil {
		return nil, err
	}
	cfg, err := newConfig(forReconciler, opts)
	if err != nil {
		return nil, err
	}
	r := &Reconciler{db: db, st: st, cfg: cfg, rs: cfg.reconcile, api: api, owner: defaultWorkerID()}
	if !r.rs.scheduleSet {
		r.rs.interval, r.rs.fullInterval = DefaultReconcileInterval, DefaultFullReconcileInterval
	}
	if r.rs.lookback == 0 {
		r.rs.lookback = DefaultReconcileLookback
	}
	if r.rs.lease == 0 {
		r.rs.lease = DefaultRunLease
	}
	if r.api.DailyBudget == 0 {
		r.api.DailyBudget = DefaultZohoDailyBudget
	}
	zc := zoho.Config{
		ClientID: api.ClientID, ClientSecret: api.ClientSecret, RefreshToken: api.RefreshToken,
		OrganizationID: api.OrganizationID, DataCenter: api.DataCenter, Product: zoho.Product(api.Product),
		AccountsURL: api.AccountsURL, APIURL: api.APIURL, RequestsPerMinute: api.RequestsPerMinute,
		HTTPClient: api.HTTPClient, Now: cfg.now,
		Sleep: func(ctx context.Context, d time.Duration) error { return r.wait(ctx, d) },
		Hooks: cfg.metrics.zohoHooks(zoho.Hooks{Request: r.beforeRequest, Response: r.countResponse, Refresh: r.countRefresh}),
	}
	if zc.RequestsPerMinute == 0 {
		zc.RequestsPerMinute = DefaultZohoRequestsPerMinute
	}
	if r.client, err = zoho.New(zc); err != nil {
		return nil, fmt.Errorf("tds: NewReconciler: %w", err)
	}
	r.proc = newProcessor(db, st, cfg)
	cfg.alerting.alerter.attach(r)
	r.runCtx, r.stopRuns = context.WithCancel(context.Background())
	return r, nil
}

// wait is the client's wait between retries.
func (r *Reconciler) wait(ctx context.Context, d time.Duration) error {
	if r.sleep != nil {
		return r.sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// Close stops the runs started in the background (they end as failed, and
// resume at the next start) and waits for them. It does not close db.
func (r *Reconciler) Close() error {
	r.closeOnce.Do(func() {
		r.stopRuns()
		r.wg.Wait()
		_ = r.proc.Close()
	})
	return nil
}

// Processor returns the processor that ingests the repairs.
func (r *Reconciler) Processor() *Processor { return r.proc }

// Start begins a run in the background and returns its id at once. When a
// run interrupted by its process's death, or paused until a time now past,
// is waiting to be resumed, Start resumes that one instead and returns its
// id. It fails with [ErrRunInProgress] while a run is going or paused.
func (r *Reconciler) Start(ctx context.Context, req ReconcileRequest) (int64, error) {
	run, err := r.begin(ctx, req)
	if err != nil {
		return 0, err
	}
	r.launch(run)
	return run.rec.ID, nil
}

// launch executes run in the background.
func (r *Reconciler) launch(run *runner) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = run.execute(r.runCtx)
	}()
}

// Run runs a reconciliation to its end and returns its record: completed,
// failed (with its error), or cancelled. A run that reaches the daily
// budget pauses: Run returns its record, still running with
// [SyncRun.ResumesAt] set, and an error wrapping [ErrBudgetExhausted]. Like
// Start, it resumes an interrupted or paused run first when there is one,
// and fails with [ErrRunInProgress] while a run is going or paused.
func (r *Reconciler) Run(ctx context.Context, req ReconcileRequest) (*SyncRun, error) {
	run, err := r.begin(ctx, req)
	if err != nil {
		return nil, err
	}
	runErr := run.execute(ctx)
	rec, err := r.GetRun(context.WithoutCancel(ctx), run.rec.ID)
	if err != nil {
		return nil, err
	}
	if runErr != nil && rec.Status == RunRunning {
		return rec, runErr
	}
	return rec, nil
}

// Cancel asks a running run to stop; it ends as cancelled at its next step.
// A paused run, or one whose process died, is cancelled at once. It fails with
// [ErrRunNotFound] when id is not running.
func (r *Reconciler) Cancel(ctx context.Context, id int64) error {
	err := r.st.CancelRun(ctx, r.db, id, r.cfg.now())
	if errors.Is(err, store.ErrNoRows) {
		return ErrRunNotFound
	}
	return wrapDBErr("cancelling a run", err)
}

// GetRun returns a run, or [ErrRunNotFound].
func (r *Reconciler) GetRun(ctx context.Context, id int64) (*SyncRun, error) {
	rec, err := r.st.GetRun(ctx, r.db, id)
	if errors.Is(err, store.ErrNoRows) {
		return nil, ErrRunNotFound
	}
	if err != nil {
		return nil, wrapDBErr("reading a run", err)
	}
	return publicRun(rec), nil
}

// ListRuns lists up to limit runs, newest first, with ids below beforeID
// when it is positive (keyset paging).
func (r *Reconciler) ListRuns(ctx context.Context, beforeID int64, limit int) ([]SyncRun, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	rows, err := r.st.ListRuns(ctx, r.db, beforeID, limit)
	if err != nil {
		return nil, wrapDBErr("listing runs", err)
	}
	out := make([]SyncRun, len(rows))
	for i := range rows {
		out[i] = *publicRun(&rows[i])
	}
	return out, nil
}

// ListDrift lists up to limit drift items of run id, newest first, with
// ids below beforeID when it is positive (keyset paging).
func (r *Reconciler) ListDrift(ctx context.Context, id, beforeID int64, limit int) ([]Drift, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	rows, err := r.st.DriftPage(ctx, r.db, id, beforeID, limit)
	if err != nil {
		return nil, wrapDBErr("listing drift", err)
	}
	out := make([]Drift, len(rows))
	for i, d := range rows {
		out[i] = Drift{ID: d.ID, RunID: d.RunID, EntityType: d.EntityType, EntityID: d.EntityID, Kind: DriftKind(d.Kind),
			LocalVersion: utcPtr(d.LocalVersion), RemoteVersion: utcPtr(d.RemoteVersion), Resolved: d.Resolved,
			InboxEventID: d.InboxEventID, DetectedAt: d.DetectedAt.UTC()}
	}
	return out, nil
}

// reconcilable returns the registered types a run covers: names, or every
// type with an API; a full sweep takes every one, an incremental run only
// those with a version field.
func (r *Reconciler) reconcilable(names []string, mode ReconcileMode) ([]EntityType, error) {
	var out []EntityType
	if len(names) == 0 {
		for _, t := range r.cfg.registry.Types() {
			if t.API != nil && (mode == ReconcileFull || t.VersionField != "") {
				out = append(out, t)
			}
		}
		return out, nil
	}
	seen := map[string]bool{}
	for _, n := range names {
		t, ok := r.cfg.registry.Lookup(n)
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: unknown entity type %q", ErrInvalidRequest, n)
		case t.API == nil:
			return nil, fmt.Errorf("%w: entity type %q has no API to reconcile against", ErrInvalidRequest, n)
		case mode == ReconcileIncremental && t.VersionField == "":
			return nil, fmt.Errorf("%w: entity type %q has no version field; reconcile it with a full run", ErrInvalidRequest, n)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, t)
		}
	}
	return out, nil
}

// resume takes over source's run that is paused until a time now past, or
// whose process died; nil when there is none.
func (r *Reconciler) resume(ctx context.Context) (*runner, error) {
	now := r.cfg.now()
	rec, err := r.st.TakeOverRun(ctx, r.db, r.cfg.source, r.owner, now, now.Add(r.rs.lease))
	switch {
	case errors.Is(err, store.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, wrapDBErr("looking for a run to resume", err)
	}
	r.cfg.logger.Info("tds: resuming a reconciliation run, paused or interrupted by its process's end", "run", rec.ID)
	return r.newRunner(rec)
}

// begin resumes a paused or interrupted run, or records a new one.
func (r *Reconciler) begin(ctx context.Context, req ReconcileRequest) (*runner, error) {
	if run, err := r.resume(ctx); run != nil || err != nil {
		return run, err
	}
	now := r.cfg.now()
	until := now.Add(r.rs.lease)
	if req.Mode == "" {
		req.Mode = ReconcileIncremental
	}
	if req.Mode != ReconcileIncremental && req.Mode != ReconcileFull {
		return nil, fmt.Errorf("%w: mode must be incremental or full, got %q", ErrInvalidRequest, req.Mode)
	}
	types, err := r.reconcilable(req.EntityTypes, req.Mode)
	if err != nil {
		return nil, err
	}
	if len(types) == 0 {
		return nil, fmt.Errorf("%w: no entity type to reconcile", ErrInvalidRequest)
	}
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = t.Name
	}
	namesJSON, _ := json.Marshal(names)
	owner := r.owner
	rec := &store.Run{Source: r.cfg.source, Mode: string(req.Mode), EntityTypes: namesJSON, DryRun: req.DryRun,
		StartedAt: dbTime(now), LockedBy: &owner, LockedUntil: &until}
	if err := r.st.StartRun(ctx, r.db, rec); err != nil {
		if errors.Is(err, store.ErrRunRunning) {
			return nil, ErrRunInProgress
		}
		return nil, wrapDBErr("starting a run", err)
	}
	return r.newRunner(rec)
}

// schedule resumes a paused or interrupted run, due or not, or else starts
// the runs that are due; the leading Worker calls it.
func (r *Reconciler) schedule(ctx context.Context) {
	run, err := r.resume(ctx)
	if err != nil {
		r.cfg.logger.Error("tds: resuming a reconciliation run", "err", err)
		return
	}
	if run != nil {
		r.launch(run)
		return
	}
	now := r.cfg.now()
	for _, s := range []struct {
		mode     ReconcileMode
		interval time.Duration
	}{{ReconcileFull, r.rs.fullInterval}, {ReconcileIncremental, r.rs.interval}} {
		if s.interval <= 0 {
			continue
		}
		last, ok, err := r.st.LastRunStart(ctx, r.db, r.cfg.source, string(s.mode))
		if err != nil {
			r.cfg.logger.Error("tds: reading the last reconciliation run", "err", err)
			return
		}
		if ok && now.Sub(last) < s.interval {
			continue
		}
		_, err = r.Start(ctx, ReconcileRequest{Mode: s.mode})
		switch {
		case err == nil, errors.Is(err, ErrRunInProgress):
			return // one at a time: the other waits for the next tick
		default:
			r.cfg.logger.Error("tds: starting a scheduled reconciliation run", "mode", s.mode, "err", err)
			return
		}
	}
}

func publicRun(r *store.Run) *SyncRun {
	out := &SyncRun{ID: r.ID, Source: r.Source, Mode: ReconcileMode(r.Mode), Status: RunStatus(r.Status), DryRun: r.DryRun,
		StartedAt: r.StartedAt.UTC(), FinishedAt: utcPtr(r.FinishedAt), APICalls: r.APICalls, Pages: r.Pages,
		Counts:   DriftCounts{MissingLocal: r.MissingLocal, StaleLocal: r.StaleLocal, MissingRemote: r.MissingRemote, Changed: r.Changed},
		Repaired: r.Repaired, APIError: r.APIError, CancelRequested: r.CancelRequested, EntityTypes: []string{},
		ResumesAt: r.PausedUntil()}
	if r.Error != nil {
		out.Error = *r.Error
	}
	_ = json.Unmarshal(r.EntityTypes, &out.EntityTypes)
	if len(out.APIError) == 0 {
		out.APIError = nil
	}
	return out
}

// beforeRequest counts every API request against the run and the day's
// budget.
func (r *Reconciler) beforeRequest(ctx context.Context, _ string) error {
	r.budgetMu.Lock()
	run := r.cur
	r.budgetMu.Unlock()
	if run == nil {
		return nil
	}
	return run.countCall(ctx)
}
