package tds

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Defaults of housekeeping.
const (
	// DefaultHousekeepingInterval is how often the leading Worker rescues
	// jobs with expired leases and deletes old rows.
	DefaultHousekeepingInterval = 30 * time.Second
	// DefaultRetention is how long completed jobs and processed inbox
	// events are kept.
	DefaultRetention = 7 * 24 * time.Hour
)

// housekeepingLockKey is the PostgreSQL advisory lock whose holder runs
// housekeeping: "tds.hous" as an int64.
const housekeepingLockKey = 0x7464732e686f7573

// WithHousekeepingInterval sets how often housekeeping (lease rescue,
// retention cleanup) runs.
// Applies to [NewWorker]. Defaults to [DefaultHousekeepingInterval].
func WithHousekeepingInterval(d time.Duration) Option {
	return newOption("WithHousekeepingInterval", forWorker, func(c *config) error {
		if d <= 0 {
			return optErr("WithHousekeepingInterval", "must be > 0, got %s", d)
		}
		c.worker.housekeepingInterval = d
		return nil
	})
}

// WithRetention sets how long completed jobs and processed inbox events
// are kept before housekeeping deletes them. Dead letters and unprocessed
// events are never deleted.
// Applies to [NewWorker]. Defaults to [DefaultRetention].
func WithRetention(d time.Duration) Option {
	return newOption("WithRetention", forWorker, func(c *config) error {
		if d <= 0 {
			return optErr("WithRetention", "must be > 0, got %s", d)
		}
		c.worker.retention = d
		return nil
	})
}

// housekeep runs the periodic tasks until ctx is done. On PostgreSQL only
// the Worker holding a session advisory lock runs them; the lock lives on a
// dedicated connection, so a process that dies hands the role on as soon
// as the server notices the connection is gone. On SQLite every Worker of
// the process runs them; the single writer keeps them apart.
func (w *Worker) housekeep(ctx context.Context) {
	var leader *bun.Conn
	defer func() {
		if leader != nil {
			_, _ = leader.ExecContext(context.Background(), "SELECT pg_advisory_unlock(?)", int64(housekeepingLockKey))
			_ = leader.Close()
		}
	}()
	t := time.NewTicker(w.ws.housekeepingInterval)
	defer t.Stop()
	for {
		if isPostgres(w.db) {
			leader = w.lead(ctx, leader)
		}
		if leader != nil || !isPostgres(w.db) {
			if err := w.runHousekeeping(ctx); err != nil && ctx.Err() == nil {
				w.log.Error("tds: housekeeping", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lead returns the connection holding the housekeeping lock, taking the
// lock if it is free, or nil when another process holds it.
func (w *Worker) lead(ctx context.Context, conn *bun.Conn) *bun.Conn {
	if conn != nil {
		if err := conn.PingContext(ctx); err == nil {
			return conn
		}
		_ = conn.Close() // the lock went with the session
	}
	c, err := w.db.Conn(ctx)
	if err != nil {
		return nil
	}
	conn = &c
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock(?)", int64(housekeepingLockKey)).Scan(&ok); err != nil || !ok {
		_ = conn.Close()
		return nil
	}
	w.log.Debug("tds: leading housekeeping")
	return conn
}

// runHousekeeping rescues expired leases and deletes rows past retention.
func (w *Worker) runHousekeeping(ctx context.Context) error {
	if _, err := w.rescue(ctx); err != nil {
		return err
	}
	if _, err := w.repairHeads(ctx); err != nil {
		return err
	}
	cutoff := w.now().Add(-w.ws.retention)
	if _, err := (&Queue{db: w.db, cfg: w.cfg}).DeleteCompleted(ctx, cutoff); err != nil {
		return err
	}
	_, err := deleteProcessedEvents(ctx, w.db, cutoff)
	return err
}

// rescue puts jobs whose lease expired back in the queue, or dead-letters
// them when they have no attempts left. The lost attempt is recorded with
// code [CodeLeaseExpired]. A worker still holding such a job cannot
// complete it afterwards: completion requires status processing and the
// worker's own lease.
func (w *Worker) rescue(ctx context.Context) (int, error) {
	now := w.now()
	const msg = "lease expired: the worker stopped renewing it (it crashed or lost the database)"
	var rescued []Job
	err := w.db.RunInTx(ctx, readCommitted(w.db), func(ctx context.Context, tx bun.Tx) error {
		rescued = nil
		// The jobs that will be dead-lettered hand their entities on to
		// the next job: their entities are locked first, as a worker
		// completing a batch does, so the two cannot deadlock. No job can
		// join them between this SELECT and the UPDATE: a lease only
		// moves forward.
		var doomed []Job
		if err := tx.NewSelect().Model(&doomed).Column("id", "source", "entity_type", "source_entity_id").
			Where("status = ?", StatusProcessing).Where("locked_until < ?", now).
			Where("attempt_count >= max_retry_attempts").
			Scan(ctx); err != nil {
			return err
		}
		keys := make([]entityKey, 0, len(doomed))
		for i := range doomed {
			keys = append(keys, jobEntity(&doomed[i]))
		}
		if err := lockEntities(ctx, tx, keys); err != nil {
			return err
		}
		if err := tx.NewRaw(`UPDATE tds_sync_queue
SET status = CASE WHEN attempt_count >= max_retry_attempts THEN 'dead_letter' ELSE 'retry' END,
	next_retry_at = ?, last_error = ?, last_error_code = ?, locked_until = NULL, updated_at = ?
WHERE status = 'processing' AND locked_until < ?
RETURNING *`, now, msg, CodeLeaseExpired, now, now).Scan(ctx, &rescued); err != nil {
			return err
		}
		if len(rescued) == 0 {
			return nil
		}
		attempts := make([]Attempt, 0, len(rescued))
		var dead []int64
		code := CodeLeaseExpired
		for _, j := range rescued {
			attempts = append(attempts, Attempt{
				JobID: j.ID, Attempt: j.AttemptCount, Worker: j.LockedBy,
				Error: msg, ErrorCode: &code, FailedAt: now,
			})
			if j.Status == StatusDeadLetter {
				dead = append(dead, j.InboxEventID)
			}
		}
		if _, err := tx.NewInsert().Model(&attempts).Exec(ctx); err != nil {
			return err
		}
		if len(dead) > 0 {
			if _, err := tx.NewUpdate().Model((*InboxEvent)(nil)).
				Set("processed_at = ?", now).
				Where("id IN (?)", bun.List(dead)).
				Exec(ctx); err != nil {
				return err
			}
			var deadIDs []int64
			for i := range rescued {
				if rescued[i].Status == StatusDeadLetter {
					deadIDs = append(deadIDs, rescued[i].ID)
				}
			}
			// Their entities were locked above.
			if _, err := unblockNext(ctx, tx, deadIDs, deadIDs, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, wrapDBErr("rescuing expired leases", err)
	}
	w.stats.rescued.Add(int64(len(rescued)))
	for _, j := range rescued {
		w.log.Warn("tds: rescued a job whose lease expired", "job", j.ID, "holder", deref(j.LockedBy), "status", j.Status)
	}
	return len(rescued), nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// deleteProcessedEvents deletes inbox events processed before cutoff, in
// batches, keeping any whose job is not completed (a dead letter's event
// is processed too, and deleting it would delete the dead letter). An
// event without processed_at was processed when its job completed (see
// completedJobSQL); deleting the event deletes the job.
func deleteProcessedEvents(ctx context.Context, db bun.IDB, cutoff time.Time) (int64, error) {
	cut := dbTime(cutoff)
	// Two selections, each served by its own index: events marked
	// processed (their processed_at), then events of completed jobs
	// (the queue's status and completed_at), which Queue.DeleteCompleted
	// has normally taken already.
	marked := func() *bun.SelectQuery {
		return db.NewSelect().Model((*InboxEvent)(nil)).Column("id").
			Where("processed_at < ?", cut).
			Where("NOT EXISTS (SELECT 1 FROM tds_sync_queue AS q WHERE q.inbox_event_id = ?TableAlias.id AND q.status <> ?)", StatusCompleted).
			Limit(DefaultCleanupBatch)
	}
	completed := func() *bun.SelectQuery {
		return db.NewSelect().Model((*Job)(nil)).Column("inbox_event_id").
			Where("status = ?", StatusCompleted).
			Where("completed_at < ?", cut).
			Where("EXISTS (SELECT 1 FROM tds_inbox_events AS e WHERE e.id = ?TableAlias.inbox_event_id AND e.processed_at IS NULL)").
			Limit(DefaultCleanupBatch)
	}
	var total int64
	for _, sub := range []func() *bun.SelectQuery{marked, completed} {
		for {
			res, err := db.NewDelete().Model((*InboxEvent)(nil)).Where("id IN (?)", sub()).Exec(ctx)
			if err != nil {
				return total, wrapDBErr("deleting processed inbox events", err)
			}
			n, _ := res.RowsAffected()
			total += n
			if n < DefaultCleanupBatch {
				break
			}
		}
	}
	return total, nil
}

// stuckEntitiesSQL finds the entities whose unfinished jobs are all
// blocked: no head will ever unblock them.
var stuckEntitiesSQL = `SELECT b.id, b.source, b.entity_type, b.source_entity_id
FROM tds_sync_queue AS b WHERE b.blocked AND NOT ` + fmt.Sprintf(entityHeadSQL, "b", "0") + `
LIMIT 1000`

// repairHeads gives a head to every entity whose jobs are all blocked.
// While the rules of entity.go hold there is none: rows changed or deleted
// by hand can make one, and its jobs would wait forever. It returns how
// many jobs it unblocked.
func (w *Worker) repairHeads(ctx context.Context) (int64, error) {
	var stuck []Job
	if err := w.db.NewRaw(stuckEntitiesSQL).Scan(ctx, &stuck); err != nil {
		return 0, wrapDBErr("looking for entities without a head", err)
	}
	if len(stuck) == 0 {
		return 0, nil
	}
	keys := make([]entityKey, len(stuck))
	ids := make([]int64, len(stuck))
	for i := range stuck {
		keys[i], ids[i] = jobEntity(&stuck[i]), stuck[i].ID
	}
	var n int64
	err := w.db.RunInTx(ctx, readCommitted(w.db), func(ctx context.Context, tx bun.Tx) error {
		if err := lockEntities(ctx, tx, keys); err != nil {
			return err
		}
		var err error
		n, err = unblockNext(ctx, tx, ids, nil, w.now())
		return err
	})
	if err != nil {
		return 0, wrapDBErr("unblocking entities without a head", err)
	}
	if n > 0 {
		w.log.Warn("tds: unblocked jobs whose entity had no head (rows changed by hand?)", "jobs", n)
	}
	return n, nil
}
