package store

import (
	"context"
	"time"

	"github.com/uptrace/bun"
)

// The statements of MetricCounts, alike in both dialects. Completed jobs
// are history, not queue: they are left out.
const (
	metricJobsSQL = `SELECT status, priority, COUNT(*) AS n FROM tds_sync_queue
WHERE status <> 'completed' GROUP BY status, priority`
	metricDeadSQL = `SELECT entity_type, COUNT(*) AS n FROM tds_sync_queue
WHERE status = 'dead_letter' GROUP BY entity_type`
	metricMiscSQL = `SELECT (SELECT COUNT(*) FROM tds_sync_queue WHERE blocked),
	(SELECT MIN(created_at) FROM tds_sync_queue WHERE status IN ('pending', 'retry')),
	(SELECT COUNT(*) FROM tds_inbox_events WHERE source = ? AND received_at >= ? AND sync_run_id IS NULL),
	(SELECT COALESCE(SUM(calls), 0) FROM tds_sync_calls WHERE source = ? AND day = ?),
	(SELECT COUNT(*) FROM tds_sync_runs WHERE source = ? AND status = 'running' AND locked_by IS NULL)`
)

// MetricCounts is what [Store.MetricCounts] counts, for the Prometheus
// metrics.
type MetricCounts struct {
	// Jobs counts the unfinished jobs by status and priority.
	Jobs []StatusCount
	// DeadLetters counts the dead letters by entity type.
	DeadLetters []EntityCount
	// Blocked counts the blocked jobs.
	Blocked int64
	// OldestWaiting is the creation time of the oldest pending or retry
	// job, if any.
	OldestWaiting *time.Time
	// SourceSince counts the events of the given source received since the
	// given time, reconciliation's repairs (which Zoho did not send) aside.
	SourceSince int64
	// APICallsToday counts the source's API calls saved in the budget's
	// ledger for the UTC day of the given time.
	APICallsToday int64
	// PausedRuns counts the source's runs paused at the daily budget (0
	// or 1: one runs at a time per source).
	PausedRuns int64
	// At is when the counts were read; set by the caller.
	At time.Time
}

// StatusCount is a count of jobs of one status and priority.
type StatusCount struct {
	Status   string `bun:"status"`
	Priority int    `bun:"priority"`
	N        int64  `bun:"n"`
}

// EntityCount is a count of jobs of one entity type.
type EntityCount struct {
	EntityType string `bun:"entity_type"`
	N          int64  `bun:"n"`
}

// MetricCounts implements [Store.MetricCounts].
func (c common) MetricCounts(ctx context.Context, db bun.IDB, source string, since time.Time) (*MetricCounts, error) {
	m := &MetricCounts{Jobs: []StatusCount{}, DeadLetters: []EntityCount{}}
	err := RunInTx(ctx, c, db, func(ctx context.Context, tx bun.IDB) error {
		if err := tx.NewRaw(metricJobsSQL).Scan(ctx, &m.Jobs); err != nil {
			return err
		}
		if err := tx.NewRaw(metricDeadSQL).Scan(ctx, &m.DeadLetters); err != nil {
			return err
		}
		var oldest bun.NullTime
		if err := tx.QueryRowContext(ctx, metricMiscSQL, source, since.UTC(), source, ledgerDay(since), source).
			Scan(&m.Blocked, &oldest, &m.SourceSince, &m.APICallsToday, &m.PausedRuns); err != nil {
			return err
		}
		if !oldest.IsZero() {
			t := oldest.UTC()
			m.OldestWaiting = &t
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}
