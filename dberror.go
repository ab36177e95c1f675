package tds

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/uptrace/bun/driver/pgdriver"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dbError is an error from the database, with what tds was doing.
type dbError struct {
	doing       string
	err         error
	unavailable bool
}

func (e *dbError) Error() string {
	if e.unavailable {
		return fmt.Sprintf("tds: %s: database unavailable: %v", e.doing, e.err)
	}
	return fmt.Sprintf("tds: %s: %v", e.doing, e.err)
}

func (e *dbError) Unwrap() []error {
	if e.unavailable {
		return []error{ErrDatabaseUnavailable, e.err}
	}
	return []error{e.err}
}

// wrapDBErr prefixes err with what tds was doing and, when the database is
// unreachable or overloaded, makes it match ErrDatabaseUnavailable. Errors
// that tds made already pass through unchanged.
func wrapDBErr(doing string, err error) error {
	if err == nil {
		return nil
	}
	var de *dbError
	if errors.As(err, &de) || errors.Is(err, ErrInvalidEvent) || errors.Is(err, ErrNotFound) {
		return err
	}
	return &dbError{doing: doing, err: err, unavailable: isUnavailable(err)}
}

func isUnavailable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // the caller gave up; the database may be fine
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
