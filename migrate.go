package tds

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/migrations"
)

// MigrationsTable is the table where tds records the migrations it applied.
// It is separate from bun's bun_migrations, which the host application may
// use for its own schema.
const MigrationsTable = "tds_schema_migrations"

// migrateLockKey is the PostgreSQL advisory lock that serialises Migrate
// across processes: the first 8 bytes of "tds.migr" as an int64.
const migrateLockKey = 0x7464732e6d696772

// Migrate brings the tds schema of db up to date. It is idempotent and safe
// to call from several processes at once: on PostgreSQL they take turns
// through an advisory lock, on SQLite through the database's write lock.
// Each migration runs in its own transaction together with the row that
// records it, so a migration that fails leaves nothing behind and is not
// recorded as applied.
func Migrate(ctx context.Context, db *bun.DB) error {
	fsys, err := migrationFS(db)
	if err != nil {
		return err
	}
	return applyMigrations(ctx, db, fsys, MigrationsTable)
}

func migrationFS(db bun.IDB) (fs.FS, error) {
	switch {
	case isPostgres(db):
		return fs.Sub(migrations.Postgres, "postgres")
	case isSQLite(db):
		return fs.Sub(migrations.SQLite, "sqlite")
	}
	return nil, errUnsupportedDialect
}

type migrationFile struct {
	version int64
	name    string
	sql     string
}

func readMigrations(fsys fs.FS) ([]migrationFile, error) {
	names, err := fs.Glob(fsys, "*.up.sql")
	if err != nil {
		return nil, err
	}
	var out []migrationFile
	seen := map[int64]string{}
	for _, n := range names {
		num, _, ok := strings.Cut(path.Base(n), "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("tds: migration %s: name must start with a number and '_'", n)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("tds: migrations %s and %s share version %d", other, n, v)
		}
		seen[v] = n
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		out = append(out, migrationFile{version: v, name: strings.TrimSuffix(n, ".up.sql"), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// applyMigrations applies the *.up.sql files of fsys not yet recorded in
// table, in version order, on one connection.
func applyMigrations(ctx context.Context, db *bun.DB, fsys fs.FS, table string) error {
	files, err := readMigrations(fsys)
	if err != nil {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return wrapDBErr("migrating", err)
	}
	defer conn.Close()

	if isPostgres(db) {
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", int64(migrateLockKey)); err != nil {
			return wrapDBErr("migrating: taking the migration lock", err)
		}
		defer func() {
			// A fresh context: the lock must go even if ctx is done; closing
			// the connection would release it too.
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(?)", int64(migrateLockKey))
		}()
	}
	createTable := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
		version    BIGINT PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
	)`, table)
	if _, err := conn.ExecContext(ctx, createTable); err != nil {
		return wrapDBErr("migrating: creating "+table, err)
	}
	for _, m := range files {
		err := conn.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE version = ?", table), m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (version, name) VALUES (?, ?)", table), m.version, m.name)
			return err
		})
		if err != nil {
			return wrapDBErr("applying migration "+m.name, err)
		}
	}
	return nil
}
