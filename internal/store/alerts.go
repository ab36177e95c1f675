package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/uptrace/bun"
)

// Alert is a row of tds_alerts: one rule's alert for one label set, from
// its first breaching evaluation to its resolution.
type Alert struct {
	bun.BaseModel `bun:"table:tds_alerts"`

	ID          int64           `bun:"id,pk,autoincrement"`
	Rule        string          `bun:"rule"`
	Fingerprint string          `bun:"fingerprint"`
	Labels      json.RawMessage `bun:"labels"`
	State       string          `bun:"state"`
	Severity    string          `bun:"severity"`
	Value       float64         `bun:"value"`
	// FiredValue is the value when the alert fired, PeakValue the highest
	// while firing; nil while pending (and for alerts resolved before
	// migration 0010 kept them).
	FiredValue     *float64   `bun:"fired_value"`
	PeakValue      *float64   `bun:"peak_value"`
	StartedAt      time.Time  `bun:"started_at"`
	FiringAt       *time.Time `bun:"firing_at"`
	ResolvedAt     *time.Time `bun:"resolved_at"`
	AcknowledgedAt *time.Time `bun:"acknowledged_at"`
	SilencedUntil  *time.Time `bun:"silenced_until"`
	// NotifyClaimedAt is when an evaluation last claimed the sending of
	// a notification (the claim that keeps two processes from both
	// sending); LastNotifiedAt is when a receiver last accepted one, set
	// by MarkAlertNotified alone.
	NotifyClaimedAt *time.Time `bun:"notify_claimed_at"`
	LastNotifiedAt  *time.Time `bun:"last_notified_at"`
	UpdatedAt       time.Time  `bun:"updated_at"`
	// Revision is bumped by every change; UpdateAlert and DeleteAlert
	// change a row only at the revision the caller read.
	Revision int64 `bun:"revision"`
}

// Count is one in-memory counter's increase during one minute.
type Count struct {
	Name   string
	Minute time.Time
	N      int64
}

// SyncOutcomes counts the sync attempts of a window: Failed are the failed
// attempts (retried or dead-lettered), Completed the jobs completed.
type SyncOutcomes struct {
	Failed    int64 `bun:"failed"`
	Completed int64 `bun:"completed"`
}

// RunDrift is the drift of one reconciliation run: the drift rows it
// found and how many of them are not resolved.
type RunDrift struct {
	RunID      int64      `bun:"id"`
	Mode       string     `bun:"mode"`
	FinishedAt *time.Time `bun:"finished_at"`
	Found      int64      `bun:"found"`
	Unresolved int64      `bun:"unresolved"`
}

// LastRun is the last completed reconciliation run of a source.
type LastRun struct {
	FinishedAt time.Time `bun:"finished_at"`
	Repaired   int64     `bun:"repaired"`
}

// Alerts are the operations of the alert evaluation: the alerts
// themselves, the counters processes flush, and the measures the built-in
// rules read.
type Alerts interface {
	// OpenAlerts returns the pending and firing alerts, by id.
	OpenAlerts(ctx context.Context, db bun.IDB) ([]Alert, error)
	// ListAlerts returns the alerts in state (any when ""), newest first.
	ListAlerts(ctx context.Context, db bun.IDB, state string, limit int) ([]Alert, error)
	// GetAlert returns one alert, or ErrNoRows.
	GetAlert(ctx context.Context, db bun.IDB, id int64) (*Alert, error)
	// InsertAlert inserts a and sets its ID, unless an open alert of its
	// fingerprint exists already: then it returns false.
	InsertAlert(ctx context.Context, db bun.IDB, a *Alert) (bool, error)
	// UpdateAlert writes a's evaluation fields (state, severity, values,
	// firing, resolution, notification claim) if the row is still at
	// a.Revision, and bumps a.Revision; false when it was not.
	UpdateAlert(ctx context.Context, db bun.IDB, a *Alert) (bool, error)
	// MarkAlertNotified records that a notification of alert id was
	// delivered at at (kept if a later one was recorded already). It
	// leaves the revision alone: it is no evaluation field.
	MarkAlertNotified(ctx context.Context, db bun.IDB, id int64, at time.Time) error
	// DeleteAlert deletes a pending alert still at revision.
	DeleteAlert(ctx context.Context, db bun.IDB, id, revision int64) (bool, error)
	// AckAlert acknowledges an alert; ErrNoRows when there is none.
	AckAlert(ctx context.Context, db bun.IDB, id int64, at time.Time) error
	// SilenceAlert silences an alert until; ErrNoRows when there is none.
	SilenceAlert(ctx context.Context, db bun.IDB, id int64, until, at time.Time) error

	// AddCounts adds process's counts to the per-minute counters.
	AddCounts(ctx context.Context, db bun.IDB, process string, counts []Count) error
	// SumCount sums a counter over every process from the minute of since.
	SumCount(ctx context.Context, db bun.IDB, name string, since time.Time) (int64, error)
	// DeleteCounts deletes the counters of minutes before cutoff.
	DeleteCounts(ctx context.Context, db bun.IDB, cutoff time.Time) (int64, error)

	// OldestWaiting returns when the oldest claimable job became due (nil
	// when none waits).
	OldestWaiting(ctx context.Context, db bun.IDB, at time.Time) (*time.Time, error)
	// DeadLetters counts the dead letters waiting for an operator (neither
	// retried nor discarded), by entity type.
	DeadLetters(ctx context.Context, db bun.IDB) (map[string]int64, error)
	// SyncOutcomesSince counts failed attempts and completed jobs after
	// since.
	SyncOutcomesSince(ctx context.Context, db bun.IDB, since time.Time) (SyncOutcomes, error)
	// LastReceived returns when source's last webhook (not a
	// reconciliation's repair) was received, nil when none was.
	LastReceived(ctx context.Context, db bun.IDB, source string) (*time.Time, error)
	// CountReceived counts source's webhooks received from since.
	CountReceived(ctx context.Context, db bun.IDB, source string, since time.Time) (int64, error)
	// LastCompletedRun returns source's last completed reconciliation run,
	// nil when none completed.
	LastCompletedRun(ctx context.Context, db bun.IDB, source string) (*LastRun, error)
	// LatestRunDrift returns the drift of source's last run of each mode
	// that is no longer running, dry runs aside, by mode.
	LatestRunDrift(ctx context.Context, db bun.IDB, source string) ([]RunDrift, error)
	// RunsNeedingConfirmation returns the ids of the runs (of any source)
	// waiting for an operator to confirm their deletes, by id.
	RunsNeedingConfirmation(ctx context.Context, db bun.IDB) ([]int64, error)
}

const (
	alertColumns = `id, rule, fingerprint, labels, state, severity, value, fired_value, peak_value, started_at,
	firing_at, resolved_at, acknowledged_at, silenced_until, notify_claimed_at, last_notified_at, updated_at, revision`
	openAlertsSQL = `SELECT ` + alertColumns + ` FROM tds_alerts WHERE state IN ('pending', 'firing') ORDER BY id`
	listAlertsSQL = `SELECT ` + alertColumns + ` FROM tds_alerts WHERE (? = '' OR state = ?) ORDER BY id DESC LIMIT ?`
	getAlertSQL   = `SELECT ` + alertColumns + ` FROM tds_alerts WHERE id = ?`
	// The partial unique index keeps one open alert per fingerprint.
	insertAlertSQL = `INSERT INTO tds_alerts (rule, fingerprint, labels, state, severity, value, fired_value, peak_value,
	started_at, firing_at, resolved_at, notify_claimed_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
RETURNING id`
	updateAlertSQL = `UPDATE tds_alerts SET state = ?, severity = ?, value = ?, fired_value = ?, peak_value = ?,
	firing_at = ?, resolved_at = ?, notify_claimed_at = ?, updated_at = ?, revision = revision + 1
WHERE id = ? AND revision = ?`
	markNotifiedSQL = `UPDATE tds_alerts SET last_notified_at = ?
WHERE id = ? AND (last_notified_at IS NULL OR last_notified_at < ?)`
	deleteAlertSQL  = `DELETE FROM tds_alerts WHERE id = ? AND revision = ? AND state = 'pending'`
	ackAlertSQL     = `UPDATE tds_alerts SET acknowledged_at = ?, updated_at = ?, revision = revision + 1 WHERE id = ?`
	silenceAlertSQL = `UPDATE tds_alerts SET silenced_until = ?, updated_at = ?, revision = revision + 1 WHERE id = ?`

	addCountSQL = `INSERT INTO tds_alert_counters (name, minute, process, n) VALUES (?, ?, ?, ?)
ON CONFLICT (name, minute, process) DO UPDATE SET n = tds_alert_counters.n + excluded.n`
	sumCountSQL    = `SELECT COALESCE(SUM(n), 0) FROM tds_alert_counters WHERE name = ? AND minute >= ?`
	deleteCountSQL = `DELETE FROM tds_alert_counters WHERE minute < ?`

	oldestWaitingSQL = `SELECT MIN(next_retry_at) FROM tds_sync_queue
WHERE status IN ('pending', 'retry') AND NOT blocked AND next_retry_at <= ?`
	deadLettersSQL = `SELECT entity_type, COUNT(*) AS n FROM tds_sync_queue
WHERE status = 'dead_letter' GROUP BY entity_type`
	syncOutcomesSQL = `SELECT
	(SELECT COUNT(*) FROM tds_sync_attempts WHERE failed_at > ?) AS failed,
	(SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'completed' AND completed_at > ?
		AND (outcome IS NULL OR outcome <> 'discarded')) AS completed`
	lastReceivedSQL  = `SELECT MAX(received_at) FROM tds_inbox_events WHERE source = ? AND sync_run_id IS NULL`
	countReceivedSQL = `SELECT COUNT(*) FROM tds_inbox_events
WHERE source = ? AND sync_run_id IS NULL AND received_at >= ?`
	lastCompletedRunSQL = `SELECT finished_at, repaired FROM tds_sync_runs
WHERE source = ? AND status = 'completed' AND NOT dry_run AND finished_at IS NOT NULL
ORDER BY finished_at DESC, id DESC LIMIT 1`
	// The newest run of each mode that has stopped running: a run needing
	// confirmation has stopped too, its pending deletes unresolved drift.
	latestRunDriftSQL = `SELECT r.id, r.mode, r.finished_at,
	(SELECT COUNT(*) FROM tds_sync_drift d WHERE d.run_id = r.id) AS found,
	(SELECT COUNT(*) FROM tds_sync_drift d WHERE d.run_id = r.id AND NOT d.resolved) AS unresolved
FROM tds_sync_runs r
WHERE r.id IN (SELECT MAX(id) FROM tds_sync_runs WHERE source = ? AND NOT dry_run AND status <> 'running' GROUP BY mode)
ORDER BY r.mode`
	runsNeedingConfirmationSQL = `SELECT id FROM tds_sync_runs WHERE status = 'needs_confirmation' ORDER BY id`
)

// OpenAlerts implements [Alerts.OpenAlerts].
func (c common) OpenAlerts(ctx context.Context, db bun.IDB) ([]Alert, error) {
	out := []Alert{}
	err := db.NewRaw(openAlertsSQL).Scan(ctx, &out)
	return out, err
}

// ListAlerts implements [Alerts.ListAlerts].
func (c common) ListAlerts(ctx context.Context, db bun.IDB, state string, limit int) ([]Alert, error) {
	out := []Alert{}
	err := db.NewRaw(listAlertsSQL, state, state, limit).Scan(ctx, &out)
	return out, err
}

// GetAlert implements [Alerts.GetAlert].
func (c common) GetAlert(ctx context.Context, db bun.IDB, id int64) (*Alert, error) {
	var out []Alert
	if err := db.NewRaw(getAlertSQL, id).Scan(ctx, &out); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, ErrNoRows
	}
	return &out[0], nil
}

// InsertAlert implements [Alerts.InsertAlert].
func (c common) InsertAlert(ctx context.Context, db bun.IDB, a *Alert) (bool, error) {
	var id int64
	err := db.NewRaw(insertAlertSQL, a.Rule, a.Fingerprint, string(orEmptyObject(a.Labels)), a.State, a.Severity,
		a.Value, a.FiredValue, a.PeakValue, a.StartedAt.UTC(), utcPtr(a.FiringAt), utcPtr(a.ResolvedAt),
		utcPtr(a.NotifyClaimedAt), a.UpdatedAt.UTC()).Scan(ctx, &id)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	a.ID, a.Revision = id, 0
	return true, nil
}

// UpdateAlert implements [Alerts.UpdateAlert].
func (c common) UpdateAlert(ctx context.Context, db bun.IDB, a *Alert) (bool, error) {
	res, err := db.ExecContext(ctx, updateAlertSQL, a.State, a.Severity, a.Value, a.FiredValue, a.PeakValue,
		utcPtr(a.FiringAt), utcPtr(a.ResolvedAt), utcPtr(a.NotifyClaimedAt), a.UpdatedAt.UTC(), a.ID, a.Revision)
	if err != nil {
		return false, err
	}
	if rowsAffected(res) == 0 {
		return false, nil
	}
	a.Revision++
	return true, nil
}

// MarkAlertNotified implements [Alerts.MarkAlertNotified].
func (c common) MarkAlertNotified(ctx context.Context, db bun.IDB, id int64, at time.Time) error {
	_, err := db.ExecContext(ctx, markNotifiedSQL, at.UTC(), id, at.UTC())
	return err
}

// DeleteAlert implements [Alerts.DeleteAlert].
func (c common) DeleteAlert(ctx context.Context, db bun.IDB, id, revision int64) (bool, error) {
	res, err := db.ExecContext(ctx, deleteAlertSQL, id, revision)
	if err != nil {
		return false, err
	}
	return rowsAffected(res) > 0, nil
}

// AckAlert implements [Alerts.AckAlert].
func (c common) AckAlert(ctx context.Context, db bun.IDB, id int64, at time.Time) error {
	return c.setAlert(ctx, db, ackAlertSQL, at.UTC(), at.UTC(), id)
}

// SilenceAlert implements [Alerts.SilenceAlert].
func (c common) SilenceAlert(ctx context.Context, db bun.IDB, id int64, until, at time.Time) error {
	return c.setAlert(ctx, db, silenceAlertSQL, until.UTC(), at.UTC(), id)
}

func (c common) setAlert(ctx context.Context, db bun.IDB, query string, args ...any) error {
	res, err := db.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	if rowsAffected(res) == 0 {
		return ErrNoRows
	}
	return nil
}

// AddCounts implements [Alerts.AddCounts].
func (c common) AddCounts(ctx context.Context, db bun.IDB, process string, counts []Count) error {
	if len(counts) == 0 {
		return nil
	}
	return RunInTx(ctx, c, db, func(ctx context.Context, tx bun.IDB) error {
		for _, n := range counts {
			minute := n.Minute.UTC().Truncate(time.Minute)
			if _, err := tx.ExecContext(ctx, addCountSQL, n.Name, minute, process, n.N); err != nil {
				return err
			}
		}
		return nil
	})
}

// SumCount implements [Alerts.SumCount].
func (c common) SumCount(ctx context.Context, db bun.IDB, name string, since time.Time) (int64, error) {
	var n int64
	err := db.NewRaw(sumCountSQL, name, since.UTC().Truncate(time.Minute)).Scan(ctx, &n)
	return n, err
}

// DeleteCounts implements [Alerts.DeleteCounts].
func (c common) DeleteCounts(ctx context.Context, db bun.IDB, cutoff time.Time) (int64, error) {
	res, err := db.ExecContext(ctx, deleteCountSQL, cutoff.UTC())
	if err != nil {
		return 0, err
	}
	return rowsAffected(res), nil
}

// OldestWaiting implements [Alerts.OldestWaiting].
func (c common) OldestWaiting(ctx context.Context, db bun.IDB, at time.Time) (*time.Time, error) {
	return c.maybeTime(ctx, db, oldestWaitingSQL, at.UTC())
}

// DeadLetters implements [Alerts.DeadLetters].
func (c common) DeadLetters(ctx context.Context, db bun.IDB) (map[string]int64, error) {
	var rows []struct {
		EntityType string `bun:"entity_type"`
		N          int64  `bun:"n"`
	}
	if err := db.NewRaw(deadLettersSQL).Scan(ctx, &rows); err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.EntityType] = r.N
	}
	return out, nil
}

// SyncOutcomesSince implements [Alerts.SyncOutcomesSince].
func (c common) SyncOutcomesSince(ctx context.Context, db bun.IDB, since time.Time) (SyncOutcomes, error) {
	var out SyncOutcomes
	err := db.NewRaw(syncOutcomesSQL, since.UTC(), since.UTC()).Scan(ctx, &out.Failed, &out.Completed)
	return out, err
}

// LastReceived implements [Alerts.LastReceived].
func (c common) LastReceived(ctx context.Context, db bun.IDB, source string) (*time.Time, error) {
	return c.maybeTime(ctx, db, lastReceivedSQL, source)
}

// CountReceived implements [Alerts.CountReceived].
func (c common) CountReceived(ctx context.Context, db bun.IDB, source string, since time.Time) (int64, error) {
	var n int64
	err := db.NewRaw(countReceivedSQL, source, since.UTC()).Scan(ctx, &n)
	return n, err
}

// LastCompletedRun implements [Alerts.LastCompletedRun].
func (c common) LastCompletedRun(ctx context.Context, db bun.IDB, source string) (*LastRun, error) {
	var rows []LastRun
	if err := db.NewRaw(lastCompletedRunSQL, source).Scan(ctx, &rows); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, nil
	}
	rows[0].FinishedAt = rows[0].FinishedAt.UTC()
	return &rows[0], nil
}

// LatestRunDrift implements [Alerts.LatestRunDrift].
func (c common) LatestRunDrift(ctx context.Context, db bun.IDB, source string) ([]RunDrift, error) {
	out := []RunDrift{}
	if err := db.NewRaw(latestRunDriftSQL, source).Scan(ctx, &out); err != nil {
		return nil, err
	}
	for i := range out {
		out[i].FinishedAt = utcPtr(out[i].FinishedAt)
	}
	return out, nil
}

// RunsNeedingConfirmation implements [Alerts.RunsNeedingConfirmation].
func (c common) RunsNeedingConfirmation(ctx context.Context, db bun.IDB) ([]int64, error) {
	out := []int64{}
	err := db.NewRaw(runsNeedingConfirmationSQL).Scan(ctx, &out)
	return out, err
}

// maybeTime scans one nullable time (an aggregate over no rows is NULL).
func (c common) maybeTime(ctx context.Context, db bun.IDB, query string, args ...any) (*time.Time, error) {
	var at *time.Time
	if err := db.NewRaw(query, args...).Scan(ctx, &at); err != nil {
		return nil, err
	}
	return utcPtr(at), nil
}
