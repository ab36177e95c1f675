package dberr_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun/driver/pgdriver"
	_ "modernc.org/sqlite"

	"github.com/tdscore/tds/internal/dberr"
	"github.com/tdscore/tds/tdstest"
)

func TestMain(m *testing.M) { tdstest.Main(m) }

func TestIsUnavailableGenericErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", errors.New("syntax error"), false},
		{"cancelled", fmt.Errorf("query: %w", context.Canceled), false},
		{"deadline", context.DeadlineExceeded, false},
		// A timeout is a net.Error too, but the caller's own deadline wins.
		{"cancelled net error", &net.OpError{Op: "read", Err: context.Canceled}, false},
		{"bad conn", fmt.Errorf("exec: %w", driver.ErrBadConn), true},
		{"conn done", sql.ErrConnDone, true},
		{"EOF", io.EOF, true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"net error", &net.OpError{Op: "dial", Err: &net.DNSError{}}, true},
		{"ECONNREFUSED", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true},
		{"ECONNRESET", syscall.ECONNRESET, true},
		{"EPIPE", syscall.EPIPE, true},
		{"closed", net.ErrClosed, true},
		{"closed pool", errors.New("sql: database is closed"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, dberr.IsUnavailable(tc.err), "%v", tc.err)
		})
	}
}

func TestIsUnavailableSQLite(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	// A file that cannot be created: SQLITE_CANTOPEN.
	missing, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"))
	require.NoError(t, err)
	defer missing.Close()
	err = missing.PingContext(ctx)
	require.Error(t, err)
	require.True(t, dberr.IsUnavailable(err), "%v", err)

	// A write lock held by another connection: SQLITE_BUSY.
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)")
	require.NoError(t, err)
	defer db.Close()
	_, err = db.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY)`)
	require.NoError(t, err)
	holder, err := db.Conn(ctx)
	require.NoError(t, err)
	defer holder.Close()
	_, err = holder.ExecContext(ctx, `BEGIN IMMEDIATE`)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `INSERT INTO t VALUES (1)`)
	require.Error(t, err)
	require.True(t, dberr.IsUnavailable(err), "%v", err)
	_, err = holder.ExecContext(ctx, `ROLLBACK`)
	require.NoError(t, err)

	// A statement the database refuses is no outage.
	_, err = db.ExecContext(ctx, `INSERT INTO missing VALUES (1)`)
	require.Error(t, err)
	require.False(t, dberr.IsUnavailable(err), "%v", err)
}

func TestIsUnavailablePostgres(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := tdstest.PostgresURL(t, tdstest.Unmigrated())
	db := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(url)))
	defer db.Close()

	// A statement the server refuses (42P01: undefined table).
	_, err := db.ExecContext(ctx, `SELECT * FROM missing`)
	require.Error(t, err)
	var pgErr pgdriver.Error
	require.ErrorAs(t, err, &pgErr)
	require.False(t, dberr.IsUnavailable(err), "%v", err)

	// A session the server ends (57P01: terminating connection due to
	// administrator command).
	victim, err := db.Conn(ctx)
	require.NoError(t, err)
	defer victim.Close()
	var pid int
	require.NoError(t, victim.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	var ok bool
	require.NoError(t, db.QueryRowContext(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ok))
	require.True(t, ok)
	_, err = victim.ExecContext(ctx, `SELECT 1`)
	require.Error(t, err)
	require.True(t, dberr.IsUnavailable(err), "%v", err)
}
