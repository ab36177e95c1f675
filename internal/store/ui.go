package store

import (
	"context"
	"time"

	"github.com/uptrace/bun"
)

// The statements of the dashboard: the per-minute throughput and the
// signed-out sessions.
const (
	// pgThroughputSQL buckets the jobs completed since the first parameter
	// by minute (0 is the first minute), with their latency from being
	// stored (the job is created with its event, before the 2xx) to being
	// completed. The status index (status, completed_at) bounds the scan to
	// the window.
	pgThroughputSQL = `SELECT FLOOR(EXTRACT(EPOCH FROM (q.completed_at - CAST(? AS TIMESTAMPTZ))) / 60)::BIGINT AS minute,
	COUNT(*) AS n,
	AVG(EXTRACT(EPOCH FROM (q.completed_at - q.created_at)))::DOUBLE PRECISION AS avg_seconds,
	MAX(EXTRACT(EPOCH FROM (q.completed_at - q.created_at)))::DOUBLE PRECISION AS max_seconds
FROM tds_sync_queue AS q WHERE q.status = 'completed' AND q.completed_at >= ?
GROUP BY 1 ORDER BY 1`
	// sqThroughputSQL: see pgThroughputSQL. Times are text in SQLite;
	// julianday reads them, offset included.
	sqThroughputSQL = `SELECT CAST((julianday(q.completed_at) - julianday(?)) * 1440 AS INTEGER) AS minute,
	COUNT(*) AS n,
	AVG((julianday(q.completed_at) - julianday(q.created_at)) * 86400.0) AS avg_seconds,
	MAX((julianday(q.completed_at) - julianday(q.created_at)) * 86400.0) AS max_seconds
FROM tds_sync_queue AS q WHERE q.status = 'completed' AND q.completed_at >= ?
GROUP BY 1 ORDER BY 1`

	revokeSessionSQL = `INSERT INTO tds_ui_revoked (session_id, expires_at) VALUES (?, ?)
ON CONFLICT (session_id) DO NOTHING`
	dropExpiredSessionsSQL = `DELETE FROM tds_ui_revoked WHERE expires_at < ?`
	sessionRevokedSQL      = `SELECT EXISTS (SELECT 1 FROM tds_ui_revoked WHERE session_id = ?)`

	// insertSessionKeySQL stores a candidate key unless one is there: the
	// first insert wins, in any process, and the others read its key.
	insertSessionKeySQL = `INSERT INTO tds_ui_keys (name, secret, created_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO NOTHING`
	sessionKeySQL = `SELECT secret FROM tds_ui_keys WHERE name = ?`
)

// sessionKeyName is the row of the dashboard's session key in tds_ui_keys.
const sessionKeyName = "session"

// MinuteCount is one minute of [Store.Throughput].
type MinuteCount struct {
	// Minute is the minute's offset from the window's start: 0 is its
	// first minute.
	Minute int64 `bun:"minute"`
	// N counts the jobs completed in the minute.
	N int64 `bun:"n"`
	// AvgSeconds and MaxSeconds are their latency from being stored to
	// being completed.
	AvgSeconds float64 `bun:"avg_seconds"`
	MaxSeconds float64 `bun:"max_seconds"`
}

// Throughput implements [Store.Throughput].
func (c common) Throughput(ctx context.Context, db bun.IDB, since time.Time) ([]MinuteCount, error) {
	q := c.dialect.throughput()
	out := []MinuteCount{}
	since = since.UTC()
	err := db.NewRaw(q, since, since).Scan(ctx, &out)
	return out, err
}

// RevokeSession implements [Store.RevokeSession].
func (c common) RevokeSession(ctx context.Context, db bun.IDB, id string, expiresAt, now time.Time) error {
	return RunInTx(ctx, c, db, func(ctx context.Context, tx bun.IDB) error {
		if _, err := tx.ExecContext(ctx, dropExpiredSessionsSQL, now.UTC()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, revokeSessionSQL, id, expiresAt.UTC())
		return err
	})
}

// SessionKey implements [Store.SessionKey]. The insert and the read are
// separate statements: the insert either stores the candidate or waits for
// the winner's commit (PostgreSQL) or the write lock (SQLite), so the read
// always finds the row.
func (c common) SessionKey(ctx context.Context, db bun.IDB, candidate []byte, now time.Time) ([]byte, error) {
	if _, err := db.ExecContext(ctx, insertSessionKeySQL, sessionKeyName, candidate, now.UTC()); err != nil {
		return nil, err
	}
	var key []byte
	if err := db.QueryRowContext(ctx, sessionKeySQL, sessionKeyName).Scan(&key); err != nil {
		return nil, err
	}
	return key, nil
}

// SessionRevoked implements [Store.SessionRevoked].
func (c common) SessionRevoked(ctx context.Context, db bun.IDB, id string) (bool, error) {
	var ok bool
	err := db.QueryRowContext(ctx, sessionRevokedSQL, id).Scan(&ok)
	return ok, err
}
