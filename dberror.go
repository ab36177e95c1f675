package tds

import "github.com/tdscore/tds/internal/dberr"

// wrapDBErr prefixes err with what tds was doing and, when the database is
// unreachable or overloaded, makes it match ErrDatabaseUnavailable.
func wrapDBErr(doing string, err error) error { return dberr.Wrap(doing, err) }
