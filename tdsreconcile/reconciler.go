package tdsreconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/dberr"
	"github.com/tdscore/tds/internal/record"
	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/internal/zoho"
)

// Defaults of reconciliation.
const (
	// DefaultInterval is how often [Reconciler.Task] starts an incremental
	// run.
	DefaultInterval = 15 * time.Minute
	// DefaultFullInterval is how often it starts a full sweep.
	DefaultFullInterval = 7 * 24 * time.Hour
	// DefaultLookback is how far before its watermark an incremental run
	// keeps reading: clock skew and edits within the same second as the
	// watermark.
	DefaultLookback = 10 * time.Minute
	// DefaultRequestsPerMinute is the client-side limit of Zoho API calls
	// a minute, Zoho's own per organisation.
	DefaultRequestsPerMinute = 100
	// DefaultDailyBudget is how many Zoho API calls reconciliation may make
	// a day (UTC), across all processes; a run that reaches it pauses until
	// the next day.
	DefaultDailyBudget = 1000
	// DefaultRunLease is how long a run is held by its process without a
	// renewal; a run whose process died is resumed after it.
	DefaultRunLease = time.Minute
	// ConfirmationShare is the percentage of the daily budget one run may
	// spend confirming, with a detail call each, that records missing
	// from a full sweep's listing are gone (at least MinConfirmations,
	// never more than the budget). Those records came from webhooks, so
	// anyone holding a webhook key could otherwise spend the whole budget
	// on ids Zoho never had; what is over the cap stays unresolved drift,
	// found again by the next sweep. Without a budget there is no cap.
	ConfirmationShare = 10
	// MinConfirmations is the fewest confirmations a run may make, however
	// small the budget.
	MinConfirmations = 20
	// IncrementalShare is the percentage of the daily budget a full sweep
	// leaves to incremental runs: a sweep pauses when the day's calls reach
	// the rest, and incremental runs, which may run beside a sweep, spend
	// up to the whole budget. A sweep too big for one day (or one made to
	// pause by ids a webhook-key holder invented) so never stops the
	// incremental runs that catch what webhooks missed.
	IncrementalShare = 20
	// DefaultMaxDeletesPercent is the share, in percent, of a type's
	// applied records that a run may delete without an operator's
	// confirmation (see [WithMaxDeletes]); at least MinMaxDeletes. A wrong
	// organisation id, or a sandbox, lists none of the records: their
	// deletes then wait for a person.
	DefaultMaxDeletesPercent = 1
	// MinMaxDeletes is the fewest deletes of a type the default threshold
	// lets a run apply on its own.
	MinMaxDeletes = 10
)

// DefaultMaxDeletes is the default threshold of a type with applied
// records applied: DefaultMaxDeletesPercent of them, at least MinMaxDeletes.
func DefaultMaxDeletes(applied int64) int64 {
	return max(applied*DefaultMaxDeletesPercent/100, MinMaxDeletes)
}

// sentinel is an error value that also matches the error it wraps.
type sentinel struct {
	msg  string
	wrap error
}

func (e *sentinel) Error() string { return e.msg }
func (e *sentinel) Unwrap() error { return e.wrap }

var (
	// ErrRunInProgress refuses to start a run while another run of the
	// same source and mode runs, in any process, or is paused until the
	// next UTC day. An incremental run and a full sweep do not hold each
	// other off (see [IncrementalShare]), nor do runs of different sources
	// (organisations, see [WithSource]).
	ErrRunInProgress = errors.New("tdsreconcile: a reconciliation run of this source and mode is already running (or paused at the daily budget)")
	// ErrRunNotFound reports an unknown run id (or, for a cancel, a run
	// that is not running). It wraps [tds.ErrNotFound].
	ErrRunNotFound error = &sentinel{msg: "tdsreconcile: reconciliation run not found", wrap: tds.ErrNotFound}
	// ErrInvalidRequest refuses a reconciliation request that names an
	// unknown mode or entity type.
	ErrInvalidRequest = errors.New("tdsreconcile: invalid reconciliation request")
	// ErrBudgetExhausted pauses a run that would exceed the daily budget
	// of API calls (see [Reconciler.Run]).
	ErrBudgetExhausted = errors.New("tdsreconcile: the daily budget of Zoho API calls is spent")
	// ErrNotAwaitingConfirmation refuses to confirm a run whose status is
	// not [RunNeedsConfirmation]: confirmed already, or never held a
	// delete.
	ErrNotAwaitingConfirmation = errors.New("tdsreconcile: the run is not waiting for a confirmation")
	// errRunCancelled ends a run whose cancel was asked.
	errRunCancelled = errors.New("tdsreconcile: the run was cancelled")
)

// ZohoAPI is how a [Reconciler] reaches Zoho's REST API (OAuth 2.0
// refresh-token flow). The client secret and refresh token are kept in
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
	// [DefaultRequestsPerMinute]; negative means no limit.
	RequestsPerMinute int
	// DailyBudget is how many API calls runs may make per UTC day, counted
	// across processes in the ledger tds_sync_calls, retries included. A
	// run that reaches it pauses, and resumes at the next start after the
	// day has turned. Calls made but not yet saved (a run saves as it
	// goes) when a process is killed are not counted. Zero means
	// [DefaultDailyBudget]; negative means no budget.
	DailyBudget int
	// HTTPClient makes the calls. Nil means a client with a 30 s timeout.
	HTTPClient *http.Client
}

// Reconciler finds and repairs what the webhooks missed: it compares Zoho's
// records, read through its API, with what tds has applied (the
// tds_applied table, which the Worker keeps for any Syncer), and ingests
// each drifted record again through a [tds.Processor], so that validation,
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
	set    *settings
	lease  time.Duration
	api    ZohoAPI
	proc   *tds.Processor
	reg    *tds.Registry
	client *zoho.Client
	owner  string

	// runCtx is the parent of runs started in the background; Close
	// cancels it and waits for them.
	runCtx    context.Context
	stopRuns  context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	// sleep replaces the client's waits in tests.
	sleep func(ctx context.Context, d time.Duration) error
}

// New returns a Reconciler that reads Zoho through api and writes to db.
// It ingests its repairs through proc, which must write to db: they are
// validated, prioritised and received (on proc's clock) as proc does any
// event. It reconciles the entity types of proc's registry that have an
// API. The caller keeps proc, and closes it after the Reconciler.
func New(db *bun.DB, proc *tds.Processor, api ZohoAPI, opts ...Option) (*Reconciler, error) {
	var errs []error
	if db == nil {
		errs = append(errs, errors.New("tdsreconcile: New: db is nil"))
	}
	if proc == nil {
		errs = append(errs, errors.New("tdsreconcile: New: proc is nil"))
	}
	set, err := newSettings(opts)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	st, err := store.For(db)
	if err != nil {
		return nil, fmt.Errorf("tdsreconcile: New: %w", err)
	}
	r := &Reconciler{db: db, st: st, set: set, lease: DefaultRunLease, api: api, proc: proc, reg: proc.Registry(),
		owner: record.ProcessID()}
	if r.api.DailyBudget == 0 {
		r.api.DailyBudget = DefaultDailyBudget
	}
	zc := zoho.Config{
		ClientID: api.ClientID, ClientSecret: api.ClientSecret, RefreshToken: api.RefreshToken,
		OrganizationID: api.OrganizationID, DataCenter: api.DataCenter, Product: zoho.Product(api.Product),
		AccountsURL: api.AccountsURL, APIURL: api.APIURL, RequestsPerMinute: api.RequestsPerMinute,
		HTTPClient: api.HTTPClient, Now: set.now,
		Sleep: func(ctx context.Context, d time.Duration) error { return r.wait(ctx, d) },
		Hooks: set.hooks.zohoHooks(r.beforeRequest),
	}
	if zc.RequestsPerMinute == 0 {
		zc.RequestsPerMinute = DefaultRequestsPerMinute
	}
	if r.client, err = zoho.New(zc); err != nil {
		return nil, fmt.Errorf("tdsreconcile: New: %w", err)
	}
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

// Close stops the runs started in the background (each is handed over at
// once: the next start, in any process, resumes it where it stood) and
// waits for them. It closes neither db nor the Processor.
func (r *Reconciler) Close() error {
	r.closeOnce.Do(func() {
		r.stopRuns()
		r.wg.Wait()
	})
	return nil
}

// Source returns the source reconciled (see [WithSource]).
func (r *Reconciler) Source() string { return r.set.source }

// Schedule returns how often [Reconciler.Task] starts an incremental run and
// a full sweep, zero when that one is off (see [WithSchedule]).
func (r *Reconciler) Schedule() (incremental, full time.Duration) {
	return r.set.interval, r.set.fullInterval
}

// Start begins a run in the background and returns its id at once. When a
// run interrupted by its process's death, or paused until a time now past,
// is waiting to be resumed, Start resumes that one instead and returns its
// id. It fails with [ErrRunInProgress] while a run is going or paused.
func (r *Reconciler) Start(ctx context.Context, req Request) (int64, error) {
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
func (r *Reconciler) Run(ctx context.Context, req Request) (*SyncRun, error) {
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
	err := r.st.CancelRun(ctx, r.db, id, r.set.now())
	if errors.Is(err, store.ErrNoRows) {
		return ErrRunNotFound
	}
	return dberr.Wrap("cancelling a run", err)
}

// GetRun returns a run, or [ErrRunNotFound].
func (r *Reconciler) GetRun(ctx context.Context, id int64) (*SyncRun, error) {
	rec, err := r.st.GetRun(ctx, r.db, id)
	if errors.Is(err, store.ErrNoRows) {
		return nil, ErrRunNotFound
	}
	if err != nil {
		return nil, dberr.Wrap("reading a run", err)
	}
	return publicRun(rec), nil
}

// ListRuns lists the page of runs, newest first.
func (r *Reconciler) ListRuns(ctx context.Context, page tds.Page) ([]SyncRun, error) {
	rows, err := r.st.ListRuns(ctx, r.db, page.BeforeID, limitOf(page))
	if err != nil {
		return nil, dberr.Wrap("listing runs", err)
	}
	out := make([]SyncRun, len(rows))
	for i := range rows {
		out[i] = *publicRun(&rows[i])
	}
	return out, nil
}

// ListDrift lists the page of run id's drift items, newest first.
func (r *Reconciler) ListDrift(ctx context.Context, id int64, page tds.Page) ([]Drift, error) {
	rows, err := r.st.DriftPage(ctx, r.db, id, page.BeforeID, limitOf(page))
	if err != nil {
		return nil, dberr.Wrap("listing drift", err)
	}
	out := make([]Drift, len(rows))
	for i := range rows {
		out[i] = publicDrift(&rows[i])
	}
	return out, nil
}

// limitOf is the page's limit, tds.DefaultListLimit when it names none.
func limitOf(p tds.Page) int {
	if p.Limit <= 0 {
		return tds.DefaultListLimit
	}
	return p.Limit
}

// reconcilable returns the registered types a run covers: names, or every
// type with an API; a full sweep takes every one, an incremental run only
// those with a version field.
func (r *Reconciler) reconcilable(names []string, mode Mode) ([]tds.EntityType, error) {
	var out []tds.EntityType
	if len(names) == 0 {
		for _, t := range r.reg.Types() {
			if t.API != nil && (mode == Full || t.VersionField != "") {
				out = append(out, t)
			}
		}
		return out, nil
	}
	seen := map[string]bool{}
	for _, n := range names {
		t, ok := r.reg.Lookup(n)
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: unknown entity type %q", ErrInvalidRequest, n)
		case t.API == nil:
			return nil, fmt.Errorf("%w: entity type %q has no API to reconcile against", ErrInvalidRequest, n)
		case mode == Incremental && t.VersionField == "":
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
	now := r.set.now()
	rec, err := r.st.TakeOverRun(ctx, r.db, r.set.source, r.owner, now, now.Add(r.lease))
	switch {
	case errors.Is(err, store.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, dberr.Wrap("looking for a run to resume", err)
	}
	r.set.logger.Info("tdsreconcile: resuming a reconciliation run, paused or interrupted by its process's end", "run", rec.ID)
	run, err := r.newRunner(rec)
	if run != nil {
		run.resumed = true
	}
	return run, err
}

// begin resumes a paused or interrupted run, or records a new one.
func (r *Reconciler) begin(ctx context.Context, req Request) (*runner, error) {
	if run, err := r.resume(ctx); run != nil || err != nil {
		return run, err
	}
	now := r.set.now()
	until := now.Add(r.lease)
	if req.Mode == "" {
		req.Mode = Incremental
	}
	if req.Mode != Incremental && req.Mode != Full {
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
	rec := &store.Run{Source: r.set.source, Mode: string(req.Mode), EntityTypes: namesJSON, DryRun: req.DryRun,
		StartedAt: record.DBTime(now), LockedBy: &owner, LockedUntil: &until}
	if err := r.st.StartRun(ctx, r.db, rec); err != nil {
		if errors.Is(err, store.ErrRunRunning) {
			return nil, ErrRunInProgress
		}
		return nil, dberr.Wrap("starting a run", err)
	}
	return r.newRunner(rec)
}

// Task is the schedule as a leader task, for [tds.WithLeaderTask]: at
// each round it resumes a paused or interrupted run, due or not, or else
// starts in the background the run that is due (see [WithSchedule]), one
// at a time. Rounds come every [tds.DefaultHousekeepingInterval]; set the
// returned task's Interval to change that. Give the task to every Worker
// of the deployment: the one leading housekeeping runs it.
func (r *Reconciler) Task() tds.LeaderTask {
	return tds.LeaderTask{Name: "reconcile", Interval: tds.DefaultHousekeepingInterval, Run: r.schedule}
}

// schedule is one round of [Reconciler.Task]: it first brings the open
// drift up to date with its repairs' jobs.
func (r *Reconciler) schedule(ctx context.Context) error {
	if err := r.st.SettleDrift(ctx, r.db); err != nil {
		return dberr.Wrap("settling drift", err)
	}
	run, err := r.resume(ctx)
	if err != nil {
		return err
	}
	if run != nil {
		r.launch(run)
		return nil
	}
	now := r.set.now()
	for _, s := range []struct {
		mode     Mode
		interval time.Duration
	}{{Full, r.set.fullInterval}, {Incremental, r.set.interval}} {
		if s.interval <= 0 {
			continue
		}
		last, ok, err := r.st.LastRunStart(ctx, r.db, r.set.source, string(s.mode))
		if err != nil {
			return dberr.Wrap("reading the last reconciliation run", err)
		}
		if ok && now.Sub(last) < s.interval {
			continue
		}
		_, err = r.Start(ctx, Request{Mode: s.mode})
		switch {
		case err == nil:
			return nil // one start a round: the other waits for the next
		case errors.Is(err, ErrRunInProgress):
			continue // its mode's run is going or paused: the other mode may start
		default:
			return fmt.Errorf("tdsreconcile: starting a scheduled %s run: %w", s.mode, err)
		}
	}
	return nil
}

// beforeRequest counts every API request against the run making it (the
// one in ctx) and the day's budget.
func (r *Reconciler) beforeRequest(ctx context.Context, _ string) error {
	run, _ := ctx.Value(runnerKey{}).(*runner)
	if run == nil {
		return nil
	}
	return run.countCall(ctx)
}

// runnerKey is the context key of the runner making an API request: runs of
// both modes may go at once in one Reconciler.
type runnerKey struct{}

// Settle brings the open drift up to date with its repairs' jobs: an item
// is resolved once its repair was applied (synced); one whose repair was
// superseded by a newer local version or dead-lettered stays open with
// that reason. [Reconciler.Task] settles at each round, and every run
// before it repairs.
func (r *Reconciler) Settle(ctx context.Context) error {
	return dberr.Wrap("settling drift", r.st.SettleDrift(ctx, r.db))
}

// Confirmation is what [Reconciler.Confirm] did.
type Confirmation struct {
	RunID int64 `json:"run_id"`
	// Deleted counts the deletes ingested.
	Deleted int64 `json:"deleted"`
	// Skipped counts the held deletes not applied because the record
	// changed here after the sweep (a newer webhook arrived, or a newer
	// version was applied); their drift stays open, saying so.
	Skipped int64 `json:"skipped"`
	// AlreadyDeleted counts the held deletes of records deleted here
	// since.
	AlreadyDeleted int64 `json:"already_deleted"`
}

// Confirm applies the deletes run id held for confirmation (see
// [RunNeedsConfirmation]): exactly those, from its drift, without asking the
// source again; a record that changed here after the sweep is skipped.
// The run then ends completed, confirmed by actor (who asked, for the
// record and the log). The deletes, their drift and the run's new status
// commit together, so that of two confirmations at once one applies them
// and the other fails with [ErrNotAwaitingConfirmation], as does any
// confirmation of a run not waiting for one; [ErrRunNotFound] for an
// unknown id.
func (r *Reconciler) Confirm(ctx context.Context, id int64, actor string) (*Confirmation, error) {
	out := &Confirmation{RunID: id}
	var repaired []string
	err := r.db.RunInTx(ctx, r.st.TxOptions(), func(ctx context.Context, tx bun.Tx) error {
		*out, repaired = Confirmation{RunID: id}, nil
		rec, err := r.st.ConfirmRun(ctx, tx, id, actor, r.set.now())
		if err != nil {
			return err
		}
		var after int64
		for {
			items, err := r.st.ListDrift(ctx, tx, id, after, true, repairBatch)
			if err != nil {
				return err
			}
			if len(items) == 0 {
				break
			}
			for i := range items {
				d := &items[i]
				after = d.ID
				if !d.PendingDelete {
					continue
				}
				typ, err := r.confirmOne(ctx, tx, rec, d, out)
				if err != nil {
					return err
				}
				if typ != "" {
					repaired = append(repaired, typ)
				}
			}
		}
		msg := fmt.Sprintf("held deletes confirmed by %s: %d deleted, %d skipped (changed here after the sweep), %d already deleted here",
			actor, out.Deleted, out.Skipped, out.AlreadyDeleted)
		return r.st.RecountRun(ctx, tx, id, msg)
	})
	if errors.Is(err, store.ErrNoRows) {
		if _, gerr := r.GetRun(ctx, id); gerr != nil {
			return nil, gerr
		}
		return nil, ErrNotAwaitingConfirmation
	}
	if err != nil {
		return nil, dberr.Wrap("confirming a run's deletes", err)
	}
	for _, typ := range repaired {
		r.set.hooks.driftRepaired(typ, DriftMissingRemote)
	}
	r.set.logger.Info("tdsreconcile: held deletes confirmed", "run", id, "actor", actor, "deleted", out.Deleted,
		"skipped", out.Skipped, "already_deleted", out.AlreadyDeleted)
	return out, nil
}

// confirmOne applies one held delete in tx, or skips it, and counts it in
// out; it returns the entity type when it ingested a delete.
func (r *Reconciler) confirmOne(ctx context.Context, tx bun.Tx, run *store.Run, d *store.Drift, out *Confirmation) (string, error) {
	t, ok := r.reg.Lookup(d.EntityType)
	if !ok {
		out.Skipped++
		return "", r.st.RecordRepair(ctx, tx, d.ID, store.Repair{Kind: d.Kind,
			Reason: "delete skipped at confirmation: the entity type is no longer registered"})
	}
	changed, gone, err := r.st.LocalChange(ctx, tx, run.Source, d.EntityType, d.EntityID, d.DetectedAt)
	switch {
	case err != nil:
		return "", err
	case changed:
		out.Skipped++
		r.set.logger.Info("tdsreconcile: a held delete skipped: the record changed here after the sweep", "run", run.ID,
			"entity_type", d.EntityType, "entity_id", d.EntityID)
		return "", r.st.RecordRepair(ctx, tx, d.ID, store.Repair{Kind: d.Kind, Reason: store.ReasonChangedLocally})
	case gone:
		out.AlreadyDeleted++
		return "", r.st.RecordRepair(ctx, tx, d.ID, store.Repair{Kind: d.Kind, Resolved: true})
	}
	data, _ := json.Marshal(map[string]string{t.IDField: d.EntityID})
	hash, err := repairHash(tds.EventDelete, data)
	if err != nil {
		return "", err
	}
	if err := ingestRepairTx(ctx, tx, r, run.ID, run.Source, t, d, store.DriftMissingRemote, nil, tds.EventDelete, data, hash); err != nil {
		return "", err
	}
	out.Deleted++
	return t.Name, nil
}
