package tds

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Processes opening a new SQLite file at the same moment race to switch it
// to WAL, which SQLite does not wait for in its busy handler: Open waits
// for that itself, within the busy timeout, instead of failing with
// SQLITE_BUSY (seen in TestMigrateConcurrently under load).
func TestOpenNewSQLiteFileConcurrently(t *testing.T) {
	t.Parallel()
	for round := range 20 {
		url := "sqlite:" + filepath.Join(t.TempDir(), "new.db")
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() {
				db, err := Open(context.Background(), url)
				if err == nil {
					err = db.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err, "round %d", round)
		}
	}
}
