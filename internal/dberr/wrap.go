package dberr

import (
	"errors"
	"fmt"
)

// The sentinel errors shared by tds' packages, each defined once here and
// re-exported by the public packages, so that errors.Is holds whichever
// package an error came through.
var (
	// ErrUnavailable is tds.ErrDatabaseUnavailable.
	ErrUnavailable = errors.New("tds: database unavailable")
	// ErrNotFound is tds.ErrNotFound.
	ErrNotFound = errors.New("tds: not found")
	// ErrInvalidEvent is tds.ErrInvalidEvent.
	ErrInvalidEvent = errors.New("tds: invalid event")
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
		return []error{ErrUnavailable, e.err}
	}
	return []error{e.err}
}

// Wrap prefixes err with what tds was doing and, when the database is
// unreachable or overloaded, makes it match ErrUnavailable. Errors that
// tds made already pass through unchanged.
func Wrap(doing string, err error) error {
	if err == nil {
		return nil
	}
	var de *dbError
	if errors.As(err, &de) || errors.Is(err, ErrInvalidEvent) || errors.Is(err, ErrNotFound) {
		return err
	}
	return &dbError{doing: doing, err: err, unavailable: IsUnavailable(err)}
}
