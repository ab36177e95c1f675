package tdsreconcile_test

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

// A Reconciler compares Zoho with what tds has applied and ingests what the
// webhooks missed through the host's Processor. Here a fake Zoho holds an
// item no webhook brought: a full run finds it missing locally and queues
// it like a webhook would.
//
// The fake is tdstest's: in a test, tdstest.NewZoho(t) starts it and closes
// it when the test ends, and tdstest.SQLite(t) or tdstest.Postgres(t) gives
// the database.
func Example() {
	zoho := tdstest.StartZoho() // stands in for Zoho's API
	defer zoho.Close()
	zoho.Put("items", map[string]any{"item_id": "4600", "name": "Pump", "rate": 1249.5,
		"last_modified_time": "2026-11-02T10:00:00+0100"})

	dir, err := os.MkdirTemp("", "tds-example")
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
	proc, err := tds.NewProcessor(db)
	if err != nil {
		log.Fatal(err)
	}
	defer proc.Close()

	// zoho.API() holds the fake's credentials and URL. A real organisation
	// gives its own credentials and organisation id, and DataCenter ("eu",
	// "in", …) instead of the URLs.
	rc, err := tdsreconcile.New(db, proc, zoho.API(), tdsreconcile.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()

	run, err := rc.Run(ctx, tdsreconcile.Request{Mode: tdsreconcile.Full, EntityTypes: []string{"product"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("run %s: %d missing locally, %d repaired, %d API calls\n",
		run.Status, run.Counts.MissingLocal, run.Repaired, run.APICalls)
	// Output: run completed: 1 missing locally, 1 repaired, 2 API calls
}
