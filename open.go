package tds

import (
	"context"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/dberr"
	"github.com/tdscore/tds/internal/opendb"
)

// sqliteBusyTimeout is how long a SQLite connection waits for a lock held
// by another process before giving up.
const sqliteBusyTimeout = 10 * time.Second

// Open connects to the database named by databaseURL and returns a ready
// *bun.DB, checked with a ping:
//
//   - postgres://user:password@host:port/dbname?sslmode=disable (or
//     postgresql://): PostgreSQL through pgdriver and pgdialect;
//   - sqlite:PATH or file:PATH: SQLite through modernc.org/sqlite, in WAL
//     mode with foreign keys on, synchronous=FULL (an acknowledged write
//     survives power loss), a busy timeout of 10 s, and
//     IMMEDIATE transactions. PATH ":memory:" gives a private in-memory
//     database. A file that does not exist yet is created with mode 0600,
//     and SQLite gives its -wal and -shm files the same mode; an existing
//     file keeps its mode.
//
// SQLite allows one writer at a time; Open gives a SQLite database a pool of
// one connection, so concurrent callers in this process queue in Go instead
// of failing with "database is locked". Code running inside a tds
// transaction on SQLite (a Syncer, say) must therefore use that transaction,
// never the *bun.DB.
//
// The caller closes the returned DB.
func Open(ctx context.Context, databaseURL string) (*bun.DB, error) {
	db, err := opendb.Open(databaseURL, sqliteBusyTimeout)
	if err != nil {
		return nil, err
	}
	if err := ping(ctx, db); err != nil {
		_ = db.Close()
		return nil, wrapDBErr("connecting to the database", err)
	}
	return db, nil
}

// ping checks db's first connection. Connections opening a new SQLite file
// at the same moment race to switch it to WAL, a step SQLite's busy
// handler does not wait for: the loser gets SQLITE_BUSY at once. ping
// waits for it instead, as the busy timeout would, polling every 10 ms.
func ping(ctx context.Context, db *bun.DB) error {
	deadline := time.Now().Add(sqliteBusyTimeout)
	for {
		err := db.PingContext(ctx)
		if err == nil || !dberr.IsSQLiteBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
}
