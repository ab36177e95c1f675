// Package dberr classifies errors from the database drivers tds uses
// (pgdriver for PostgreSQL, modernc.org/sqlite), so that no other package
// needs to know their error types.
package dberr

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/uptrace/bun/driver/pgdriver"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// IsUnavailable reports whether err means the database is unreachable or
// overloaded: a failure that trying again later may cure, as opposed to a
// statement the database refuses. A cancelled or expired context is not:
// the caller gave up, and the database may be fine.
func IsUnavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) {
		code := pgErr.Field('C')
		// 08: connection exception; 53: insufficient resources;
		// 57P01-03: shutdown, crash shutdown, cannot connect now.
		return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "53") ||
			code == "57P01" || code == "57P02" || code == "57P03"
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		switch liteErr.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN,
			sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_NOTADB:
			return true
		}
	}
	return strings.Contains(err.Error(), "sql: database is closed")
}

// IsSQLiteBusy reports whether err is SQLite's SQLITE_BUSY: another
// connection holds the lock it needed.
func IsSQLiteBusy(err error) bool {
	var liteErr *sqlite.Error
	return errors.As(err, &liteErr) && liteErr.Code()&0xff == sqlite3.SQLITE_BUSY
}

// IsTxAborted reports whether err is PostgreSQL's refusal to run a
// statement in a transaction that an earlier failed statement aborted
// (SQLSTATE 25P02).
func IsTxAborted(err error) bool {
	var pgErr pgdriver.Error
	return errors.As(err, &pgErr) && pgErr.Field('C') == "25P02"
}
