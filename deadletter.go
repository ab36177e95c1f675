package tds

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// Attempt is one failed attempt of a job: a row of tds_sync_attempts.
// Every failure is kept, not only the last, until the job is deleted.
type Attempt struct {
	bun.BaseModel `bun:"table:tds_sync_attempts"`

	ID        int64      `bun:"id,pk,autoincrement" json:"id"`
	JobID     int64      `bun:"job_id,notnull" json:"job_id"`
	Attempt   int        `bun:"attempt,notnull" json:"attempt"`
	Worker    *string    `bun:"worker" json:"worker,omitempty"`
	Error     string     `bun:"error,notnull" json:"error"`
	ErrorCode *string    `bun:"error_code" json:"error_code,omitempty"`
	StartedAt *time.Time `bun:"started_at" json:"started_at,omitempty"`
	FailedAt  time.Time  `bun:"failed_at,notnull" json:"failed_at"`
}

// Attempts returns every failed attempt of job jobID, oldest first.
func (q *Queue) Attempts(ctx context.Context, jobID int64) ([]Attempt, error) {
	var out []Attempt
	err := q.db.NewSelect().Model(&out).Where("job_id = ?", jobID).Order("id ASC").Scan(ctx)
	if err != nil {
		return nil, wrapDBErr("listing attempts", err)
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
	// Limit caps how many jobs are listed; 0 means 100. Retrying by filter
	// ignores it.
	Limit int
	// BeforeID lists only jobs with a smaller id: the cursor of the next
	// page when listing (newest first).
	BeforeID int64
}

func (f DeadLetterFilter) apply(q *bun.SelectQuery) *bun.SelectQuery {
	q = q.Where("status = ?", StatusDeadLetter)
	if f.EntityType != "" {
		q = q.Where("entity_type = ?", f.EntityType)
	}
	if f.ErrorCode != "" {
		q = q.Where("last_error_code = ?", f.ErrorCode)
	}
	if !f.Since.IsZero() {
		q = q.Where("updated_at >= ?", dbTime(f.Since))
	}
	if !f.Until.IsZero() {
		q = q.Where("updated_at < ?", dbTime(f.Until))
	}
	return q
}

// ListDeadLetters returns the dead letters f selects, newest first.
func (q *Queue) ListDeadLetters(ctx context.Context, f DeadLetterFilter) ([]Job, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var out []Job
	sel := f.apply(q.db.NewSelect().Model(&out))
	if f.BeforeID > 0 {
		sel = sel.Where("id < ?", f.BeforeID)
	}
	if err := sel.Order("id DESC").Limit(int64(limit)).Scan(ctx); err != nil {
		return nil, wrapDBErr("listing dead letters", err)
	}
	return out, nil
}

// RetryDeadLetter puts dead letter id back in the queue with a fresh set
// of attempts; its history of failed attempts is kept. It fails with an
// error wrapping [ErrNotFound] when id is not a dead letter.
func (q *Queue) RetryDeadLetter(ctx context.Context, id int64) (*Job, error) {
	n, err := q.retryDeadLetters(ctx, func(s *bun.SelectQuery) *bun.SelectQuery {
		return s.Where("status = ?", StatusDeadLetter).Where("id = ?", id)
	})
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
		n, err := f.apply(q.db.NewSelect().Model((*Job)(nil))).Count(ctx)
		if err != nil {
			return 0, wrapDBErr("counting dead letters", err)
		}
		return int64(n), nil
	}
	return q.retryDeadLetters(ctx, f.apply)
}

func (q *Queue) retryDeadLetters(ctx context.Context, where func(*bun.SelectQuery) *bun.SelectQuery) (int64, error) {
	now := dbTime(q.cfg.now())
	var n int64
	err := runInTx(ctx, q.db, func(ctx context.Context, tx bun.IDB) error {
		n = 0
		var jobs []*Job
		if err := where(tx.NewSelect().Model(&jobs).
			Column("id", "source", "entity_type", "source_entity_id")).
			Order("id").Scan(ctx); err != nil {
			return err
		}
		if len(jobs) == 0 {
			return nil
		}
		// A retried job waits behind its entity's head, if any, and the
		// retried jobs of one entity run oldest first: see entity.go.
		keys := make([]entityKey, len(jobs))
		for i, j := range jobs {
			keys[i] = jobEntity(j)
		}
		if err := lockEntities(ctx, tx, keys); err != nil {
			return err
		}
		if err := blockBehindHeads(ctx, tx, jobs); err != nil {
			return err
		}
		var heads, blocked []int64
		for _, j := range jobs {
			if j.Blocked {
				blocked = append(blocked, j.ID)
			} else {
				heads = append(heads, j.ID)
			}
		}
		var events []int64
		headsGone := false
		for _, g := range []struct {
			ids     []int64
			blocked bool
		}{{heads, false}, {blocked, true}} {
			if len(g.ids) == 0 {
				continue
			}
			// Still dead letters: one may have been retried or discarded
			// since the SELECT.
			var got []int64
			if err := tx.NewUpdate().Model((*Job)(nil)).
				Set("status = ?", StatusPending).
				Set("blocked = ?", g.blocked).
				Set("attempt_count = 0").
				Set("next_retry_at = ?", now).
				Set("locked_by = NULL").
				Set("locked_until = NULL").
				Set("updated_at = ?", now).
				Where("id IN (?)", bun.List(g.ids)).
				Where("status = ?", StatusDeadLetter).
				Returning("inbox_event_id").
				Scan(ctx, &got); err != nil {
				return err
			}
			events = append(events, got...)
			headsGone = headsGone || !g.blocked && len(got) < len(g.ids)
		}
		if len(events) == 0 {
			return nil
		}
		if headsGone && len(blocked) > 0 {
			// A job meant to be a head is no longer a dead letter: the
			// jobs blocked behind it need another.
			if _, err := unblockNext(ctx, tx, blocked, nil, now); err != nil {
				return err
			}
		}
		// Their inbox events are unprocessed again.
		if _, err := tx.NewUpdate().Model((*InboxEvent)(nil)).
			Set("processed_at = NULL").
			Where("id IN (?)", bun.List(events)).
			Exec(ctx); err != nil {
			return err
		}
		n = int64(len(events))
		return notifyQueued(ctx, tx)
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
	err := runInTx(ctx, q.db, func(ctx context.Context, tx bun.IDB) error {
		var inboxID int64
		err := tx.NewUpdate().Model((*Job)(nil)).
			Set("status = ?", StatusCompleted).
			Set("outcome = ?", OutcomeDiscarded).
			Set("outcome_detail = ?", reason).
			Set("completed_at = ?", now).
			Set("updated_at = ?", now).
			Where("id = ?", id).
			Where("status = ?", StatusDeadLetter).
			Returning("inbox_event_id").
			Scan(ctx, &inboxID)
		if err != nil {
			return err
		}
		_, err = tx.NewUpdate().Model((*InboxEvent)(nil)).
			Set("processed_at = ?", now).
			Where("id = ?", inboxID).
			Exec(ctx)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: dead letter %d", ErrNotFound, id)
	}
	return wrapDBErr("discarding dead letter", err)
}
