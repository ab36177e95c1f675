package main

import (
	"context"
	"encoding/json"
	"log"
	"net/http"
	"os"
	"os/signal"

	"github.com/go-chi/chi/v5"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	db, err := tds.Open(ctx, os.Getenv("DATABASE_URL")) // or your own *bun.DB (pgdialect or sqlitedialect)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if err := tds.Migrate(ctx, db); err != nil {
		log.Fatal(err)
	}

	// Your Syncer runs in the transaction that completes the job: write through tx,
	// and the write and the completion commit together, exactly once. The version
	// guard keeps a newer record from an older event; a delete is kept as a
	// tombstone, so that an older update arriving after it cannot bring it back.
	syncer := tds.SyncFunc(func(ctx context.Context, tx bun.Tx, job *tds.SyncJob) error {
		if job.EntityType != "product" {
			return nil // not ours: completed without a write
		}
		var item struct {
			Name string  `json:"name"`
			Rate float64 `json:"rate"`
		}
		if job.EventType != tds.EventDelete {
			if err := json.Unmarshal(job.Data, &item); err != nil {
				return tds.Permanent(err) // no retry can fix it: dead-letter now
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO catalog (item_id, name, rate, version, deleted)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (item_id) DO UPDATE SET name = excluded.name, rate = excluded.rate,
				version = excluded.version, deleted = excluded.deleted
			WHERE catalog.version <= excluded.version`,
			job.EntityID, item.Name, item.Rate, job.Version, job.EventType == tds.EventDelete)
		return err // any other error is retried with backoff, then dead-lettered
	})
	worker, err := tds.NewWorker(db, syncer, tds.WithConcurrency(4))
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := worker.Run(ctx); err != nil { // returns once drained after ctx ends
			log.Print(err)
		}
	}()

	h, err := tds.NewHandler(db, tds.WithWebhookKeys(os.Getenv("TDS_WEBHOOK_KEYS"))) // or WithZohoSecret, WithStandardWebhooksSecrets
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	r := chi.NewRouter() // or http.NewServeMux() with mux.Handle("/zoho/", http.StripPrefix("/zoho", h))
	r.Mount("/zoho", http.StripPrefix("/zoho", h))
	// Zoho now posts to https://your.host/zoho/webhooks/products, ...
	log.Fatal(http.ListenAndServe(":8080", r))
}
