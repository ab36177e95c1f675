package tdsui

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/store"
	"github.com/tdscore/tds/internal/testdb"
)

// TestDashboardAlertLinksRun: a reconcile_needs_confirmation alert links
// the page of the run that waits for its deletes to be confirmed.
func TestDashboardAlertLinksRun(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		e := newDashboardEnv(t, tdb)
		now := time.Now()
		run := &store.Run{Source: tds.DefaultSource, Mode: "full", EntityTypes: json.RawMessage(`["product"]`),
			Status: "needs_confirmation", StartedAt: now, FinishedAt: &now, Cursor: json.RawMessage(`{}`)}
		_, err := tdb.DB.NewInsert().Model(run).ExcludeColumn("id").Returning("id").Exec(t.Context())
		require.NoError(t, err)
		require.NoError(t, e.h.alerter.Evaluate(t.Context()))

		c, root := e.signedIn(t)
		body := page(t, c, root+"alerts")
		require.Contains(t, body, "reconcile_needs_confirmation")
		require.Contains(t, body, fmt.Sprintf(`reconcile/%d">run %d</a>`, run.ID, run.ID))
	})
}
