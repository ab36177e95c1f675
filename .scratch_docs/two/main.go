package main

import (
	"context"
	"log"
	"net/http"
	"os"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdsalert"
	"github.com/tdscore/tds/tdsprom"
	"github.com/tdscore/tds/tdsreconcile"
	"github.com/tdscore/tds/tdsui"
)

func main() {
	ctx := context.Background()
	db, err := tds.Open(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	var syncer tds.Syncer
	r := chi.NewRouter()
	// ---- snippet starts
	reg := prometheus.NewRegistry()
	metrics, err := tdsprom.New(reg) // tds_* metrics, over the hooks below
	if err != nil {
		log.Fatal(err)
	}
	if err := metrics.WatchDatabase(db); err != nil { // queue and dead-letter gauges
		log.Fatal(err)
	}
	alerter, err := tdsalert.New(db, tdsalert.WithSlack(os.Getenv("SLACK_WEBHOOK_URL")),
		tdsalert.WithReconcileInterval(tdsreconcile.DefaultInterval))
	if err != nil {
		log.Fatal(err)
	}
	defer alerter.Close(context.Background())

	h, err := tds.NewHandler(db, tds.WithWebhookKeys(os.Getenv("TDS_WEBHOOK_KEYS")),
		tds.WithWebhookObserver(metrics.ObserveWebhook), tds.WithWebhookObserver(alerter.ObserveWebhook),
		tds.WithBatchObserver(metrics.ObserveBatch))
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	rc, err := tdsreconcile.New(db, h.Processor(), tdsreconcile.ZohoAPI{ // repairs go through h's Processor
		ClientID: os.Getenv("ZOHO_CLIENT_ID"), ClientSecret: os.Getenv("ZOHO_CLIENT_SECRET"),
		RefreshToken: os.Getenv("ZOHO_REFRESH_TOKEN"), OrganizationID: os.Getenv("ZOHO_ORGANIZATION_ID"),
	}, tdsreconcile.WithHooks(metrics.ReconcileHooks()), tdsreconcile.WithHooks(alerter.ReconcileHooks()))
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close() // runs before h.Close: the Reconciler ingests through h's Processor

	// Alert evaluation and the reconciliation schedule are leader tasks: give
	// them to every Worker, and the one leading housekeeping runs them.
	worker, err := tds.NewWorker(db, syncer, tds.WithObserver(metrics.ObserveJob),
		tds.WithLeaderTask(alerter.Task()), tds.WithLeaderTask(rc.Task()))
	if err != nil {
		log.Fatal(err)
	}
	go worker.Run(ctx)

	console, err := tdsui.New(db, tdsui.WithAdminToken(os.Getenv("TDS_ADMIN_TOKEN")),
		tdsui.WithReconciler(rc), tdsui.WithAlerter(alerter))
	if err != nil {
		log.Fatal(err)
	}
	r.Mount("/zoho", http.StripPrefix("/zoho", h))     // POST /zoho/webhooks/{route}, GET /zoho/health
	r.Mount("/tds", http.StripPrefix("/tds", console)) // /tds/ui/, /tds/admin/…, /tds/queue/stats
	r.Handle("/metrics", console.RequireAdmin(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	// ---- snippet ends
	log.Fatal(http.ListenAndServe(":8080", r))
}
