package tdsreconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/canonical"
	"github.com/tdscore/tds/internal/dberr"
	"github.com/tdscore/tds/internal/record"
	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/internal/zoho"
)

// A run, step by step. Every step that reads the source is followed by a
// save of the cursor, so that a run interrupted anywhere resumes at the
// step after the last one saved; a step done twice does no harm (the
// staging and the drift ignore rows they hold, and a repair is ingested
// under a delivery id naming the run, so a second ingest is a duplicate).
//
//	full:        list each type page by page into tds_sync_remote  (phase list)
//	             compare the type's listing with tds_applied in SQL
//	incremental: read each type newest first down to the watermark,
//	             comparing page by page                             (phase read)
//	both:        repair each unresolved drift item: detail GET, then
//	             ingest the record (or a delete) through the Processor (phase repair);
//	             what the source listed first, then the records missing from
//	             the listing, at most ConfirmationShare of the budget of them
//
// An API call the daily budget refuses ends the step being done; the run
// then pauses (finish → pause) where it last saved, and the first start
// of the next UTC day resumes it there.

// Cursor phases.
const (
	phaseList   = "list"
	phaseRead   = "read"
	phaseRepair = "repair"
)

// listPageSize is the page size of list calls: Zoho's maximum.
const listPageSize = 200

// repairBatch is how many drift items a repair pass reads at once.
const repairBatch = 100

// runCursor is where a run stands; it is saved in tds_sync_runs.cursor.
type runCursor struct {
	// Type is the index, in the run's types, of the type being read.
	Type  int    `json:"type"`
	Phase string `json:"phase,omitempty"`
	// Page is the last page of Type read and saved.
	Page int `json:"page,omitempty"`
	// Marks are, for an incremental run, the newest version read per type:
	// its watermarks once it completes.
	Marks map[string]time.Time `json:"marks,omitempty"`
	// Confirmed counts the records missing from the listing whose absence
	// the run confirmed with a detail call (see [ConfirmationShare]).
	Confirmed int64 `json:"confirmed,omitempty"`
}

// runner runs one run.
type runner struct {
	r     *Reconciler
	rec   *store.Run
	types []tds.EntityType

	mu    sync.Mutex // guards what the heartbeat saves
	cur   runCursor
	calls int64 // over the run's life
	pages int64
	// The daily budget: the run's calls per UTC day counted by this
	// process (each with the run's calls saved on that day before), and
	// the calls of other runs on day, the day being counted.
	days   map[time.Time]int64
	day    time.Time
	others int64
	// note says what a completed run left for the next one; held, why
	// it holds its deletes for confirmation ("" when it does not).
	note, held string
	// resumed tells a run taken over from a paused or dead process.
	resumed bool
}

func (r *Reconciler) newRunner(rec *store.Run) (*runner, error) {
	run := &runner{r: r, rec: rec, calls: rec.APICalls, pages: rec.Pages, days: map[time.Time]int64{}}
	var names []string
	if err := json.Unmarshal(rec.EntityTypes, &names); err != nil {
		return nil, fmt.Errorf("tdsreconcile: run %d: reading its entity types: %w", rec.ID, err)
	}
	for _, n := range names {
		t, ok := r.reg.Lookup(n)
		if !ok || t.API == nil {
			return nil, r.abandon(rec, fmt.Errorf("entity type %q is no longer registered with an API", n))
		}
		run.types = append(run.types, t)
	}
	if len(rec.Cursor) > 0 {
		if err := json.Unmarshal(rec.Cursor, &run.cur); err != nil {
			return nil, r.abandon(rec, fmt.Errorf("reading its cursor: %w", err))
		}
	}
	if run.cur.Marks == nil {
		run.cur.Marks = map[string]time.Time{}
	}
	return run, nil
}

// abandon fails a run that cannot be resumed, and returns why.
func (r *Reconciler) abandon(rec *store.Run, why error) error {
	err := fmt.Errorf("tdsreconcile: run %d cannot run: %w", rec.ID, why)
	ctx := context.Background()
	if r.st.FinishRun(ctx, r.db, rec.ID, r.owner,
		store.Progress{Cursor: rec.Cursor, APICalls: rec.APICalls, Pages: rec.Pages},
		store.RunFailed, err.Error(), nil, r.set.now()) == nil {
		r.ended(ctx, rec.ID)
	}
	return err
}

// ended logs the end of run id, as recorded, and calls the RunEnded hooks
// with it.
func (r *Reconciler) ended(ctx context.Context, id int64) {
	run, err := r.GetRun(ctx, id)
	if err != nil {
		r.set.logger.Warn("tdsreconcile: reading an ended run", "run", id, "err", err)
		return
	}
	attrs := []any{"run", run.ID, "source", run.Source, "mode", run.Mode, "dry_run", run.DryRun,
		"types", run.EntityTypes, "status", run.Status,
		"missing_local", run.Counts.MissingLocal, "stale_local", run.Counts.StaleLocal,
		"missing_remote", run.Counts.MissingRemote, "changed", run.Counts.Changed,
		"repairs", run.Repaired, "deletes", run.Deletes, "pending_deletes", run.PendingDeletes,
		"api_calls", run.APICalls, "pages", run.Pages}
	if run.FinishedAt != nil {
		attrs = append(attrs, "duration", run.FinishedAt.Sub(run.StartedAt).Round(time.Millisecond))
	}
	if run.Error != "" {
		attrs = append(attrs, "message", run.Error)
	}
	r.set.logger.Info("tdsreconcile: reconciliation run ended", attrs...)
	r.set.hooks.runEnded(*run)
}

// execute runs to the end, or to the daily budget, and records how it
// ended or that it paused. It returns the error that ended or paused it, if
// any.
func (run *runner) execute(parent context.Context) (err error) {
	r := run.r
	parent, end := r.set.hooks.runStarting(parent, *publicRun(run.rec))
	defer func() { end(err) }()
	ctx, cancel := context.WithCancelCause(context.WithValue(parent, runnerKey{}, run))
	defer cancel(nil)
	r.set.logger.InfoContext(ctx, "tdsreconcile: reconciliation run started", "run", run.rec.ID, "source", run.rec.Source,
		"mode", run.rec.Mode, "dry_run", run.rec.DryRun, "types", run.typeNames(), "resumed", run.resumed,
		"api_calls", run.calls)
	if err := run.loadBudget(ctx, utcDay(r.set.now())); err != nil {
		return run.finish(err)
	}

	hbDone := make(chan struct{})
	hbStop := make(chan struct{})
	go func() {
		defer close(hbDone)
		run.heartbeat(ctx, cancel, hbStop)
	}()
	if run.rec.Mode == string(Full) {
		err = run.sweep(ctx)
	} else {
		err = run.incremental(ctx)
	}
	if err == nil {
		err = run.repair(ctx)
	}
	close(hbStop)
	<-hbDone
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	return run.finish(err)
}

// typeNames are the names of the run's types.
func (run *runner) typeNames() []string {
	out := make([]string, len(run.types))
	for i, t := range run.types {
		out[i] = t.Name
	}
	return out
}

// utcDay is the start of t's UTC day.
func utcDay(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

// loadBudget reads, from the ledger, the API calls saved on day: by other
// runs, and by this one (a run resumed the same day, or crossing midnight
// into a day it already counted calls on).
func (run *runner) loadBudget(ctx context.Context, day time.Time) error {
	all, mine, err := run.r.st.APICallsOn(ctx, run.r.db, run.rec.Source, day, run.rec.ID)
	if err != nil {
		return dberr.Wrap("reading the day's API calls", err)
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	run.day, run.others = day, all-mine
	run.days[day] = max(run.days[day], mine)
	return nil
}

// countCall counts one API request against the day's budget, refusing it
// with [ErrBudgetExhausted] when the budget is spent. The first call of a
// new UTC day reads that day's calls.
func (run *runner) countCall(ctx context.Context) error {
	day := utcDay(run.r.set.now())
	run.mu.Lock()
	turned := day != run.day
	run.mu.Unlock()
	if turned {
		if err := run.loadBudget(ctx, day); err != nil {
			return err
		}
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	if b := run.budget(); b > 0 && run.others+run.days[day] >= b {
		return ErrBudgetExhausted
	}
	run.calls++
	run.days[day]++
	return nil
}

// budget is the day's calls (of all the source's runs) at which this run
// stops: the whole daily budget for an incremental run, less
// [IncrementalShare] of it for a full sweep; 0 when there is no budget.
func (run *runner) budget() int64 {
	b := int64(run.r.api.DailyBudget)
	if b > 0 && run.rec.Mode == string(Full) {
		b -= b * IncrementalShare / 100
	}
	return b
}

// heartbeat saves the run's progress and renews its hold every third of
// its lease, and stops the run when a cancel was asked or the hold lost.
func (run *runner) heartbeat(ctx context.Context, cancel context.CancelCauseFunc, stop <-chan struct{}) {
	t := time.NewTicker(run.r.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			if err := run.save(ctx); err != nil && ctx.Err() == nil {
				if errors.Is(err, errRunCancelled) || errors.Is(err, store.ErrLeaseLost) {
					cancel(err)
					return
				}
				run.r.set.logger.Warn("tdsreconcile: saving a reconciliation run's progress", "run", run.rec.ID, "err", err)
			}
		}
	}
}

// progress is what the run saves now.
func (run *runner) progress() store.Progress {
	run.mu.Lock()
	defer run.mu.Unlock()
	cursor, _ := json.Marshal(run.cur)
	p := store.Progress{Cursor: cursor, APICalls: run.calls, Pages: run.pages}
	for day, n := range run.days {
		p.Calls = append(p.Calls, store.DayCalls{Day: day, Calls: n})
	}
	return p
}

// save records the progress and renews the hold. It returns
// errRunCancelled when a cancel was asked, store.ErrLeaseLost when another
// process took the run over.
func (run *runner) save(ctx context.Context) error { return run.saveIn(ctx, run.r.db) }

// saveIn is save through db.
func (run *runner) saveIn(ctx context.Context, db bun.IDB) error {
	r := run.r
	cancelAsked, err := r.st.SaveRun(ctx, db, run.rec.ID, r.owner, run.progress(), r.set.now().Add(r.lease))
	switch {
	case err != nil:
		return err
	case cancelAsked:
		return errRunCancelled
	}
	return nil
}

// advance sets the cursor and saves it.
func (run *runner) advance(ctx context.Context, c runCursor) error {
	return run.advanceIn(ctx, run.r.db, c)
}

// advanceIn is advance through db.
func (run *runner) advanceIn(ctx context.Context, db bun.IDB, c runCursor) error {
	run.mu.Lock()
	c.Marks, c.Confirmed = run.cur.Marks, run.cur.Confirmed
	run.cur = c
	run.mu.Unlock()
	return run.saveIn(ctx, db)
}

// finish records how the run ended.
func (run *runner) finish(runErr error) error {
	r := run.r
	ctx := context.Background()
	status, msg := store.RunCompleted, ""
	var apiErr json.RawMessage
	switch {
	case runErr == nil && run.held != "":
		status, msg = store.RunNeedsConfirmation, strings.TrimSuffix(run.held+"; "+run.note, "; ")
	case runErr == nil:
		msg = run.note
	case errors.Is(runErr, errRunCancelled):
		status = store.RunCancelled
	case errors.Is(runErr, store.ErrLeaseLost):
		r.set.logger.Warn("tdsreconcile: a reconciliation run was taken over by another process", "run", run.rec.ID)
		return runErr
	case errors.Is(runErr, ErrBudgetExhausted):
		return run.pause()
	case errors.Is(runErr, context.Canceled) && r.runCtx.Err() != nil:
		// Close: hand the run over at once to the next start.
		if err := r.st.ReleaseRun(ctx, r.db, run.rec.ID, r.owner, run.progress(), r.set.now()); err != nil {
			r.set.logger.Warn("tdsreconcile: releasing a reconciliation run", "run", run.rec.ID, "err", err)
		}
		return runErr
	default:
		status, msg = store.RunFailed, runErr.Error()
		var ae *zoho.APIError
		if errors.As(runErr, &ae) {
			apiErr, _ = json.Marshal(map[string]any{"code": ae.Code, "message": ae.Message})
		}
	}
	swept := status != store.RunFailed && status != store.RunCancelled && !run.rec.DryRun
	if swept && run.rec.Mode == string(Incremental) {
		if err := r.st.SetWatermarks(ctx, r.db, run.rec.Source, run.cur.Marks, r.set.now()); err != nil {
			status, msg = store.RunFailed, "moving the watermarks: "+err.Error()
		}
	}
	err := r.st.FinishRun(ctx, r.db, run.rec.ID, r.owner, run.progress(), status, msg, apiErr, r.set.now())
	if err != nil {
		return dberr.Wrap("recording the end of a run", err)
	}
	if swept && status != store.RunFailed && run.rec.Mode == string(Full) {
		// What this sweep did not find again is no longer drift.
		if err := r.st.CloseUnfound(ctx, r.db, run.rec.ID, run.rec.Source, run.typeNames(), r.set.now()); err != nil {
			r.set.logger.Warn("tdsreconcile: closing the drift a sweep did not find again", "run", run.rec.ID, "err", err)
		}
	}
	r.ended(ctx, run.rec.ID)
	if runErr != nil {
		r.set.logger.Warn("tdsreconcile: a reconciliation run ended", "run", run.rec.ID, "status", status, "err", runErr)
	}
	return runErr
}

// pause saves the run and gives it up until the next UTC day, when the next
// start resumes it; it stays running meanwhile, so no other run starts. It
// returns an error wrapping [ErrBudgetExhausted], or ends the run as
// cancelled when a cancel was asked.
func (run *runner) pause() error {
	r := run.r
	run.mu.Lock()
	until := run.day.Add(24 * time.Hour)
	run.mu.Unlock()
	why := fmt.Sprintf("paused: the daily budget of %d Zoho API calls is spent; resumes at %s",
		r.api.DailyBudget, until.Format(time.RFC3339))
	if b := run.budget(); b != int64(r.api.DailyBudget) {
		why = fmt.Sprintf("paused: the %d of the daily budget of %d Zoho API calls a full sweep may spend are spent "+
			"(the rest is kept for incremental runs); resumes at %s", b, r.api.DailyBudget, until.Format(time.RFC3339))
	}
	cancelAsked, err := r.st.PauseRun(context.Background(), r.db, run.rec.ID, r.owner, run.progress(), until, why)
	switch {
	case errors.Is(err, store.ErrLeaseLost):
		return run.finish(err)
	case err != nil:
		return dberr.Wrap("pausing a run", err)
	case cancelAsked:
		return run.finish(errRunCancelled)
	}
	r.set.logger.Info("tdsreconcile: a reconciliation run paused", "run", run.rec.ID, "resumes_at", until)
	return fmt.Errorf("tdsreconcile: run %d paused until %s: %w", run.rec.ID, until.Format(time.RFC3339), ErrBudgetExhausted)
}

// module is t's API as the client takes it.
func module(t tds.EntityType) zoho.Module {
	return zoho.Module{ListPath: t.API.ListPath, ListKey: t.API.ListKey, DetailPath: t.API.DetailPath, RecordKey: t.API.RecordKey}
}

// remoteRecord is a record of a list or detail answer, with its identity.
type remoteRecord struct {
	id      string
	version *time.Time
	fields  map[string]json.RawMessage
	raw     json.RawMessage
}

// parseRecord reads a record's id and, when t has a version field, its
// version (nil when the record lacks it).
func parseRecord(t tds.EntityType, raw json.RawMessage) (*remoteRecord, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("tdsreconcile: a %s record of the API is not a JSON object", t.Name)
	}
	id, ok := idString(fields[t.IDField])
	if !ok {
		return nil, fmt.Errorf("tdsreconcile: a %s record of the API has no %s", t.Name, t.IDField)
	}
	rec := &remoteRecord{id: id, fields: fields, raw: raw}
	if t.VersionField != "" {
		if v, ok := fields[t.VersionField]; ok && !record.IsNull(v) {
			if at, err := record.ParseTime(v); err == nil {
				at = record.DBTime(at)
				rec.version = &at
			}
		}
	}
	return rec, nil
}

// idString reads an id field: a string, or a number as written.
func idString(v json.RawMessage) (string, bool) {
	if len(v) == 0 || record.IsNull(v) {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s, s != ""
	}
	var n json.Number
	if json.Unmarshal(v, &n) == nil {
		return n.String(), true
	}
	return "", false
}

// fieldsHash is the hash of the fields of rec named in keys (those of a
// list record), so that a list record compares with a whole one.
func fieldsHash(rec map[string]json.RawMessage, keys map[string]json.RawMessage) (string, error) {
	sub := make(map[string]json.RawMessage, len(keys))
	for k := range keys {
		if v, ok := rec[k]; ok {
			sub[k] = v
		}
	}
	b, err := json.Marshal(sub)
	if err != nil {
		return "", err
	}
	canon, _, err := canonical.Canonicalize(b)
	if err != nil {
		return "", err
	}
	return canonical.Hash(canon), nil
}

// list reads one page of t.
func (run *runner) list(ctx context.Context, t tds.EntityType, page int, sortDesc bool) ([]*remoteRecord, bool, error) {
	req := zoho.ListRequest{Page: page, PerPage: listPageSize}
	if sortDesc {
		req.SortColumn, req.SortOrder = t.VersionField, "D"
	}
	pg, err := run.r.client.List(ctx, module(t), req)
	if err != nil {
		return nil, false, fmt.Errorf("tdsreconcile: listing %s, page %d: %w", t.Name, page, err)
	}
	run.mu.Lock()
	run.pages++
	run.mu.Unlock()
	out := make([]*remoteRecord, 0, len(pg.Records))
	for _, raw := range pg.Records {
		rec, err := parseRecord(t, raw)
		if err != nil {
			return nil, false, err
		}
		out = append(out, rec)
	}
	return out, pg.HasMore, nil
}

// sweep lists every type whole into the staging table and compares it
// with what was applied.
func (run *runner) sweep(ctx context.Context) error {
	r := run.r
	for ti := run.cur.Type; ti < len(run.types); ti++ {
		t := run.types[ti]
		page := 0
		if run.cur.Type == ti {
			page = run.cur.Page
		}
		for more := true; more; {
			page++
			recs, hasMore, err := run.list(ctx, t, page, false)
			if err != nil {
				return err
			}
			more = hasMore
			// The page and the cursor past it commit together.
			err = r.db.RunInTx(ctx, r.st.TxOptions(), func(ctx context.Context, tx bun.Tx) error {
				if err := run.stage(ctx, tx, t, recs); err != nil {
					return err
				}
				return run.advanceIn(ctx, tx, runCursor{Type: ti, Phase: phaseList, Page: page})
			})
			if err != nil {
				return err
			}
		}
		if _, err := r.st.CompareRemote(ctx, r.db, run.rec.ID, run.rec.Source, t.Name, r.set.now()); err != nil {
			return dberr.Wrap("comparing a listing", err)
		}
		if err := run.advance(ctx, runCursor{Type: ti + 1, Phase: phaseList}); err != nil {
			return err
		}
	}
	return nil
}

// stage stages one page of a sweep.
func (run *runner) stage(ctx context.Context, db bun.IDB, t tds.EntityType, recs []*remoteRecord) error {
	r := run.r
	var local map[string]*store.Applied
	if t.VersionField == "" && len(recs) > 0 {
		ids := make([]string, len(recs))
		for i, rec := range recs {
			ids[i] = rec.id
		}
		applied, err := r.st.AppliedOf(ctx, db, run.rec.Source, t.Name, ids)
		if err != nil {
			return dberr.Wrap("reading what was applied", err)
		}
		local = make(map[string]*store.Applied, len(applied))
		for i := range applied {
			local[applied[i].EntityID] = &applied[i]
		}
	}
	rows := make([]store.Remote, len(recs))
	for i, rec := range recs {
		rows[i] = store.Remote{EntityID: rec.id, Version: rec.version}
		if t.VersionField != "" {
			continue
		}
		h, err := fieldsHash(rec.fields, rec.fields)
		if err != nil {
			return fmt.Errorf("tdsreconcile: hashing a %s record: %w", t.Name, err)
		}
		rows[i].FieldsHash = h
		if a := local[rec.id]; a != nil && len(a.Data) > 0 {
			var data map[string]json.RawMessage
			if json.Unmarshal(a.Data, &data) == nil {
				if rows[i].LocalHash, err = fieldsHash(data, rec.fields); err != nil {
					return fmt.Errorf("tdsreconcile: hashing an applied %s record: %w", t.Name, err)
				}
			}
		}
	}
	if err := r.st.StageRemote(ctx, db, run.rec.ID, t.Name, rows); err != nil {
		return dberr.Wrap("staging a listing", err)
	}
	return nil
}

// incremental reads each type newest first down to its watermark less the
// lookback, and records the records newer than what was applied.
func (run *runner) incremental(ctx context.Context) error {
	r := run.r
	marks, err := r.st.Watermarks(ctx, r.db, run.rec.Source)
	if err != nil {
		return dberr.Wrap("reading the watermarks", err)
	}
	for ti := run.cur.Type; ti < len(run.types); ti++ {
		t := run.types[ti]
		page := 0
		if run.cur.Type == ti {
			page = run.cur.Page
		}
		mark, hasMark := marks[t.Name]
		stopBefore := mark.Add(-r.set.lookback)
		for more := true; more; {
			page++
			recs, hasMore, err := run.list(ctx, t, page, true)
			if err != nil {
				return err
			}
			more = hasMore
			fresh := recs[:0]
			for _, rec := range recs {
				if hasMark && rec.version != nil && rec.version.Before(stopBefore) {
					more = false // newest first: the rest is older still
					continue
				}
				fresh = append(fresh, rec)
			}
			if err := run.compare(ctx, t, fresh); err != nil {
				return err
			}
			if err := run.advance(ctx, runCursor{Type: ti, Phase: phaseRead, Page: page}); err != nil {
				return err
			}
		}
		if err := run.advance(ctx, runCursor{Type: ti + 1, Phase: phaseRead}); err != nil {
			return err
		}
	}
	return nil
}

// compare records the drift of one page of an incremental run and the
// newest version it read.
func (run *runner) compare(ctx context.Context, t tds.EntityType, recs []*remoteRecord) error {
	if len(recs) == 0 {
		return nil
	}
	r := run.r
	ids := make([]string, len(recs))
	for i, rec := range recs {
		ids[i] = rec.id
	}
	applied, err := r.st.AppliedOf(ctx, r.db, run.rec.Source, t.Name, ids)
	if err != nil {
		return dberr.Wrap("reading what was applied", err)
	}
	local := make(map[string]*store.Applied, len(applied))
	for i := range applied {
		local[applied[i].EntityID] = &applied[i]
	}
	now := r.set.now()
	var drift []store.Drift
	run.mu.Lock()
	for _, rec := range recs {
		if rec.version != nil && rec.version.After(run.cur.Marks[t.Name]) {
			run.cur.Marks[t.Name] = *rec.version
		}
		a := local[rec.id]
		d := store.Drift{RunID: run.rec.ID, EntityType: t.Name, EntityID: rec.id, RemoteVersion: rec.version, DetectedAt: now}
		switch {
		case a == nil || a.Deleted:
			d.Kind = store.DriftMissingLocal
		case rec.version != nil && rec.version.After(a.Version):
			d.Kind = store.DriftStaleLocal
		default:
			continue
		}
		if a != nil {
			v := a.Version
			d.LocalVersion = &v
		}
		drift = append(drift, d)
	}
	run.mu.Unlock()
	if err := r.st.AddDrift(ctx, r.db, drift); err != nil {
		return dberr.Wrap("recording drift", err)
	}
	return nil
}

// repair deals with every drift item the run has not dealt with yet: in a
// dry run it only confirms that records missing from the listing are gone.
// What the source listed (records missing or stale here) is repaired
// first; then the records missing from the listing are confirmed, at most
// confirmationCap of them a run (their ids came from webhooks, which a
// webhook-key holder can invent): the rest stays unresolved, for the next
// sweep, and the run says so. A record confirmed gone is held as a pending
// delete; last, the deletes are applied, unless a type's exceed its
// threshold (see [WithMaxDeletes]): then they all wait for a confirmation.
func (run *runner) repair(ctx context.Context) error {
	if err := run.advance(ctx, runCursor{Type: len(run.types), Phase: phaseRepair}); err != nil {
		return err
	}
	// The state of earlier repairs, for sameRepair.
	if err := run.r.st.SettleDrift(ctx, run.r.db); err != nil {
		return dberr.Wrap("settling drift", err)
	}
	byName := make(map[string]tds.EntityType, len(run.types))
	for _, t := range run.types {
		byName[t.Name] = t
	}
	// Listed drift first.
	err := run.eachDrift(ctx, func(d *store.Drift) error {
		if dealt(d) {
			return nil
		}
		run.r.set.hooks.driftFound(d.EntityType, DriftKind(d.Kind))
		switch {
		case d.Kind == store.DriftMissingRemote:
			return nil
		case run.rec.DryRun:
			return run.record(ctx, run.r.db, d, store.Repair{Kind: d.Kind, Reason: store.ReasonDryRun})
		}
		return run.repairOne(ctx, byName[d.EntityType], d)
	})
	if err != nil {
		return err
	}
	// Then the confirmations, within the cap.
	limit := run.confirmationCap()
	var left int64
	err = run.eachDrift(ctx, func(d *store.Drift) error {
		if d.Kind != store.DriftMissingRemote || dealt(d) {
			return nil
		}
		run.mu.Lock()
		over := limit >= 0 && run.cur.Confirmed >= limit
		run.mu.Unlock()
		if over {
			left++
			return nil
		}
		if err := run.repairOne(ctx, byName[d.EntityType], d); err != nil {
			return err
		}
		run.mu.Lock()
		run.cur.Confirmed++
		run.mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	if left > 0 {
		run.note = fmt.Sprintf("%d records missing from the listing left unconfirmed: a run confirms at most %d "+
			"(%d%% of the daily budget of %d API calls, at least %d); the next full sweep finds them again",
			left, limit, ConfirmationShare, run.r.api.DailyBudget, MinConfirmations)
		run.r.set.logger.Warn("tdsreconcile: confirmations capped", "run", run.rec.ID, "left", left, "cap", limit)
	}
	return run.applyDeletes(ctx, byName)
}

// dealt tells a drift item the run already dealt with (a run resumed in
// its repair phase goes over its drift again): a repair ingested, or a
// reason recorded (a delete held, a dry run, a repair not ingested again).
func dealt(d *store.Drift) bool { return d.InboxEventID != nil || d.Reason != nil }

// applyDeletes ingests the run's held deletes when no type's exceed its
// threshold; otherwise it leaves them held, and the run ends
// RunNeedsConfirmation.
func (run *runner) applyDeletes(ctx context.Context, byName map[string]tds.EntityType) error {
	r := run.r
	pending, err := r.st.PendingDeletes(ctx, r.db, run.rec.ID)
	if err != nil {
		return dberr.Wrap("counting the pending deletes", err)
	}
	var over []string
	for _, typ := range sortedKeys(pending) {
		limit, err := run.deleteLimit(ctx, typ)
		if err != nil {
			return err
		}
		if pending[typ] > limit {
			over = append(over, fmt.Sprintf("%d %s records (threshold %d)", pending[typ], typ, limit))
		}
	}
	if len(over) > 0 {
		run.held = fmt.Sprintf("deletes held for confirmation: the source no longer lists %s; "+
			"no delete was applied: confirm them, or check the organisation id and credentials",
			strings.Join(over, ", "))
		r.set.logger.Warn("tdsreconcile: a reconciliation run holds its deletes for confirmation", "run", run.rec.ID,
			"pending_deletes", sum(pending), "why", run.held)
		return nil
	}
	return run.eachDrift(ctx, func(d *store.Drift) error {
		if !d.PendingDelete {
			return nil
		}
		return run.ingest(ctx, byName[d.EntityType], d, store.DriftMissingRemote, nil, tds.EventDelete, nil)
	})
}

// deleteLimit is how many deletes of typ the run may apply on its own.
func (run *runner) deleteLimit(ctx context.Context, typ string) (int64, error) {
	if n := run.r.set.maxDeletes; n >= 0 {
		return int64(n), nil
	}
	applied, err := run.r.st.AppliedCount(ctx, run.r.db, run.rec.Source, typ)
	if err != nil {
		return 0, dberr.Wrap("counting the applied records", err)
	}
	return DefaultMaxDeletes(applied), nil
}

func sortedKeys(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// confirmationCap is how many records missing from the listing a run may
// confirm: ConfirmationShare of the daily budget, at least
// MinConfirmations but never more than the budget; -1 without a budget.
func (run *runner) confirmationCap() int64 {
	budget := int64(run.r.api.DailyBudget)
	if budget <= 0 {
		return -1
	}
	return max(budget*ConfirmationShare/100, min(MinConfirmations, budget))
}

// eachDrift calls fn for each unresolved drift item of the run, in id
// order, saving the progress after each batch.
func (run *runner) eachDrift(ctx context.Context, fn func(d *store.Drift) error) error {
	r := run.r
	var after int64
	for {
		items, err := r.st.ListDrift(ctx, r.db, run.rec.ID, after, true, repairBatch)
		if err != nil {
			return dberr.Wrap("reading drift", err)
		}
		if len(items) == 0 {
			return nil
		}
		for i := range items {
			after = items[i].ID
			if err := fn(&items[i]); err != nil {
				return err
			}
		}
		if err := run.save(ctx); err != nil {
			return err
		}
	}
}

// repairOne fetches the drifted record whole and ingests it, or holds a
// delete when the source no longer has it.
func (run *runner) repairOne(ctx context.Context, t tds.EntityType, d *store.Drift) error {
	r := run.r
	raw, err := r.client.Get(ctx, module(t), d.EntityID)
	if errors.Is(err, zoho.ErrNotFound) {
		if d.Kind != store.DriftMissingRemote && (d.LocalVersion == nil || d.Kind == store.DriftMissingLocal) {
			// Listed, then deleted before this request, and never
			// applied (or applied as deleted): nothing to undo.
			return dberr.Wrap("dropping drift", r.st.DropDrift(ctx, r.db, d.ID))
		}
		if run.rec.DryRun {
			return run.record(ctx, r.db, d, store.Repair{Kind: store.DriftMissingRemote, Reason: store.ReasonDryRun})
		}
		// Applied after the threshold is known (applyDeletes), or
		// confirmed by an operator.
		return dberr.Wrap("holding a delete", r.st.HoldDelete(ctx, r.db, d.ID))
	}
	if err != nil {
		return fmt.Errorf("tdsreconcile: reading %s %s: %w", t.Name, d.EntityID, err)
	}
	rec, err := parseRecord(t, raw)
	if err != nil {
		return err
	}
	if rec.id != d.EntityID {
		return fmt.Errorf("tdsreconcile: the API answered %s %s with the record of %s", t.Name, d.EntityID, rec.id)
	}
	kind := d.Kind
	if kind == store.DriftMissingRemote {
		// The listing missed it, but it exists: drift only if newer.
		if rec.version == nil || d.LocalVersion == nil || !rec.version.After(*d.LocalVersion) {
			return dberr.Wrap("dropping drift", r.st.DropDrift(ctx, r.db, d.ID))
		}
		kind = store.DriftStaleLocal
	}
	return run.ingest(ctx, t, d, kind, rec.version, tds.EventUpdate, raw)
}

// record records what became of d's repair.
func (run *runner) record(ctx context.Context, db bun.IDB, d *store.Drift, rep store.Repair) error {
	return dberr.Wrap("recording a repair", run.r.st.RecordRepair(ctx, db, d.ID, rep))
}

// ingest stores the repair of d through the Processor, unless the same
// repair of an earlier run is still open (queued, or failed: invalid,
// superseded, dead-lettered), and records it on d, which stays open until
// the repair is applied (see [store.Runs.SettleDrift]).
func (run *runner) ingest(ctx context.Context, t tds.EntityType, d *store.Drift, kind string, version *time.Time,
	eventType string, data json.RawMessage) error {
	r := run.r
	if run.rec.DryRun {
		return run.record(ctx, r.db, d, store.Repair{Kind: kind, Remote: version, Reason: store.ReasonDryRun})
	}
	if data == nil {
		data, _ = json.Marshal(map[string]string{t.IDField: d.EntityID})
	}
	hash, err := repairHash(eventType, data)
	if err != nil {
		return fmt.Errorf("tdsreconcile: hashing the repair of %s %s: %w", t.Name, d.EntityID, err)
	}
	prev, err := r.st.SameRepair(ctx, r.db, run.rec.Source, t.Name, d.EntityID, hash, run.rec.ID)
	switch {
	case err == nil:
		why := "open"
		if prev.Reason != nil {
			why = *prev.Reason
		}
		return run.record(ctx, r.db, d, store.Repair{Kind: kind, Remote: version, Hash: hash,
			Reason: fmt.Sprintf("%s: the same repair (event %d of run %d) is %s", store.ReasonNotIngestedAgain, *prev.InboxEventID, prev.RunID, why)})
	case !errors.Is(err, store.ErrNoRows):
		return dberr.Wrap("looking for the same repair", err)
	}
	// The event and the drift's record of it commit together.
	err = r.db.RunInTx(ctx, r.st.TxOptions(), func(ctx context.Context, tx bun.Tx) error {
		return ingestRepairTx(ctx, tx, r, run.rec.ID, run.rec.Source, t, d, kind, version, eventType, data, hash)
	})
	if err == nil {
		r.set.hooks.driftRepaired(t.Name, DriftKind(kind))
	}
	return dberr.Wrap("repairing drift", err)
}

// ingestRepairTx ingests one repair in tx and records it on d.
func ingestRepairTx(ctx context.Context, tx bun.Tx, r *Reconciler, runID int64, source string, t tds.EntityType,
	d *store.Drift, kind string, version *time.Time, eventType string, data json.RawMessage, hash string) error {
	ev := &tds.Event{Source: source, EventType: eventType, EntityType: t.Name, EntityID: d.EntityID, Data: data,
		DeliveryID: fmt.Sprintf("tds-reconcile-%d", runID)}
	res, err := r.proc.ProcessTx(store.WithSyncRun(ctx, runID), tx, ev)
	if err != nil {
		return fmt.Errorf("tdsreconcile: ingesting the repair of %s %s: %w", t.Name, d.EntityID, err)
	}
	id := res.EventID
	rep := store.Repair{Kind: kind, Remote: version, EventID: &id, Hash: hash, Reason: store.ReasonQueued}
	switch {
	case len(res.ValidationErrors) > 0:
		rep.Reason = store.ReasonInvalid + ": " + strings.TrimPrefix(res.ValidationErrors.Error(), "tds: invalid event: ")
	case !res.Queued:
		rep.Reason = "repair stored, not queued"
	}
	return dberr.Wrap("recording a repair", r.st.RecordRepair(ctx, tx, d.ID, rep))
}

// repairHash is the content hash of a repair: its event type and data.
func repairHash(eventType string, data json.RawMessage) (string, error) {
	canon, _, err := canonical.Canonicalize(data)
	if err != nil {
		return "", err
	}
	return eventType + ":" + canonical.Hash(canon), nil
}
