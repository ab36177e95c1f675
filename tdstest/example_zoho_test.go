package tdstest_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdsreconcile"
	"github.com/tdscore/tds/tdstest"
)

// A reconciliation run against the fake Zoho rides out a revoked token and
// a rate limit. In a test, tdstest.NewZoho(t) starts the fake and closes it
// when the test ends, and tdstest.SQLite(t) gives the database.
func ExampleZoho() {
	zoho := tdstest.StartZoho()
	defer zoho.Close()
	zoho.Put("contacts", map[string]any{"contact_id": "460000000026049", "contact_name": "Bowman & Co",
		"last_modified_time": "2026-11-02T10:00:00+0100"})

	dir, err := os.MkdirTemp("", "tdstest-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := tds.Open(ctx, "sqlite:"+filepath.Join(dir, "tds.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if err := tds.Migrate(ctx, db); err != nil {
		log.Fatal(err)
	}
	proc, err := tds.NewProcessor(db) // repairs are ingested through it
	if err != nil {
		log.Fatal(err)
	}
	defer proc.Close()
	rc, err := tdsreconcile.New(db, proc, zoho.API(), tdsreconcile.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()

	req := tdsreconcile.Request{Mode: tdsreconcile.Full, EntityTypes: []string{"customer"}, DryRun: true}
	if _, err := rc.Run(ctx, req); err != nil { // the Reconciler now holds a token
		log.Fatal(err)
	}
	zoho.ExpireTokens()    // Zoho revokes it: the next call answers 401
	zoho.Fail(1, 429, "0") // then one 429, retried at once
	run, err := rc.Run(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	st := zoho.Stats()
	fmt.Printf("run %s: %d missing locally, %d API calls\n", run.Status, run.Counts.MissingLocal, run.APICalls)
	fmt.Printf("fake: %d token refreshes, answers by status %v\n", st.TokenRefreshes, st.Status)
	// Output:
	// run completed: 1 missing locally, 3 API calls
	// fake: 2 token refreshes, answers by status map[200:2 401:1 429:1]
}
