package tds

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// A batch of claimed jobs runs in one transaction:
//
//	BEGIN
//	SELECT id, payload, ... FROM tds_inbox_events WHERE id IN (...)
//	  Sync(job 1), which writes nothing: no savepoint, no round trip
//	SAVEPOINT tds_job                  -- before job 2's first statement
//	  Sync(job 2) writes
//	RELEASE SAVEPOINT tds_job
//	SAVEPOINT tds_job                  -- before job 3's first statement
//	  Sync(job 3) writes, then fails:
//	ROLLBACK TO SAVEPOINT tds_job, then record its attempt and retry or dead letter
//	...
//	WITH v(...) AS (VALUES ...) UPDATE tds_sync_queue ... FROM v   -- complete, lease-guarded
//	COMMIT
//
// so a job's local writes commit with its completion or not at all, and
// one job's failure undoes only its own writes. A job's savepoint is opened
// by a query hook just before the first statement its Sync runs through
// the transaction, so the many jobs that write nothing cost nothing. The
// completion UPDATE is the point of truth for the leases: it locks the
// rows it completes until COMMIT, so a rescue can no longer take them, and
// a job it does not complete had lost its lease before: the transaction is
// then rolled back and run again without that job. Completing a job is
// also what marks its inbox event processed (see completedJobSQL); the
// event's row is not written.

const (
	spOpen     = "SAVEPOINT tds_job"
	spRelease  = "RELEASE SAVEPOINT tds_job"
	spRollback = "ROLLBACK TO SAVEPOINT tds_job"
)

// batchJob is a job of a running batch.
type batchJob struct {
	job     *Job
	sj      *SyncJob
	started time.Time
}

// leaseMatch is the condition that a row is one of jobs as w claimed them:
// the owner and the attempt identify the lease, so a job rescued and
// claimed again cannot be touched by its old holder. The ids are integers
// written into the SQL; the owner is the one argument.
func leaseMatch(jobs []*Job, owner string) (string, []any) {
	var b strings.Builder
	b.WriteString("locked_by = ? AND " + isProcessing + " AND (id, attempt_count) IN (VALUES ")
	for i, j := range jobs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		b.WriteString(strconv.FormatInt(j.ID, 10))
		b.WriteByte(',')
		b.WriteString(strconv.Itoa(j.AttemptCount))
		b.WriteByte(')')
	}
	b.WriteByte(')')
	return b.String(), []any{owner}
}

// processBatch runs claimed jobs to their end: completed, failed, or handed
// back, and reports them. stopping closes when the worker stops claiming:
// the batch then starts no further job and hands the rest back.
func (w *Worker) processBatch(ctx context.Context, stopping <-chan struct{}, jobs []*Job) {
	for len(jobs) > 0 {
		results, redo, err := w.runBatch(ctx, stopping, jobs)
		var uf *unprotectedFailure
		if errors.As(err, &uf) {
			// The batch was rolled back; record the failure on its own
			// and run the others again.
			w.fail(uf.job, uf.err, uf.started)
			jobs = without(jobs, []*Job{uf.job})
			continue
		}
		if err == nil {
			w.report(results)
			jobs = redo
			continue
		}
		switch {
		case errors.Is(err, errLeaseLost):
			w.log.Warn("tds: lost the lease of a job of the batch; handing the rest back", "jobs", len(jobs))
			w.handBack(jobs)
		case errors.Is(err, errShutdown):
			w.handBack(jobs)
		case len(jobs) > 1:
			// Something broke the transaction itself: run the jobs one
			// per transaction, so that the culprit fails alone.
			w.log.Warn("tds: a batch failed; running its jobs one by one", "jobs", len(jobs), "err", err)
			for _, j := range jobs {
				w.processBatch(ctx, stopping, []*Job{j})
			}
		default:
			w.fail(jobs[0], err, w.now())
		}
		return
	}
}

// runBatch runs jobs in one transaction and returns, once it has
// committed, what became of each. When the completion finds that some
// job's lease was lost, it rolls everything back and returns the other
// jobs as redo, to run again in a new transaction. An error means nothing
// was committed; it is errShutdown or errLeaseLost when the batch was
// cancelled.
//
// Savepoints are taken lazily: a job's savepoint is opened by
// the first statement its Sync runs through tx (see savepointHook), so a
// job that writes nothing costs no round trip. A job that fails without
// having run a statement through the hook cannot be undone alone (it may
// have written through tx.Tx directly): the batch then rolls back and
// returns an *unprotectedFailure, so that its failure is recorded on its
// own and the other jobs run again (those that ran before it have their
// Sync called a second time; their first writes were rolled back).
func (w *Worker) runBatch(parent context.Context, stopping <-chan struct{}, jobs []*Job) (results []JobResult, redo []*Job, err error) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	defer func() {
		if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
	}()
	hb := w.startHeartbeat(ctx, cancel, jobs)
	defer hb.stop()

	// The transaction outlives a cancelled ctx so that the batch decides
	// itself how it ends; statements still run under ctx.
	tx, err := w.db.BeginTx(context.WithoutCancel(ctx), readCommitted(w.db))
	if err != nil {
		return nil, nil, wrapDBErr("starting a batch", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()

	events, err := loadEvents(ctx, tx, jobs)
	if err != nil {
		return nil, nil, err
	}

	var (
		done      []*batchJob // Sync returned nil
		dead      []*Job      // dead-lettered: their entities need a new head
		lost      []*Job      // the failure could not be recorded: lease lost
		unstarted []*Job
	)
	// failJob undoes bj's writes and records its failed attempt.
	failJob := func(bj *batchJob, syncErr error) error {
		if _, err := tx.ExecContext(ctx, spRollback); err != nil {
			return wrapDBErr("rolling back a failed job", err)
		}
		f := classify(syncErr, bj.job.AttemptCount, bj.job.MaxRetryAttempts, w.ws.retryPolicy)
		var recErr error
		hb.drop(bj.job.ID, func() {
			recErr = w.recordFailure(ctx, tx, bj.job, f, w.ws.workerID, &bj.started)
		})
		switch {
		case errors.Is(recErr, errLeaseLost):
			w.log.Warn("tds: lost the lease of a failed job", "job", bj.job.ID)
			lost = append(lost, bj.job)
			return nil
		case recErr != nil:
			return wrapDBErr("recording a failed attempt", recErr)
		}
		w.logFailure(bj.job, f, syncErr)
		status := StatusRetry
		if f.deadLetter {
			status = StatusDeadLetter
			dead = append(dead, bj.job)
		}
		results = append(results, bj.result(status, "", syncErr))
		return nil
	}
	for i, job := range jobs {
		if isClosed(stopping) || ctx.Err() != nil {
			unstarted = jobs[i:]
			break
		}
		sp := &jobSavepoint{tx: tx.Tx}
		syncCtx := context.WithValue(ctx, savepointKey{}, sp)
		bj := &batchJob{job: job, sj: w.syncJobOf(job, events[job.InboxEventID]), started: w.now()}
		var syncErr error
		if bj.sj == nil {
			syncErr = fmt.Errorf("tds: reading the job's inbox event %d: not found", job.InboxEventID)
		} else {
			syncErr = callSync(syncCtx, w.syncer, tx, bj.sj)
		}
		if cause := context.Cause(ctx); cause != nil {
			return nil, nil, cause
		}
		taken, spErr := sp.state()
		if spErr != nil {
			return nil, nil, wrapDBErr("opening a savepoint", spErr)
		}
		if syncErr != nil {
			if !taken {
				return nil, nil, &unprotectedFailure{job: job, err: syncErr, started: bj.started}
			}
			if err := failJob(bj, syncErr); err != nil {
				return nil, nil, err
			}
			continue
		}
		if taken {
			// Release now: a failure means Sync left the transaction
			// unusable and returned nil anyway; undo it and fail it.
			if _, err := tx.ExecContext(ctx, spRelease); err != nil {
				unusable := fmt.Errorf("tds: Sync returned nil but left the transaction unusable: %w", err)
				if err := failJob(bj, unusable); err != nil {
					return nil, nil, unusable
				}
				continue
			}
		}
		done = append(done, bj)
	}
	// From here on the batch takes row locks on its jobs: the heartbeat
	// must not be waiting for them.
	hb.stop()

	now := w.now()
	if len(unstarted) > 0 {
		back, err := w.handBackIn(ctx, tx, unstarted, now)
		if err != nil {
			return nil, nil, err
		}
		results = append(results, back...)
	}
	if len(done) > 0 || len(dead) > 0 {
		completed, err := w.complete(ctx, tx, done, dead, now)
		if err != nil {
			return nil, nil, err
		}
		if len(completed) < len(done) {
			for _, bj := range done {
				if !completed[bj.job.ID] {
					w.log.Warn("tds: lost the lease of a job before completing it; its work is rolled back", "job", bj.job.ID)
					lost = append(lost, bj.job)
				}
			}
			return nil, without(jobs, lost), nil
		}
		// Their inbox events are processed now, unwritten: see
		// completedJobSQL.
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, wrapDBErr("committing a batch", err)
	}
	committed = true
	at := w.cfg.now()
	for _, bj := range done {
		results = append(results, bj.result(StatusCompleted, bj.sj.outcome, nil))
	}
	for i := range results {
		results[i].CommittedAt = at
	}
	return results, nil, nil
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// without returns jobs minus drop.
func without(jobs, drop []*Job) []*Job {
	out := make([]*Job, 0, len(jobs))
	for _, j := range jobs {
		keep := true
		for _, d := range drop {
			if d.ID == j.ID {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, j)
		}
	}
	return out
}

func (bj *batchJob) result(st Status, outcome string, err error) JobResult {
	r := JobResult{JobID: bj.job.ID, InboxEventID: bj.job.InboxEventID, EntityType: bj.job.EntityType,
		EntityID: bj.job.SourceEntityID, Status: st, Outcome: outcome, Attempt: bj.job.AttemptCount, Err: err}
	if bj.sj != nil {
		r.ReceivedAt = bj.sj.ReceivedAt
	}
	return r
}

// loadEvents reads the events of jobs with one SELECT.
func loadEvents(ctx context.Context, tx bun.Tx, jobs []*Job) (map[int64]*InboxEvent, error) {
	ids := make([]int64, len(jobs))
	for i, j := range jobs {
		ids[i] = j.InboxEventID
	}
	var evs []*InboxEvent
	if err := tx.NewSelect().Model(&evs).
		Column("id", "payload", "source_modified_at", "received_at").
		Where("id IN (?)", bun.List(ids)).Scan(ctx); err != nil {
		return nil, wrapDBErr("reading the batch's inbox events", err)
	}
	out := make(map[int64]*InboxEvent, len(evs))
	for _, ev := range evs {
		out[ev.ID] = ev
	}
	return out, nil
}

// syncJobOf is what the Syncer gets for job, or nil without its event.
func (w *Worker) syncJobOf(job *Job, ev *InboxEvent) *SyncJob {
	if ev == nil {
		return nil
	}
	return &SyncJob{
		JobID:        job.ID,
		InboxEventID: job.InboxEventID,
		Source:       job.Source,
		EventType:    job.EventType,
		EntityType:   job.EntityType,
		EntityID:     job.SourceEntityID,
		Data:         ev.Payload,
		Version:      ev.SourceModifiedAt.UTC(),
		ReceivedAt:   ev.ReceivedAt.UTC(),
		Priority:     job.Priority,
		Attempt:      job.AttemptCount,
		MaxAttempts:  job.MaxRetryAttempts,
		WorkerID:     w.ws.workerID,
		outcome:      OutcomeSynced,
	}
}

// complete marks the done jobs completed with their outcomes, in one
// lease-guarded UPDATE, and returns the ids it completed. Then, under the
// locks of their entities, it hands each entity of a finished job (done,
// or dead-lettered earlier in tx) on to its next job: see entity.go. The
// locks are taken here, at the end, so that they are held only for the
// commit and do not keep ingestion of those entities waiting on Syncers.
func (w *Worker) complete(ctx context.Context, tx bun.Tx, done []*batchJob, dead []*Job, now time.Time) (map[int64]bool, error) {
	keys := make([]entityKey, 0, len(done)+len(dead))
	finishing := make([]int64, 0, len(done)+len(dead))
	for _, bj := range done {
		keys = append(keys, jobEntity(bj.job))
		finishing = append(finishing, bj.job.ID)
	}
	for _, j := range dead {
		keys = append(keys, jobEntity(j))
		finishing = append(finishing, j.ID)
	}
	if isPostgres(tx) {
		// With the locks, one setting: the jobs are known by primary key.
		// After a burst the statistics lag behind the table, and
		// PostgreSQL, believing it nearly empty, may join the batch's
		// VALUES against a scan of the whole table, once per job
		// (measured: 47 s for 1,000 jobs in a 200,000-row queue). From
		// here to COMMIT the batch runs only its own statements, so turning
		// sequential scans off for the rest of the transaction touches no
		// Syncer query.
		if _, err := tx.ExecContext(ctx, `SELECT set_config('enable_seqscan', 'off', true), (`+lockEntitiesSQL+`)`,
			entityLockClass, pgdialect.Array(entityLockKeys(keys))); err != nil {
			return nil, wrapDBErr("completing jobs", err)
		}
	}
	out := make(map[int64]bool, len(done))
	blocked := len(dead) > 0
	if len(done) > 0 {
		rows, err := w.markCompleted(ctx, tx, done, now)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			out[r.ID] = true
			blocked = blocked || r.AnyBlocked
		}
		if len(rows) < len(done) {
			return out, nil // the caller rolls back
		}
	}
	// Most of the time no job is blocked at all, and the probe per entity
	// is skipped.
	if blocked {
		if _, err := unblockNext(ctx, tx, finishing, finishing, now); err != nil {
			return nil, wrapDBErr("unblocking the next jobs of finished entities", err)
		}
	}
	return out, nil
}

// completedRow is a row the completion UPDATE returns.
type completedRow struct {
	ID int64 `bun:"id"`
	// Whether any job of the queue is blocked: then the entities of the
	// batch may have a next job to unblock. The statement runs after the
	// entity locks were granted, so its snapshot shows every job blocked
	// behind them. (On SQLite, where the probe costs little, always true.)
	AnyBlocked bool `bun:"any_blocked"`
}

// anyBlockedPG is the completion's test for blocked jobs, evaluated once.
const anyBlockedPG = "(SELECT EXISTS (SELECT 1 FROM tds_sync_queue AS bq WHERE bq.blocked))"

// markCompleted is the completion UPDATE of complete.
func (w *Worker) markCompleted(ctx context.Context, tx bun.Tx, done []*batchJob, now time.Time) ([]completedRow, error) {
	var b strings.Builder
	args := make([]any, 0, 2*len(done)+4)
	b.WriteString("WITH v (id, attempt, outcome, detail) AS (VALUES ")
	for i, bj := range done {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "(%d, %d, ?, ?)", bj.job.ID, bj.job.AttemptCount)
		var detail *string
		if bj.sj.detail != "" {
			detail = &bj.sj.detail
		}
		args = append(args, bj.sj.outcome, detail)
	}
	// The status test is written so that no index matches it: see
	// isProcessing.
	b.WriteString(`)
UPDATE tds_sync_queue SET status = 'completed', outcome = v.outcome,
	outcome_detail = COALESCE(v.detail, tds_sync_queue.outcome_detail),
	completed_at = ?, updated_at = ?, locked_until = NULL
FROM v
WHERE tds_sync_queue.id = v.id AND tds_sync_queue.attempt_count = v.attempt
AND tds_sync_queue.locked_by = ? AND (tds_sync_queue.status = 'processing') IS TRUE
RETURNING tds_sync_queue.id, `)
	if isPostgres(tx) {
		b.WriteString(anyBlockedPG)
	} else {
		b.WriteString("TRUE")
	}
	b.WriteString(" AS any_blocked")
	args = append(args, now, now)
	args = append(args, w.ws.workerID)
	var rows []completedRow
	if err := tx.NewRaw(b.String(), args...).Scan(ctx, &rows); err != nil {
		return nil, wrapDBErr("completing jobs", err)
	}
	return rows, nil
}

// handBackSQL returns jobs to the queue at once: not a failed attempt, so
// the attempt count goes back down.
const handBackSQL = `UPDATE tds_sync_queue
SET status = CASE WHEN attempt_count > 1 THEN 'retry' ELSE 'pending' END,
	attempt_count = attempt_count - 1, next_retry_at = ?,
	locked_by = NULL, locked_until = NULL, updated_at = ?
WHERE %s
RETURNING id, attempt_count, status`

// handBackIn hands back the jobs still held by w, in db, and returns their
// results.
func (w *Worker) handBackIn(ctx context.Context, db bun.IDB, jobs []*Job, now time.Time) ([]JobResult, error) {
	cond, condArgs := leaseMatch(jobs, w.ws.workerID)
	var back []struct {
		ID           int64  `bun:"id"`
		AttemptCount int    `bun:"attempt_count"`
		Status       Status `bun:"status"`
	}
	if err := db.NewRaw(fmt.Sprintf(handBackSQL, cond), append([]any{now, now}, condArgs...)...).
		Scan(ctx, &back); err != nil {
		return nil, wrapDBErr("handing jobs back", err)
	}
	byID := make(map[int64]*Job, len(jobs))
	for _, j := range jobs {
		byID[j.ID] = j
	}
	out := make([]JobResult, 0, len(back))
	for _, b := range back {
		j := byID[b.ID]
		out = append(out, JobResult{JobID: j.ID, InboxEventID: j.InboxEventID, EntityType: j.EntityType,
			EntityID: j.SourceEntityID, Status: b.Status, Attempt: j.AttemptCount})
	}
	return out, nil
}

// handBack returns the jobs w did not finish to the queue at once, in a
// statement of its own, and reports them.
func (w *Worker) handBack(jobs []*Job) {
	ctx, cancel := cleanupCtx()
	defer cancel()
	res, err := w.handBackIn(ctx, w.db, jobs, w.now())
	if err != nil {
		w.log.Error("tds: handing jobs back; they return when their lease expires", "jobs", len(jobs), "err", err)
		return
	}
	at := w.cfg.now()
	for i := range res {
		res[i].CommittedAt = at
	}
	w.report(res)
}

// batchHeartbeat renews the leases of a running batch's undecided jobs.
type batchHeartbeat struct {
	mu      sync.Mutex // held while renewing, and while the batch locks a job's row
	live    []*Job
	stopped bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// startHeartbeat renews the leases of jobs every third of the lease until
// stopped; when a lease turns out lost it cancels the batch with
// errLeaseLost. On SQLite it does nothing: the batch's transaction holds
// the only connection, so no renewal and no rescue can run before it ends.
func (w *Worker) startHeartbeat(ctx context.Context, cancelBatch context.CancelCauseFunc, jobs []*Job) *batchHeartbeat {
	hb := &batchHeartbeat{live: append([]*Job(nil), jobs...), done: make(chan struct{})}
	if !isPostgres(w.db) {
		hb.stopped = true
		close(hb.done)
		hb.cancel = func() {}
		return hb
	}
	ctx, hb.cancel = context.WithCancel(ctx)
	go func() {
		defer close(hb.done)
		t := time.NewTicker(w.ws.leaseDuration / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if lostLease := w.renew(ctx, hb); lostLease {
				cancelBatch(errLeaseLost)
				return
			}
		}
	}()
	return hb
}

// renew extends the leases of hb's live jobs and reports whether one of
// them was lost.
func (w *Worker) renew(ctx context.Context, hb *batchHeartbeat) bool {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if hb.stopped || len(hb.live) == 0 {
		return false
	}
	cond, args := leaseMatch(hb.live, w.ws.workerID)
	res, err := w.db.NewRaw("UPDATE tds_sync_queue SET locked_until = ? WHERE "+cond,
		append([]any{w.now().Add(w.ws.leaseDuration)}, args...)...).Exec(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("tds: renewing the leases of a batch", "jobs", len(hb.live), "err", err)
		}
		return false
	}
	n, _ := res.RowsAffected()
	return n < int64(len(hb.live))
}

// drop runs lock, which takes the row lock of job id, while no renewal
// runs, and stops renewing that job: a renewal must never wait for a row
// lock of its own batch.
func (hb *batchHeartbeat) drop(id int64, lock func()) {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	for i, j := range hb.live {
		if j.ID == id {
			hb.live = append(hb.live[:i:i], hb.live[i+1:]...)
			break
		}
	}
	lock()
}

// stop ends the renewals and waits for the heartbeat to exit.
func (hb *batchHeartbeat) stop() {
	hb.mu.Lock()
	hb.stopped = true
	hb.mu.Unlock()
	hb.cancel()
	<-hb.done
}

// unprotectedFailure is a job that failed without a savepoint to undo it
// alone: its batch must roll back.
type unprotectedFailure struct {
	job     *Job
	err     error
	started time.Time
}

func (u *unprotectedFailure) Error() string {
	return fmt.Sprintf("tds: job %d failed outside a savepoint: %v", u.job.ID, u.err)
}

// savepointKey marks the context of a Sync whose savepoint is lazy.
type savepointKey struct{}

// jobSavepoint is the lazy savepoint of one job of a batch.
type jobSavepoint struct {
	tx    *sql.Tx
	mu    sync.Mutex
	taken bool
	err   error
}

// state reports whether the savepoint was opened, and the error if that
// failed.
func (sp *jobSavepoint) state() (bool, error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.taken, sp.err
}

// savepointHook opens a job's savepoint just before the first statement
// its Sync runs through the batch transaction (bun runs query hooks for
// every statement of a bun.Tx, with the statement's context). If the
// savepoint cannot be opened, the statement is not run either: its
// context is cancelled.
type savepointHook struct{}

// BeforeQuery opens the savepoint of the job whose context runs the query.
func (savepointHook) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context {
	sp, ok := ctx.Value(savepointKey{}).(*jobSavepoint)
	if !ok {
		return ctx
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.taken {
		return ctx
	}
	sp.taken = true
	if _, err := sp.tx.ExecContext(ctx, spOpen); err != nil {
		sp.err = err
		failed, cancel := context.WithCancel(ctx)
		cancel()
		return failed
	}
	return ctx
}

// AfterQuery does nothing.
func (savepointHook) AfterQuery(context.Context, *bun.QueryEvent) {}
