package tds

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/dberr"
	"github.com/tdscore/tds/internal/store"
)

// A batch of claimed jobs runs in one transaction:
//
//	BEGIN
//	read the batch's inbox events                  -- load
//	  Sync(job 1), which writes nothing: no savepoint, no round trip
//	SAVEPOINT tds_job                  -- before job 2's first statement
//	  Sync(job 2) writes
//	RELEASE SAVEPOINT tds_job
//	SAVEPOINT tds_job                  -- before job 3's first statement
//	  Sync(job 3) writes, then fails:
//	ROLLBACK TO SAVEPOINT tds_job, then record its attempt  -- fail
//	...
//	complete the done jobs under their leases, hand entities on  -- finish
//	COMMIT
//
// so a job's local writes commit with its completion or not at all, and
// one job's failure undoes only its own writes. A job's savepoint is opened
// by a query hook just before the first statement its Sync runs through
// the transaction, so the many jobs that write nothing cost nothing. The
// completion is the point of truth for the leases: it locks the rows it
// completes until COMMIT, so a rescue can no longer take them, and a job
// it does not complete had lost its lease before: the transaction is then
// rolled back and run again without that job. Completing a job is also
// what marks its inbox event processed; the event's row is not written.

// batchJob is a job of a running batch.
type batchJob struct {
	ctx     context.Context // its attempt's (see trace.go), without the savepoint
	job     *store.Job
	sj      *SyncJob
	started time.Time
}

// processBatch runs claimed jobs to their end: completed, failed, or handed
// back, and reports them. stopping closes when the worker stops claiming:
// the batch then starts no further job and hands the rest back. It
// reports whether the batch may have made a job claimable: it handed an
// entity on to its next job, or a job did not complete (a retry may be due
// at once). Completions alone do not: the worker need not claim again for
// them.
func (w *Worker) processBatch(ctx context.Context, stopping <-chan struct{}, jobs []*store.Job) (freed bool) {
	for len(jobs) > 0 {
		results, redo, handedOn, err := w.runBatch(ctx, stopping, jobs)
		var uf *unprotectedFailure
		if errors.As(err, &uf) {
			// The batch was rolled back; record the failure on its own
			// and run the others again.
			w.fail(uf.attempt, uf.job, uf.err, uf.started)
			jobs = without(jobs, []*store.Job{uf.job})
			freed = true
			continue
		}
		if err == nil {
			w.report(results)
			freed = freed || handedOn || redo != nil
			for _, r := range results {
				freed = freed || r.Status != StatusCompleted
			}
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
				w.processBatch(ctx, stopping, []*store.Job{j})
			}
		default:
			w.fail(nil, jobs[0], err, w.now())
		}
		return true
	}
	return freed
}

// batchRun is one run of a batch in its transaction: begin, load, sync
// each job, finish. An error from a step means nothing will be committed.
type batchRun struct {
	w      *Worker
	ctx    context.Context
	cancel context.CancelCauseFunc
	hb     *batchHeartbeat
	tx     bun.Tx
	jobs   []*store.Job
	events map[int64]*store.Payload

	results   []JobResult
	done      []*batchJob  // Sync returned nil
	dead      []*store.Job // dead-lettered: their entities need a new head
	handedOn  bool         // the completion handed an entity on
	lost      []*store.Job // the failure could not be recorded: lease lost
	unstarted []*store.Job // not started: the worker is stopping

	attempts []*runningAttempt // see trace.go
}

// runBatch runs jobs in one transaction and returns, once it has
// committed, what became of each. When the completion finds that some
// job's lease was lost, it rolls everything back and returns the other
// jobs as redo, to run again in a new transaction. An error means nothing
// was committed; it is errShutdown or errLeaseLost when the batch was
// cancelled.
//
// A job that fails without having run a statement through the savepoint
// hook cannot be undone alone (it may have written through tx.Tx
// directly): the batch then rolls back and returns an *unprotectedFailure,
// so that its failure is recorded on its own and the other jobs run again
// (those that ran before it have their Sync called a second time; their
// first writes were rolled back).
func (w *Worker) runBatch(parent context.Context, stopping <-chan struct{}, jobs []*store.Job) (results []JobResult, redo []*store.Job, handedOn bool, err error) {
	b := &batchRun{w: w, jobs: jobs}
	b.ctx, b.cancel = context.WithCancelCause(parent)
	defer b.cancel(nil)
	defer func() { b.endAttempts(results, err) }()
	defer func() {
		if cause := context.Cause(b.ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
	}()
	b.hb = w.startHeartbeat(b.ctx, b.cancel, jobs)
	defer b.hb.stop()
	if err := b.begin(); err != nil {
		return nil, nil, false, err
	}
	committed := false
	defer func() {
		if !committed {
			_ = b.tx.Rollback()
		}
	}()
	if err := b.load(); err != nil {
		return nil, nil, false, err
	}
	rest := jobs
	if bs, ok := w.syncer.(BatchSyncer); ok && len(jobs) > 1 && !isClosed(stopping) {
		applied, err := b.syncBatch(bs)
		if err != nil {
			return nil, nil, false, err
		}
		if applied {
			rest = nil
		}
	}
	for i, job := range rest {
		if isClosed(stopping) || b.ctx.Err() != nil {
			b.unstarted = rest[i:]
			break
		}
		if err := b.sync(job); err != nil {
			return nil, nil, false, err
		}
	}
	// From here on the batch takes row locks on its jobs: the heartbeat
	// must not be waiting for them.
	b.hb.stop()
	redo, err = b.finish()
	if err != nil || redo != nil {
		return nil, redo, false, err
	}
	committed = true
	return b.results, nil, b.handedOn, nil
}

// begin opens the batch's transaction, which outlives a cancelled ctx so
// that the batch decides itself how it ends; statements still run under
// ctx.
func (b *batchRun) begin() error {
	tx, err := b.w.db.BeginTx(context.WithoutCancel(b.ctx), b.w.st.TxOptions())
	if err != nil {
		return wrapDBErr("starting a batch", err)
	}
	b.tx = tx
	return nil
}

// load reads the events of the batch's jobs, unless the claim read them.
func (b *batchRun) load() error {
	b.events = make(map[int64]*store.Payload, len(b.jobs))
	ids := make([]int64, 0, len(b.jobs))
	for _, j := range b.jobs {
		ev, read := j.Event()
		switch {
		case !read:
			ids = append(ids, j.InboxEventID)
		case ev != nil:
			b.events[ev.ID] = ev
		}
	}
	if len(ids) == 0 {
		return nil
	}
	evs, err := b.w.st.Payloads(b.ctx, b.tx, ids)
	if err != nil {
		return wrapDBErr("reading the batch's inbox events", err)
	}
	for i := range evs {
		b.events[evs[i].ID] = &evs[i]
	}
	return nil
}

// sync runs one job in its lazy savepoint. The only job of a batch runs
// without one: its failure rolls the whole transaction back, which undoes
// the same writes, and the attempt is recorded on its own (see
// runBatch); that saves the two round trips of a savepoint.
func (b *batchRun) sync(job *store.Job) error {
	sp := &jobSavepoint{tx: b.tx.Tx}
	actx, attempt := b.startAttempt(b.ctx, []*store.Job{job}, false)
	syncCtx := actx
	if len(b.jobs) > 1 {
		syncCtx = context.WithValue(actx, savepointKey{}, sp)
	}
	bj := &batchJob{ctx: actx, job: job, sj: b.w.syncJobOf(job, b.events[job.InboxEventID]), started: b.w.now()}
	var syncErr error
	if bj.sj == nil {
		syncErr = fmt.Errorf("tds: reading the job's inbox event %d: not found", job.InboxEventID)
	} else {
		syncErr = callSync(syncCtx, b.w.syncer, b.tx, bj.sj)
	}
	if cause := context.Cause(b.ctx); cause != nil {
		return cause
	}
	taken, spErr := sp.state()
	if spErr != nil {
		return wrapDBErr("opening a savepoint", spErr)
	}
	switch {
	case syncErr != nil && !taken:
		return &unprotectedFailure{job: job, err: syncErr, started: bj.started, attempt: attempt}
	case syncErr != nil:
		return b.fail(bj, syncErr)
	case taken:
		// Release now: a failure means Sync left the transaction unusable
		// and returned nil anyway; undo it and fail it.
		if _, err := b.tx.ExecContext(b.ctx, store.SavepointRelease); err != nil {
			unusable := fmt.Errorf("tds: Sync returned nil but left the transaction unusable: %w", err)
			if err := b.fail(bj, unusable); err != nil {
				return unusable
			}
			return nil
		}
	}
	b.done = append(b.done, bj)
	return nil
}

// syncBatch hands every job of the batch to bs at once, in a lazy
// savepoint like a job's. It reports whether they were all applied; when
// SyncBatch fails, its writes are undone and the caller syncs the jobs one
// at a time, so that the failing one fails alone.
func (b *batchRun) syncBatch(bs BatchSyncer) (applied bool, err error) {
	started := b.w.now()
	bjs := make([]*batchJob, len(b.jobs))
	sjs := make([]*SyncJob, len(b.jobs))
	for i, job := range b.jobs {
		sj := b.w.syncJobOf(job, b.events[job.InboxEventID])
		if sj == nil {
			return false, nil // Sync reports the missing event, alone
		}
		bjs[i], sjs[i] = &batchJob{job: job, sj: sj, started: started}, sj
	}
	sp := &jobSavepoint{tx: b.tx.Tx}
	actx, attempt := b.startAttempt(b.ctx, b.jobs, true)
	for _, bj := range bjs {
		bj.ctx = actx
	}
	var syncErr error
	defer func() {
		if !applied { // undone: the jobs are synced one at a time
			attempt.end(nil, errors.Join(syncErr, err, errSyncBatchUndone))
		}
	}()
	syncErr = callSyncBatch(context.WithValue(actx, savepointKey{}, sp), bs, b.tx, sjs)
	if cause := context.Cause(b.ctx); cause != nil {
		return false, cause
	}
	taken, spErr := sp.state()
	switch {
	case spErr != nil:
		return false, wrapDBErr("opening a savepoint", spErr)
	case syncErr != nil && !taken:
		// Nothing tells what SyncBatch wrote outside the savepoint: the
		// batch is rolled back and its jobs run one per transaction.
		return false, fmt.Errorf("tds: SyncBatch failed outside its savepoint: %w", syncErr)
	case syncErr != nil:
		if _, err := b.tx.ExecContext(b.ctx, store.SavepointRollback); err != nil {
			return false, wrapDBErr("rolling back a failed batch", err)
		}
		b.w.log.Debug("tds: SyncBatch failed; syncing the batch's jobs one at a time", "jobs", len(b.jobs), "err", syncErr)
		return false, nil
	case taken:
		if _, err := b.tx.ExecContext(b.ctx, store.SavepointRelease); err != nil {
			// SyncBatch returned nil but left the transaction unusable.
			if _, err := b.tx.ExecContext(b.ctx, store.SavepointRollback); err != nil {
				return false, wrapDBErr("rolling back a failed batch", err)
			}
			return false, nil
		}
	}
	b.done = append(b.done, bjs...)
	return true, nil
}

// fail undoes bj's writes and records its failed attempt.
func (b *batchRun) fail(bj *batchJob, syncErr error) error {
	if _, err := b.tx.ExecContext(b.ctx, store.SavepointRollback); err != nil {
		return wrapDBErr("rolling back a failed job", err)
	}
	var status Status
	var recErr error
	b.hb.drop(bj.job.ID, func() {
		status, recErr = b.w.recordFailure(bj.ctx, b.tx, bj.job, syncErr, bj.started)
	})
	switch {
	case errors.Is(recErr, errLeaseLost):
		b.w.log.Warn("tds: lost the lease of a failed job", "job", bj.job.ID)
		b.lost = append(b.lost, bj.job)
		return nil
	case recErr != nil:
		return wrapDBErr("recording a failed attempt", recErr)
	}
	if status == StatusDeadLetter {
		b.dead = append(b.dead, bj.job)
	}
	r := resultOf(bj.job, bj.sj, status, "", syncErr)
	r.StartedAt = bj.started
	b.results = append(b.results, r)
	return nil
}

// finish hands back the unstarted jobs, completes the done ones and
// commits. When a lease turns out lost it returns the jobs to run again
// instead, and the caller rolls back.
func (b *batchRun) finish() (redo []*store.Job, err error) {
	now := b.w.now()
	if len(b.unstarted) > 0 {
		back, err := b.w.handBackIn(b.ctx, b.tx, b.unstarted, now)
		if err != nil {
			return nil, err
		}
		b.results = append(b.results, back...)
	}
	if len(b.done) > 0 || len(b.dead) > 0 {
		done := make([]store.Completion, len(b.done))
		for i, bj := range b.done {
			done[i] = store.Completion{Job: bj.job, Outcome: string(bj.sj.outcome), Detail: bj.sj.detail}
		}
		completed, handedOn, err := b.w.st.Complete(b.ctx, b.tx, b.w.ws.workerID, done, b.dead, now)
		b.handedOn = handedOn
		if dberr.IsTxAborted(err) {
			// Only Syncs ran in the transaction before: one without a
			// savepoint (see sync) returned nil after a failed statement.
			return nil, fmt.Errorf("tds: Sync returned nil but left the transaction unusable: %w", err)
		}
		if err != nil {
			return nil, wrapDBErr("completing jobs", err)
		}
		if len(completed) < len(b.done) {
			for _, bj := range b.done {
				if !completed[bj.job.ID] {
					b.w.log.Warn("tds: lost the lease of a job before completing it; its work is rolled back", "job", bj.job.ID)
					b.lost = append(b.lost, bj.job)
				}
			}
			return without(b.jobs, b.lost), nil
		}
	}
	if err := b.tx.Commit(); err != nil {
		return nil, wrapDBErr("committing a batch", err)
	}
	at := b.w.cfg.now()
	for _, bj := range b.done {
		r := resultOf(bj.job, bj.sj, StatusCompleted, bj.sj.outcome, nil)
		r.StartedAt = bj.started
		b.results = append(b.results, r)
	}
	for i := range b.results {
		b.results[i].CommittedAt = at
	}
	return nil, nil
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
func without(jobs, drop []*store.Job) []*store.Job {
	out := make([]*store.Job, 0, len(jobs))
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

// resultOf is the JobResult of job; sj is nil when its event was not read.
func resultOf(job *store.Job, sj *SyncJob, st Status, outcome Outcome, err error) JobResult {
	r := JobResult{JobID: job.ID, InboxEventID: job.InboxEventID, EntityType: job.EntityType,
		EntityID: job.EntityID, Status: st, Outcome: outcome, Attempt: job.Attempt, Err: err}
	if sj != nil {
		r.ReceivedAt = sj.ReceivedAt
	}
	return r
}

// syncJobOf is what the Syncer gets for job, or nil without its event.
func (w *Worker) syncJobOf(job *store.Job, ev *store.Payload) *SyncJob {
	if ev == nil {
		return nil
	}
	return &SyncJob{
		JobID:        job.ID,
		InboxEventID: job.InboxEventID,
		Source:       job.Source,
		EventType:    job.EventType,
		EntityType:   job.EntityType,
		EntityID:     job.EntityID,
		Data:         ev.Payload,
		Version:      ev.Version.UTC(),
		ReceivedAt:   ev.ReceivedAt.UTC(),
		Priority:     job.Priority,
		Attempt:      job.Attempt,
		MaxAttempts:  job.MaxAttempts,
		WorkerID:     w.ws.workerID,
		outcome:      OutcomeSynced,
	}
}

func leasesOf(jobs []*store.Job) []store.Lease {
	out := make([]store.Lease, len(jobs))
	for i, j := range jobs {
		out[i] = store.LeaseOf(j)
	}
	return out
}

// handBackIn hands back the jobs still held by w, in db, and returns their
// results.
func (w *Worker) handBackIn(ctx context.Context, db bun.IDB, jobs []*store.Job, now time.Time) ([]JobResult, error) {
	back, err := w.st.HandBack(ctx, db, w.ws.workerID, leasesOf(jobs), now)
	if err != nil {
		return nil, wrapDBErr("handing jobs back", err)
	}
	byID := make(map[int64]*store.Job, len(jobs))
	for _, j := range jobs {
		byID[j.ID] = j
	}
	out := make([]JobResult, 0, len(back))
	for _, b := range back {
		out = append(out, resultOf(byID[b.ID], nil, Status(b.Status), "", nil))
	}
	return out, nil
}

// handBack returns the jobs w did not finish to the queue at once, in a
// statement of its own, and reports them.
func (w *Worker) handBack(jobs []*store.Job) {
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
	live    []*store.Job
	stopped bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// startHeartbeat renews the leases of jobs every third of the lease until
// stopped; when a lease turns out lost it cancels the batch with
// errLeaseLost. Where writers take turns on one connection (SQLite) it
// does nothing: no renewal and no rescue can run before the batch ends.
func (w *Worker) startHeartbeat(ctx context.Context, cancelBatch context.CancelCauseFunc, jobs []*store.Job) *batchHeartbeat {
	hb := &batchHeartbeat{live: append([]*store.Job(nil), jobs...), done: make(chan struct{})}
	if !w.st.ConcurrentWriters() {
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
	n, err := w.st.RenewLeases(ctx, w.db, w.ws.workerID, leasesOf(hb.live), w.now().Add(w.ws.leaseDuration))
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("tds: renewing the leases of a batch", "jobs", len(hb.live), "err", err)
		}
		return false
	}
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
	job     *store.Job
	err     error
	started time.Time
	attempt *runningAttempt // still running, ended by Worker.fail
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
	if _, err := sp.tx.ExecContext(ctx, store.SavepointOpen); err != nil {
		sp.err = err
		failed, cancel := context.WithCancel(ctx)
		cancel()
		return failed
	}
	return ctx
}

// AfterQuery does nothing.
func (savepointHook) AfterQuery(context.Context, *bun.QueryEvent) {}

// callSync runs s.Sync, turning a panic into an error.
func callSync(ctx context.Context, s Syncer, tx bun.Tx, job *SyncJob) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = WithCode(CodePanic, fmt.Errorf("tds: syncer panicked: %v", r))
		}
	}()
	return s.Sync(ctx, tx, job)
}

// callSyncBatch runs s.SyncBatch, turning a panic into an error.
func callSyncBatch(ctx context.Context, s BatchSyncer, tx bun.Tx, jobs []*SyncJob) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = WithCode(CodePanic, fmt.Errorf("tds: syncer panicked in SyncBatch: %v", r))
		}
	}()
	return s.SyncBatch(ctx, tx, jobs)
}

// cleanupCtx bounds the writes a worker makes after a sync, which must not
// depend on the (possibly cancelled) sync context.
func cleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// recordFailure is where every failed attempt is handled: it classifies
// syncErr (retry or dead letter, and when), records the attempt in tx
// under the job's lease (errLeaseLost when lost) and logs it. It returns
// the job's new status.
func (w *Worker) recordFailure(ctx context.Context, tx bun.IDB, job *store.Job, syncErr error, started time.Time) (Status, error) {
	f := classify(syncErr, job.Attempt, job.MaxAttempts, w.ws.retryPolicy)
	now := w.now()
	err := w.st.RecordFailure(ctx, tx, store.Failure{
		Job: job, Owner: w.ws.workerID, DeadLetter: f.deadLetter, RetryAt: now.Add(f.delay),
		Error: f.msg, Code: f.code, StartedAt: &started,
	}, now)
	if err != nil {
		return "", err
	}
	if f.deadLetter {
		w.log.WarnContext(ctx, "tds: job dead-lettered", "job", job.ID, "entity_type", job.EntityType,
			"entity_id", job.EntityID, "attempt", job.Attempt, "err", syncErr)
		return StatusDeadLetter, nil
	}
	w.log.InfoContext(ctx, "tds: job failed; will retry", "job", job.ID, "attempt", job.Attempt,
		"delay", f.delay, "err", syncErr)
	return StatusRetry, nil
}

// fail records a failed attempt of job in a transaction of its own and
// reports it; a dead letter hands its entity on to the next job. a is the
// attempt's, when it is still running, or nil.
func (w *Worker) fail(a *runningAttempt, job *store.Job, syncErr error, started time.Time) {
	ctx, cancel := a.cleanupCtx()
	defer cancel()
	var status Status
	err := w.db.RunInTx(ctx, w.st.TxOptions(), func(ctx context.Context, tx bun.Tx) error {
		var err error
		if status, err = w.recordFailure(ctx, tx, job, syncErr, started); err != nil || status != StatusDeadLetter {
			return err
		}
		return w.st.FinishDeadLetter(ctx, tx, job, w.now())
	})
	switch {
	case errors.Is(err, errLeaseLost):
		w.log.WarnContext(ctx, "tds: lost the lease of a failed job", "job", job.ID)
		a.end(nil, errors.Join(syncErr, err))
		return
	case err != nil:
		w.log.ErrorContext(ctx, "tds: recording a failed attempt; the job returns when its lease expires", "job", job.ID, "err", err)
		a.end(nil, errors.Join(syncErr, err))
		return
	}
	r := resultOf(job, nil, status, "", syncErr)
	r.CommittedAt, r.StartedAt = w.cfg.now(), started
	w.report([]JobResult{r})
	a.end([]JobResult{r}, nil)
}
