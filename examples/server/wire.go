package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdsalert"
	"github.com/tdscore/tds/tdsotel"
	"github.com/tdscore/tds/tdsprom"
	"github.com/tdscore/tds/tdsreconcile"
	"github.com/tdscore/tds/tdsui"
)

// The composition root: the server builds tds' parts and its optional
// packages side by side, as a host application embedding tds would. The
// webhook Handler knows nothing of the console, the metrics, the alerts or
// reconciliation; each reaches the core through the hooks it exposes
// (observers, leader tasks) and the Processor the Handler ingests with.

// components are the server's parts, built from the settings.
type components struct {
	handler    *tds.Handler             // POST /webhooks/{route}, /health*
	console    *tdsui.Handler           // /admin/*, /queue/*, /ui/*
	worker     *tds.Worker              // nil with -workers 0
	alerter    *tdsalert.Alerter        // runs as a leader task
	reconciler *tdsreconcile.Reconciler // nil unless the Zoho credentials are set
	scrape     http.Handler             // GET /metrics
	metrics    *tdsprom.Metrics         // the hooks' collectors
	registry   *prometheus.Registry     // tds's metrics, the Go runtime's and the process's
	tracer     *tdsotel.Tracer          // nil unless the OTEL_* environment asks for traces
	closers    []func(log *slog.Logger) // in the order they run
}

// build wires the parts on db. On failure, what was built is closed.
func build(s *settings, db *bun.DB, reg *tds.Registry, log *slog.Logger) (c *components, err error) {
	c = &components{registry: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			c.close(log)
		}
	}()
	c.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c.scrape = promhttp.HandlerFor(c.registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
	if c.metrics, err = tdsprom.New(c.registry); err != nil {
		return c, err
	}
	if c.alerter, err = tdsalert.New(db, s.alertOptions(log)...); err != nil {
		return c, err
	}
	c.closers = append(c.closers, func(log *slog.Logger) { closeAlerter(c.alerter, log) })

	handlerOpts := append(s.handlerOptions(reg, log),
		tds.WithWebhookObserver(c.metrics.ObserveWebhook), tds.WithWebhookObserver(c.alerter.ObserveWebhook),
		tds.WithBatchObserver(c.metrics.ObserveBatch))
	rcOpts := []tdsreconcile.Option{tdsreconcile.WithHooks(c.metrics.ReconcileHooks()), tdsreconcile.WithHooks(c.alerter.ReconcileHooks())}
	if c.tracer = s.tracer; c.tracer != nil {
		handlerOpts = append(handlerOpts, c.tracer.HandlerOptions()...)
		rcOpts = append(rcOpts, tdsreconcile.WithHooks(c.tracer.ReconcileHooks()))
	}
	if c.handler, err = tds.NewHandler(db, handlerOpts...); err != nil {
		return c, err
	}
	c.closers = append(c.closers, func(*slog.Logger) { _ = c.handler.Close() })

	// Repairs are ingested through the Handler's Processor: one group
	// commit for webhooks and repairs.
	if c.reconciler, err = s.zoho.reconciler(db, c.handler.Processor(), log, c.tracer, rcOpts...); err != nil {
		return c, err
	}
	if c.reconciler != nil {
		// Closed after the workers stop: a run in flight is handed over
		// to the next start.
		c.closers = append([]func(*slog.Logger){func(*slog.Logger) { _ = c.reconciler.Close() }}, c.closers...)
	}
	if err = c.metrics.WatchDatabase(db, tdsprom.WithRegistry(reg), tdsprom.WithLogger(log)); err != nil {
		return c, err
	}
	if c.worker, err = c.newWorker(s, db, reg, log); err != nil {
		return c, err
	}
	c.console, err = tdsui.New(db, s.consoleOptions(reg, log, c.reconciler, c.alerter)...)
	return c, err
}

// newWorker is the Worker, which also leads housekeeping and the leader
// tasks: alert evaluation and, when configured, the reconciliation
// schedule.
func (c *components) newWorker(s *settings, db *bun.DB, reg *tds.Registry, log *slog.Logger) (*tds.Worker, error) {
	syncer, err := tds.NewMirrorSyncer(tds.WithRegistry(reg))
	if err != nil {
		return nil, err
	}
	opts := []tds.Option{tds.WithLogger(log), tds.WithConcurrency(max(s.workers, 1)),
		tds.WithObserver(c.metrics.ObserveJob), tds.WithLeaderTask(c.alerter.Task()),
		tds.WithLeaderLease(s.leaderLease), tds.WithLeaseDuration(s.leaseDuration),
		tds.WithHousekeepingInterval(s.housekeeping)}
	if c.reconciler != nil {
		opts = append(opts, tds.WithLeaderTask(c.reconciler.Task()))
	}
	if s.pollOnly {
		opts = append(opts, tds.WithPollOnly())
	}
	if c.tracer != nil {
		opts = append(opts, c.tracer.WorkerOptions()...)
	}
	if s.pollInterval > 0 {
		opts = append(opts, tds.WithPollInterval(s.pollInterval))
	}
	if s.listenDatabase != "" && !s.pollOnly && db.Dialect().Name() == dialect.PG {
		listen, err := tds.Open(context.Background(), s.listenDatabase)
		if err != nil {
			return nil, fmt.Errorf("-listen-database: %w", err)
		}
		if listen.Dialect().Name() != dialect.PG {
			_ = listen.Close()
			return nil, errors.New("-listen-database: must be a postgres:// URL")
		}
		listen.SetMaxOpenConns(2) // the listener's connection, and a spare while it reconnects
		c.closers = append(c.closers, func(*slog.Logger) { _ = listen.Close() })
		opts = append(opts, tds.WithListenDB(listen))
	}
	return tds.NewWorker(db, syncer, opts...)
}

// runWorkers runs the Worker until ctx is done. With no workers, the
// process still takes its turn at evaluating the alerts, as the leader of
// the Alerter's own election.
func (c *components) runWorkers(ctx context.Context, workers int) error {
	if workers > 0 {
		return c.worker.Run(ctx)
	}
	_ = c.alerter.Run(ctx)
	return nil
}

// close closes what build made, in reverse dependency order.
func (c *components) close(log *slog.Logger) {
	for _, fn := range c.closers {
		fn(log)
	}
}

// routes is the main listener's handler: the console's routes, GET
// /metrics behind a metrics or admin token (Prometheus scrapes with a
// -metrics-token as its bearer token), and the webhook Handler for
// everything else.
func (c *components) routes() http.Handler {
	var webhooks http.Handler = c.handler
	if c.tracer != nil {
		webhooks = c.tracer.Handler(webhooks) // a server span per webhook
	}
	return routes(webhooks, c.console, c.scrape)
}

func routes(webhooks http.Handler, console *tdsui.Handler, scrape http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", console.RequireMetrics(scrape))
	for _, prefix := range []string{"/admin/", "/queue/", "/ui/", "/ui"} {
		mux.Handle(prefix, console)
	}
	mux.Handle("/", webhooks)
	return mux
}

// handlerOptions are the options of the webhook Handler: every key and
// secret setting is a comma-separated list.
func (s *settings) handlerOptions(reg *tds.Registry, log *slog.Logger) []tds.Option {
	opts := []tds.Option{tds.WithRegistry(reg), tds.WithLogger(log)}
	if keys := splitList(s.webhookKeys); len(keys) > 0 {
		opts = append(opts, tds.WithWebhookKeys(keys...))
	}
	for _, secret := range splitList(s.zohoSecret) {
		opts = append(opts, tds.WithZohoSecret(secret))
	}
	if secrets := splitList(s.standardSecret); len(secrets) > 0 {
		opts = append(opts, tds.WithStandardWebhooksSecrets(secrets...))
	}
	if proxies := splitList(s.trustedProxies); len(proxies) > 0 {
		opts = append(opts, tds.WithTrustedProxies(proxies...))
	}
	if s.pollOnly {
		opts = append(opts, tds.WithPollOnly())
	}
	return opts
}

// consoleOptions are the options of the console.
func (s *settings) consoleOptions(reg *tds.Registry, log *slog.Logger, rc *tdsreconcile.Reconciler, a *tdsalert.Alerter) []tdsui.Option {
	opts := []tdsui.Option{tdsui.WithRegistry(reg), tdsui.WithLogger(log)}
	if a != nil {
		opts = append(opts, tdsui.WithAlerter(a))
	}
	if tokens := splitList(s.adminToken); len(tokens) > 0 {
		opts = append(opts, tdsui.WithAdminToken(tokens...))
	}
	if tokens := splitList(s.metricsToken); len(tokens) > 0 {
		opts = append(opts, tdsui.WithMetricsToken(tokens...))
	}
	if proxies := splitList(s.trustedProxies); len(proxies) > 0 {
		opts = append(opts, tdsui.WithTrustedProxies(proxies...))
	}
	if rc != nil {
		opts = append(opts, tdsui.WithReconciler(rc))
	}
	return opts
}

// reconciler returns the Reconciler the settings describe, ingesting its
// repairs through proc, or nil when reconciliation is not configured.
func (z *zohoSettings) reconciler(db *bun.DB, proc *tds.Processor, log *slog.Logger, tr *tdsotel.Tracer, opts ...tdsreconcile.Option) (*tdsreconcile.Reconciler, error) {
	if !z.enabled() {
		return nil, nil
	}
	api := tdsreconcile.ZohoAPI{
		ClientID: z.clientID, ClientSecret: z.clientSecret, RefreshToken: z.refreshToken,
		OrganizationID: z.organizationID, DataCenter: z.dc, Product: z.product,
		AccountsURL: z.accountsURL, APIURL: z.apiURL, RequestsPerMinute: z.rate, DailyBudget: z.dailyBudget,
	}
	if tr != nil { // a client span per Zoho API call
		api.HTTPClient = &http.Client{Transport: tr.Transport(nil), Timeout: zohoHTTPTimeout}
	}
	return tdsreconcile.New(db, proc, api, append(z.options(log), opts...)...)
}

// zohoHTTPTimeout is the Zoho client's timeout when the server gives it a
// client of its own (the Reconciler's default client has the same).
const zohoHTTPTimeout = 30 * time.Second

// options are the Reconciler's options the settings set.
func (z *zohoSettings) options(log *slog.Logger) []tdsreconcile.Option {
	opts := []tdsreconcile.Option{tdsreconcile.WithLogger(log), tdsreconcile.WithSchedule(z.interval, z.fullInterval)}
	if z.maxDeletes != nil {
		opts = append(opts, tdsreconcile.WithMaxDeletes(*z.maxDeletes))
	}
	return opts
}

// alertOptions are the Alerter's options. Its reconcile_stale rule
// measures the incremental schedule when reconciliation is configured.
func (s *settings) alertOptions(log *slog.Logger) []tdsalert.Option {
	a := &s.alert
	opts := []tdsalert.Option{tdsalert.WithLogger(log), tdsalert.WithEvalInterval(a.interval)}
	if s.zoho.enabled() {
		opts = append(opts, tdsalert.WithReconcileInterval(s.zoho.interval))
	}
	if a.rules != "" {
		opts = append(opts, tdsalert.WithRulesFile(a.rules))
	}
	if a.webhookURL != "" {
		opts = append(opts, tdsalert.WithWebhook(a.webhookURL, a.webhookSecret))
	}
	if a.slackURL != "" {
		opts = append(opts, tdsalert.WithSlack(a.slackURL))
	}
	if urls := splitList(a.alertmanagerURLs); len(urls) > 0 {
		opts = append(opts, tdsalert.WithAlertmanager(urls...))
	}
	if a.externalURL != "" {
		opts = append(opts, tdsalert.WithExternalURL(a.externalURL))
	}
	return opts
}

// closeAlerter flushes the alert counters and gives the last
// notifications a few seconds.
func closeAlerter(a *tdsalert.Alerter, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		log.Warn("closing the alerter", "error", err)
	}
}
