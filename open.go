package tds

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/pgdriver"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// SQLiteBusyTimeout is how long a SQLite connection waits for a lock held
// by another process before giving up.
const SQLiteBusyTimeout = 10 * time.Second

// Open connects to the database named by databaseURL and returns a ready
// *bun.DB, checked with a ping:
//
//   - postgres://user:password@host:port/dbname?sslmode=disable (or
//     postgresql://): PostgreSQL through pgdriver and pgdialect;
//   - sqlite:PATH or file:PATH: SQLite through modernc.org/sqlite, in WAL
//     mode with foreign keys on, synchronous=FULL (an acknowledged write
//     survives power loss), a busy timeout of [SQLiteBusyTimeout], and
//     IMMEDIATE transactions. PATH ":memory:" gives a private in-memory
//     database.
//
// SQLite allows one writer at a time; Open gives a SQLite database a pool of
// one connection, so concurrent callers in this process queue in Go instead
// of failing with "database is locked". Code running inside a tds
// transaction on SQLite (a Syncer, say) must therefore use that transaction,
// never the *bun.DB.
//
// The caller closes the returned DB.
func Open(ctx context.Context, databaseURL string) (*bun.DB, error) {
	var db *bun.DB
	switch {
	case strings.HasPrefix(databaseURL, "postgres://"), strings.HasPrefix(databaseURL, "postgresql://"):
		sqldb := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(databaseURL)))
		sqldb.SetMaxOpenConns(32)
		sqldb.SetMaxIdleConns(32)
		sqldb.SetConnMaxIdleTime(5 * time.Minute)
		db = bun.NewDB(sqldb, pgdialect.New())
	case strings.HasPrefix(databaseURL, "sqlite:"), strings.HasPrefix(databaseURL, "file:"):
		dsn, err := sqliteDSN(databaseURL)
		if err != nil {
			return nil, err
		}
		sqldb, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, fmt.Errorf("tds: opening SQLite: %w", err)
		}
		sqldb.SetMaxOpenConns(1)
		sqldb.SetMaxIdleConns(1)
		sqldb.SetConnMaxLifetime(0)
		db = bun.NewDB(sqldb, sqlitedialect.New())
	default:
		return nil, fmt.Errorf("tds: opening %q: want a postgres://, sqlite: or file: URL", redactURL(databaseURL))
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, wrapDBErr("connecting to the database", err)
	}
	return db, nil
}

// sqliteDSN turns sqlite:PATH or file:PATH[?params] into a modernc DSN.
func sqliteDSN(u string) (string, error) {
	path := strings.TrimPrefix(strings.TrimPrefix(u, "sqlite:"), "file:")
	path = strings.TrimPrefix(path, "//")
	var query string
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i+1:]
	}
	if path == "" {
		return "", fmt.Errorf("tds: opening %q: the SQLite URL has no path", u)
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("tds: opening %q: %w", u, err)
	}
	for _, p := range []string{
		fmt.Sprintf("busy_timeout(%d)", SQLiteBusyTimeout.Milliseconds()),
		"foreign_keys(1)",
		"journal_mode(WAL)",
		"synchronous(FULL)",
	} {
		params.Add("_pragma", p)
	}
	if params.Get("_txlock") == "" {
		params.Set("_txlock", "immediate")
	}
	return "file:" + path + "?" + params.Encode(), nil
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

func isSQLite(db bun.IDB) bool { return db.Dialect().Name() == dialect.SQLite }

func isPostgres(db bun.IDB) bool { return db.Dialect().Name() == dialect.PG }

// errUnsupportedDialect is returned for a *bun.DB that is neither
// PostgreSQL nor SQLite.
var errUnsupportedDialect = errors.New("tds: unsupported database dialect (want PostgreSQL or SQLite)")
