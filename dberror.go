package tds

import (
	"errors"
	"fmt"

	"github.com/tdscore/tds/internal/dberr"
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
	return &dbError{doing: doing, err: err, unavailable: dberr.IsUnavailable(err)}
}
