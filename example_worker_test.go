package tds_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
)

// A Worker hands each queued event to a Syncer, inside the transaction that
// marks the job completed.
func ExampleWorker() {
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
	if _, err := db.ExecContext(ctx, "CREATE TABLE prices (item_id TEXT PRIMARY KEY, rate REAL)"); err != nil {
		log.Fatal(err)
	}

	p, err := tds.NewProcessor(db)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Process(ctx, &tds.Event{
		EventType: tds.EventUpdate, EntityType: "product", EntityID: "4600",
		Data: json.RawMessage(`{"item_id":"4600","name":"Pump","rate":1249.5}`),
	}); err != nil {
		log.Fatal(err)
	}

	synced := make(chan struct{})
	syncer := tds.SyncFunc(func(ctx context.Context, tx bun.Tx, job *tds.SyncJob) error {
		var item struct {
			Rate float64 `json:"rate"`
		}
		if err := json.Unmarshal(job.Data, &item); err != nil {
			return tds.Permanent(err) // no retry fixes a malformed record
		}
		// Write through tx: the row and the job's completion commit together.
		_, err := tx.ExecContext(ctx,
			"INSERT INTO prices (item_id, rate) VALUES (?, ?) ON CONFLICT (item_id) DO UPDATE SET rate = excluded.rate",
			job.EntityID, item.Rate)
		if err == nil {
			defer close(synced)
		}
		return err
	})
	w, err := tds.NewWorker(db, syncer,
		tds.WithConcurrency(2),
		tds.WithPollInterval(50*time.Millisecond),
		tds.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- w.Run(runCtx) }()
	<-synced
	stop() // graceful: in-flight syncs finish first
	if err := <-done; err != nil {
		log.Fatal(err)
	}

	var rate float64
	if err := db.QueryRowContext(ctx, "SELECT rate FROM prices WHERE item_id = '4600'").Scan(&rate); err != nil {
		log.Fatal(err)
	}
	fmt.Println("rate:", rate)
	// Output: rate: 1249.5
}
