package store_test

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/tdstest"
)

// TestMigrateReconcileGuard: migration 0009 on a database holding runs,
// their drift and a staged listing keeps them all (SQLite rebuilds
// tds_sync_runs, whose drop cascades to them), takes the
// needs_confirmation status, and goes on numbering runs after the old
// ones.
func TestMigrateReconcileGuard(t *testing.T) {
	eachStore(t, func(t *testing.T, _ *bun.DB, st store.Store) {
		ctx := context.Background()
		var db *bun.DB
		switch st.Name() {
		case "postgres":
			db = openPostgres(tdstest.PostgresURL(t, tdstest.Unmigrated()))
		case "sqlite":
			path, _ := strings.CutPrefix(tdstest.SQLiteURL(t, tdstest.Unmigrated()), "sqlite:")
			var err error
			db, err = openSQLite(path)
			require.NoError(t, err)
		}
		t.Cleanup(func() { _ = db.Close() })

		all, err := store.MigrationFS(st)
		require.NoError(t, err)
		before := fstest.MapFS{}
		require.NoError(t, fs.WalkDir(all, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || p >= "0009" {
				return err
			}
			b, err := fs.ReadFile(all, p)
			before[p] = &fstest.MapFile{Data: b}
			return err
		}))
		require.NoError(t, store.ApplyMigrations(ctx, db, before, migrationsTable, nil))

		for _, q := range []string{
			`INSERT INTO tds_sync_runs (source, mode, entity_types, dry_run, status, started_at, repaired)
			VALUES ('zoho', 'full', '["product"]', FALSE, 'completed', '2026-11-01 00:00:00+00:00', 1)`,
			`INSERT INTO tds_sync_runs (source, mode, entity_types, dry_run, status, started_at)
			VALUES ('zoho', 'full', '["product"]', FALSE, 'running', '2026-11-02 00:00:00+00:00')`,
			`INSERT INTO tds_sync_drift (run_id, entity_type, source_entity_id, kind, resolved, inbox_event_id, detected_at)
			VALUES (1, 'product', 'p-1', 'stale_local', TRUE, 7, '2026-11-01 00:00:00+00:00'),
				(2, 'product', 'p-2', 'missing_remote', FALSE, NULL, '2026-11-02 00:00:00+00:00')`,
			`INSERT INTO tds_sync_remote (run_id, entity_type, source_entity_id) VALUES (2, 'product', 'p-3')`,
		} {
			_, err := db.ExecContext(ctx, q)
			require.NoError(t, err)
		}

		require.NoError(t, st.Migrate(ctx, db, migrationsTable))
		count := func(q string) int {
			var n int
			require.NoError(t, db.QueryRowContext(ctx, q).Scan(&n))
			return n
		}
		require.Equal(t, 2, count(`SELECT COUNT(*) FROM tds_sync_runs`))
		require.Equal(t, 2, count(`SELECT COUNT(*) FROM tds_sync_drift`), "the drift is kept")
		require.Equal(t, 1, count(`SELECT COUNT(*) FROM tds_sync_remote`), "the staged listing is kept")
		require.Equal(t, 1, count(`SELECT COUNT(*) FROM tds_sync_drift WHERE run_id = 1 AND resolved AND inbox_event_id = 7
			AND reason IS NULL AND NOT pending_delete`))

		r := &store.Run{Source: "zoho", Mode: "incremental", EntityTypes: []byte(`["product"]`)}
		require.NoError(t, st.StartRun(ctx, db, r))
		require.Equal(t, int64(3), r.ID, "ids go on after the old runs")
		_, err = db.ExecContext(ctx, `UPDATE tds_sync_runs SET status = 'needs_confirmation' WHERE id = 1`)
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, `UPDATE tds_sync_runs SET status = 'bogus' WHERE id = 1`)
		require.Error(t, err, "the status is still checked")
		// One running run per source and mode, still.
		err = st.StartRun(ctx, db, &store.Run{Source: "zoho", Mode: "full", EntityTypes: []byte(`["product"]`)})
		require.ErrorIs(t, err, store.ErrRunRunning)
		_, err = db.ExecContext(ctx, `DELETE FROM tds_sync_runs WHERE id = 2`)
		require.NoError(t, err)
		require.Equal(t, 1, count(`SELECT COUNT(*) FROM tds_sync_drift`), "the foreign key still cascades")
	})
}
