package tds

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A URL that cannot work is refused by Open with an error that says what
// is wrong, never with a panic, and never repeating the password.
func TestOpenRefusesBadURLs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		url      string
		password string // must not appear in the error
		want     string // must appear in the error
	}{
		{"unsupported sslmode", "postgres://u:s3cr3t-pw@localhost:5432/db?sslmode=bogus", "s3cr3t-pw", `sslmode "bogus"`},
		{"raw percent in the password", "postgres://u:pa%ss@localhost/db", "pa%ss", "percent-encod"},
		{"raw percent, then hex", "postgres://u:se%41cret@localhost/db?sslmode=bogus", "se%41cret", `sslmode "bogus"`},
		{"raw percent, then hex, decoded", "postgres://u:se%41cret@localhost/db?sslmode=bogus", "seAcret", `sslmode "bogus"`},
		{"no scheme", "u:secret@localhost/db", "secret", "postgres://"},
		{"no scheme, no user", "localhost:5432/db", "", "postgres://"},
		{"unknown scheme", "mysql://u:secret@h/db", "secret", "postgres://"},
		{"empty user", "postgres://:s3cr3t-pw@localhost/db", "s3cr3t-pw", "user"},
		{"no slashes", "postgres:s3cr3t-pw@localhost/db", "s3cr3t-pw", "postgres://"},
		{"port out of range", "postgres://u:s3cr3t-pw@localhost:70000/db", "s3cr3t-pw", "port"},
		{"empty port", "postgres://u:s3cr3t-pw@localhost:/db", "s3cr3t-pw", "port"},
		{"slash in the password", "postgres://u:pa/ss@localhost/db", "pa/ss", ""},
		{"bad timeout", "postgresql://u:s3cr3t-pw@localhost/db?connect_timeout=soon", "s3cr3t-pw", "connect_timeout"},
		{"bad host", "postgres://u:s3cr3t-pw@local host/db", "s3cr3t-pw", "host"},
		{"sqlite without path", "sqlite:", "", "path"},
		{"sqlite slashes without path", "sqlite://", "", "path"},
		{"file without path", "file:?mode=memory", "", "path"},
		{"empty", "", "", "postgres://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var err error
			require.NotPanics(t, func() {
				db, oerr := Open(context.Background(), tc.url)
				if db != nil {
					_ = db.Close()
				}
				err = oerr
			})
			require.Error(t, err)
			msg := err.Error()
			require.Contains(t, msg, tc.want)
			if tc.password != "" {
				require.False(t, strings.Contains(msg, tc.password), "the error repeats the password: %s", msg)
			}
		})
	}
}

// sqlite: and file: URLs with a path keep working, query included.
func TestOpenSQLite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, u := range []string{
		"sqlite:" + filepath.Join(dir, "a.db"),
		"sqlite://" + filepath.Join(dir, "b.db"),
		"file:" + filepath.Join(dir, "c.db") + "?_txlock=deferred",
		"sqlite::memory:",
	} {
		db, err := Open(t.Context(), u)
		require.NoError(t, err, u)
		var mode string
		require.NoError(t, db.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode), u)
		if !strings.Contains(u, ":memory:") {
			require.Equal(t, "wal", mode, u)
		}
		var fk int
		require.NoError(t, db.QueryRowContext(t.Context(), "PRAGMA foreign_keys").Scan(&fk), u)
		require.Equal(t, 1, fk, u)
		require.Equal(t, 1, db.Stats().MaxOpenConnections, u)
		require.NoError(t, db.Close())
	}
}

// A new SQLite file, and the WAL and shared-memory files SQLite creates
// beside it, are readable by their owner alone; an existing file keeps its
// mode.
func TestOpenSQLiteFileIsPrivate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "inbox.db")
	db, err := Open(t.Context(), "sqlite:"+path)
	require.NoError(t, err)
	_, err = db.ExecContext(t.Context(), "CREATE TABLE t (x INTEGER)")
	require.NoError(t, err)
	_, err = db.ExecContext(t.Context(), "INSERT INTO t VALUES (1)")
	require.NoError(t, err)
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		require.NoError(t, err, p)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), p)
	}
	require.NoError(t, db.Close())

	existing := filepath.Join(dir, "existing.db")
	require.NoError(t, os.WriteFile(existing, nil, 0o640))
	require.NoError(t, os.Chmod(existing, 0o640))
	db, err = Open(t.Context(), "file:"+existing)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	fi, err := os.Stat(existing)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
}
