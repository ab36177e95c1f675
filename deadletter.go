package tds

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/record"
	"github.com/tdscore/tds/internal/store"
)

// Attempt is one failed attempt of a job: a row of tds_sync_attempts.
// Every failure is kept, not only the last, until the job is deleted.
type Attempt struct {
	ID        int64      `json:"id"`
	JobID     int64      `json:"job_id"`
	Attempt   int        `json:"attempt"`
	Worker    *string    `json:"worker,omitempty"`
	Error     string     `json:"error"`
	ErrorCode *string    `json:"error_code,omitempty"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	FailedAt  time.Time  `json:"failed_at"`
}

// Attempts returns every failed attempt of job jobID, oldest first.
func (q *Queue) Attempts(ctx context.Context, jobID int64) ([]Attempt, error) {
	rows, err := q.st.Attempts(ctx, q.db, jobID)
	if err != nil {
		return nil, wrapDBErr("listing attempts", err)
	}
	out := make([]Attempt, len(rows))
	for i, r := range rows {
		out[i] = Attempt{ID: r.ID, JobID: r.JobID, Attempt: r.Attempt, Worker: r.Worker, Error: r.Error,
			ErrorCode: r.ErrorCode, StartedAt: record.UTCPtr(r.StartedAt), FailedAt: r.FailedAt.UTC()}
	}
	return out, nil
}

// DeadLetterFilter selects dead letters. Zero fields select everything.
type DeadLetterFilter struct {
	// EntityType keeps jobs of this entity type.
	EntityType string
	// ErrorCode keeps jobs whose last error has this code.
	ErrorCode string
	// Since and Until keep jobs dead-lettered in [Since, Until).
	Since, Until time.Time
	// Page is the page of a listing; retrying by filter ignores its Limit.
	Page
}

func (f DeadLetterFilter) toStore() store.DeadLetterFilter {
	return store.DeadLetterFilter{EntityType: f.EntityType, ErrorCode: f.ErrorCode,
		Since: dbTimeOrZero(f.Since), Until: dbTimeOrZero(f.Until), BeforeID: f.BeforeID, Limit: f.Limit}
}

// ListDeadLetters returns the dead letters f selects, newest first.
func (q *Queue) ListDeadLetters(ctx context.Context, f DeadLetterFilter) ([]Job, error) {
	sf := f.toStore()
	sf.Limit = f.limit()
	rows, err := q.st.ListDeadLetters(ctx, q.db, sf)
	if err != nil {
		return nil, wrapDBErr("listing dead letters", err)
	}
	return jobsOf(rows), nil
}

// ErrorCodeCount is how many dead letters have an error code.
type ErrorCodeCount struct {
	Code  string `json:"code"`
	Count int64  `json:"count"`
}

// DeadLetterErrorCodes counts the dead letters by the code of their last
// error ([DeadLetterFilter.ErrorCode]), codes in order; dead letters
// whose error has no code are not counted.
func (q *Queue) DeadLetterErrorCodes(ctx context.Context) ([]ErrorCodeCount, error) {
	rows, err := q.st.DeadLetterCodes(ctx, q.db)
	if err != nil {
		return nil, wrapDBErr("counting dead letters by error code", err)
	}
	out := make([]ErrorCodeCount, len(rows))
	for i, r := range rows {
		out[i] = ErrorCodeCount{Code: r.Code, Count: r.N}
	}
	return out, nil
}

// RetryDeadLetter puts dead letter id back in the queue with a fresh set
// of attempts; its history of failed attempts is kept. It fails with an
// error wrapping [ErrNotFound] when id is not a dead letter.
func (q *Queue) RetryDeadLetter(ctx context.Context, id int64) (*Job, error) {
	n, err := q.retryDeadLetters(ctx, store.DeadLetterFilter{ID: id})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: dead letter %d", ErrNotFound, id)
	}
	return q.Get(ctx, id)
}

// RetryDeadLetters retries every dead letter f selects (f.Limit aside), as
// [Queue.RetryDeadLetter] does, and returns how many. With dryRun it
// changes nothing and returns how many it would retry.
func (q *Queue) RetryDeadLetters(ctx context.Context, f DeadLetterFilter, dryRun bool) (int64, error) {
	if dryRun {
		n, err := q.st.CountDeadLetters(ctx, q.db, f.toStore())
		if err != nil {
			return 0, wrapDBErr("counting dead letters", err)
		}
		return n, nil
	}
	return q.retryDeadLetters(ctx, f.toStore())
}

func (q *Queue) retryDeadLetters(ctx context.Context, f store.DeadLetterFilter) (int64, error) {
	now := dbTime(q.cfg.now())
	var n int64
	err := store.RunInTx(ctx, q.st, q.db, func(ctx context.Context, tx bun.IDB) error {
		var err error
		n, err = q.st.RetryDeadLetters(ctx, tx, f, now)
		return err
	})
	if err != nil {
		return 0, wrapDBErr("retrying dead letters", err)
	}
	return n, nil
}

// DiscardDeadLetter gives up on dead letter id for good: the job is
// completed with outcome [OutcomeDiscarded] and the reason, and its inbox
// event is marked processed. It fails with an error wrapping [ErrNotFound]
// when id is not a dead letter.
func (q *Queue) DiscardDeadLetter(ctx context.Context, id int64, reason string) error {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return errors.New("tds: discarding a dead letter: a reason is required")
	}
	now := dbTime(q.cfg.now())
	err := store.RunInTx(ctx, q.st, q.db, func(ctx context.Context, tx bun.IDB) error {
		return q.st.DiscardDeadLetter(ctx, tx, id, reason, now)
	})
	if errors.Is(err, store.ErrNoRows) {
		return fmt.Errorf("%w: dead letter %d", ErrNotFound, id)
	}
	return wrapDBErr("discarding dead letter", err)
}
