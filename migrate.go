package tds

import (
	"context"
	"errors"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
)

// MigrationsTable is the table where tds records the migrations it applied.
// It is separate from bun's bun_migrations, which the host application may
// use for its own schema.
const MigrationsTable = "tds_schema_migrations"

// Migrate brings the tds schema of db up to date. It is idempotent and safe
// to call from several processes at once: on PostgreSQL they take turns
// through a transaction-level advisory lock (so it works through a
// transaction pooler), on SQLite through the database's write lock.
// Each migration runs in its own transaction together with the row that
// records it, so a migration that fails leaves nothing behind and is not
// recorded as applied.
func Migrate(ctx context.Context, db *bun.DB) error {
	if db == nil {
		return errors.New("tds: Migrate: db is nil")
	}
	st, err := store.For(db)
	if err != nil {
		return err
	}
	err = st.Migrate(ctx, db, MigrationsTable)
	var me *store.MigrationError
	if errors.As(err, &me) {
		return wrapDBErr("applying migration "+me.Name, me.Err)
	}
	return wrapDBErr("migrating", err)
}
