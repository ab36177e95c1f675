// Command server is the tds reference server: it receives Zoho webhooks,
// stores and queues them, and syncs each entity into a mirror table
// (products, customers, invoices, ...) of the same database.
//
//	go run ./examples/server
//
// starts it on :8001 with the SQLite file tds.db in the working directory;
// nothing else needs installing. Every flag has an environment equivalent:
//
//	-addr                      TDS_ADDR                      listen address (:8001)
//	-database                  TDS_DATABASE_URL              postgres://… or sqlite:PATH (sqlite:tds.db)
//	-webhook-keys              TDS_WEBHOOK_KEYS              shared webhook keys, comma-separated
//	-zoho-secret               TDS_ZOHO_SECRET               Zoho webhook secrets (HMAC-SHA256 signature), comma-separated
//	-standard-webhooks-secret  TDS_STANDARD_WEBHOOKS_SECRET  Standard Webhooks secrets (whsec_…), comma-separated
//	-admin-token               TDS_ADMIN_TOKEN               bearer tokens of the admin API, comma-separated
//	-workers                   TDS_WORKERS                   jobs synced at once (4; 0 runs ingest without workers)
//	-max-conns                 TDS_MAX_CONNS                 connections served at once; more wait (256)
//	-trusted-proxies           TDS_TRUSTED_PROXIES           proxies whose X-Forwarded-For is believed, comma-separated
//	-zoho-client-id            TDS_ZOHO_CLIENT_ID            OAuth client id of the Zoho API (reconciliation)
//	-zoho-client-secret        TDS_ZOHO_CLIENT_SECRET        OAuth client secret
//	-zoho-refresh-token        TDS_ZOHO_REFRESH_TOKEN        OAuth refresh token
//	-zoho-organization-id      TDS_ZOHO_ORGANIZATION_ID      Zoho organisation id
//	-zoho-dc                   TDS_ZOHO_DC                   data centre: com, eu, in, com.au, jp, ca, com.cn, sa (com)
//	-zoho-product              TDS_ZOHO_PRODUCT              books or inventory (books)
//	-zoho-accounts-url         TDS_ZOHO_ACCOUNTS_URL         accounts host, overriding the data centre's
//	-zoho-api-url              TDS_ZOHO_API_URL              API host, overriding the data centre's
//	-zoho-rate                 TDS_ZOHO_RATE                 Zoho API requests a minute (100)
//	-zoho-daily-budget         TDS_ZOHO_DAILY_BUDGET         Zoho API requests a day for reconciliation (1000)
//	-reconcile-interval        TDS_RECONCILE_INTERVAL        incremental reconciliation every (15m; 0 turns it off)
//	-reconcile-full-interval   TDS_RECONCILE_FULL_INTERVAL   full reconciliation every (168h; 0 turns it off)
//	-alert-rules               TDS_ALERT_RULES               YAML file configuring the built-in alert rules
//	-alert-webhook-url         TDS_ALERT_WEBHOOK_URL         receiver of alerts as Alertmanager webhook payloads
//	-alert-webhook-secret      TDS_ALERT_WEBHOOK_SECRET      Standard Webhooks secret (whsec_…) signing them
//	-alert-slack-url           TDS_ALERT_SLACK_URL           Slack incoming webhook receiving alerts
//	-alert-eval-interval       TDS_ALERT_EVAL_INTERVAL       alert rules evaluated every (15s)
//
// Alerts are evaluated by one process at a time, the housekeeping leader;
// a process started with -workers 0 (a receiver-only process) competes for
// that role too, so alerts hold whichever processes run. Reconciliation
// runs are started only by processes with workers.
//
// Reconciliation runs when the four Zoho credentials are set; prefer the
// environment for the secret and the refresh token, which a command line
// shows to every user of the machine.
//
// A flag wins over its environment variable. Every key, secret and token
// setting takes a comma-separated list, so a credential can be rotated
// without downtime: add the new one, move the senders, drop the old one.
// With no webhook key and no
// secret it generates a webhook key, and with no admin token an admin
// token, and prints them once as shell export lines.
//
// SIGINT or SIGTERM shuts it down gracefully: it stops accepting
// connections, lets in-flight requests finish, drains the workers (no job is
// left processing) and exits 0.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
)

// Timeouts of the HTTP server and of the shutdown.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 30 * time.Second
	startTimeout      = 30 * time.Second
	// maxHeaderBytes bounds a request's headers; a webhook's are far
	// smaller, and the inbox stores at most 8 KiB of them.
	maxHeaderBytes = 64 << 10
	// defaultMaxConns is the default of -max-conns.
	defaultMaxConns = 256
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// settings are the flags, after their environment defaults.
type settings struct {
	addr, database, webhookKeys, zohoSecret, standardSecret, adminToken string
	trustedProxies, metricsAddr                                         string
	workers, maxConns                                                   int
	zoho                                                                zohoSettings
	alert                                                               alertSettings
}

// alertSettings are the alerts' settings.
type alertSettings struct {
	rules, webhookURL, webhookSecret, slackURL string
	interval                                   time.Duration
}

// zohoSettings are the Zoho API's settings, for reconciliation.
type zohoSettings struct {
	clientID, clientSecret, refreshToken, organizationID string
	dc, product, accountsURL, apiURL                     string
	rate, dailyBudget                                    int
	interval, fullInterval                               time.Duration
}

func parseSettings(args []string, getenv func(string) string, stderr io.Writer) (*settings, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	intEnv := func(name string, def int) (int, error) {
		v := getenv(name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("%s=%q is not a number", name, v)
		}
		return n, nil
	}
	workers, err := intEnv("TDS_WORKERS", tds.DefaultConcurrency)
	if err != nil {
		return nil, err
	}
	maxConns, err := intEnv("TDS_MAX_CONNS", defaultMaxConns)
	if err != nil {
		return nil, err
	}
	zohoRate, err := intEnv("TDS_ZOHO_RATE", tds.DefaultZohoRequestsPerMinute)
	if err != nil {
		return nil, err
	}
	zohoBudget, err := intEnv("TDS_ZOHO_DAILY_BUDGET", tds.DefaultZohoDailyBudget)
	if err != nil {
		return nil, err
	}
	durationEnv := func(name string, def time.Duration) (time.Duration, error) {
		v := getenv(name)
		if v == "" {
			return def, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("%s=%q is not a duration such as 15m or 168h", name, v)
		}
		return d, nil
	}
	interval, err := durationEnv("TDS_RECONCILE_INTERVAL", tds.DefaultReconcileInterval)
	if err != nil {
		return nil, err
	}
	fullInterval, err := durationEnv("TDS_RECONCILE_FULL_INTERVAL", tds.DefaultFullReconcileInterval)
	if err != nil {
		return nil, err
	}
	alertInterval, err := durationEnv("TDS_ALERT_EVAL_INTERVAL", tds.DefaultAlertEvalInterval)
	if err != nil {
		return nil, err
	}
	var s settings
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.addr, "addr", env("TDS_ADDR", ":8001"), "listen address (TDS_ADDR)")
	fs.StringVar(&s.database, "database", env("TDS_DATABASE_URL", "sqlite:tds.db"), "database URL: postgres://… or sqlite:PATH (TDS_DATABASE_URL)")
	fs.StringVar(&s.webhookKeys, "webhook-keys", env("TDS_WEBHOOK_KEYS", ""), "shared webhook keys, comma-separated, sent in X-Webhook-Key (TDS_WEBHOOK_KEYS)")
	fs.StringVar(&s.zohoSecret, "zoho-secret", env("TDS_ZOHO_SECRET", ""), "Zoho webhook secrets, comma-separated, checked against X-Zoho-Webhook-Signature (TDS_ZOHO_SECRET)")
	fs.StringVar(&s.standardSecret, "standard-webhooks-secret", env("TDS_STANDARD_WEBHOOKS_SECRET", ""), "Standard Webhooks secrets, whsec_…, comma-separated (TDS_STANDARD_WEBHOOKS_SECRET)")
	fs.StringVar(&s.adminToken, "admin-token", env("TDS_ADMIN_TOKEN", ""), "bearer tokens of the admin API, comma-separated (TDS_ADMIN_TOKEN)")
	fs.IntVar(&s.workers, "workers", workers, "how many jobs are synced at once; 0 runs ingest without workers (TDS_WORKERS)")
	fs.IntVar(&s.maxConns, "max-conns", maxConns, "connections served at once; more wait to be accepted (TDS_MAX_CONNS)")
	fs.StringVar(&s.metricsAddr, "metrics-addr", env("TDS_METRICS_ADDR", ""), "a second listen address serving only GET /metrics, without authentication: keep it private (TDS_METRICS_ADDR)")
	fs.StringVar(&s.trustedProxies, "trusted-proxies", env("TDS_TRUSTED_PROXIES", ""), "proxies (addresses or CIDR prefixes), comma-separated, whose X-Forwarded-For gives the client address (TDS_TRUSTED_PROXIES)")
	z := &s.zoho
	fs.StringVar(&z.clientID, "zoho-client-id", env("TDS_ZOHO_CLIENT_ID", ""), "OAuth client id of the Zoho API, for reconciliation (TDS_ZOHO_CLIENT_ID)")
	fs.StringVar(&z.clientSecret, "zoho-client-secret", env("TDS_ZOHO_CLIENT_SECRET", ""), "OAuth client secret of the Zoho API; prefer the environment (TDS_ZOHO_CLIENT_SECRET)")
	fs.StringVar(&z.refreshToken, "zoho-refresh-token", env("TDS_ZOHO_REFRESH_TOKEN", ""), "OAuth refresh token of the Zoho API; prefer the environment (TDS_ZOHO_REFRESH_TOKEN)")
	fs.StringVar(&z.organizationID, "zoho-organization-id", env("TDS_ZOHO_ORGANIZATION_ID", ""), "Zoho organisation id (TDS_ZOHO_ORGANIZATION_ID)")
	fs.StringVar(&z.dc, "zoho-dc", env("TDS_ZOHO_DC", "com"), "Zoho data centre: com, eu, in, com.au, jp, ca, com.cn or sa (TDS_ZOHO_DC)")
	fs.StringVar(&z.product, "zoho-product", env("TDS_ZOHO_PRODUCT", "books"), "Zoho product: books or inventory (TDS_ZOHO_PRODUCT)")
	fs.StringVar(&z.accountsURL, "zoho-accounts-url", env("TDS_ZOHO_ACCOUNTS_URL", ""), "Zoho accounts host, overriding the data centre's (TDS_ZOHO_ACCOUNTS_URL)")
	fs.StringVar(&z.apiURL, "zoho-api-url", env("TDS_ZOHO_API_URL", ""), "Zoho API host, overriding the data centre's (TDS_ZOHO_API_URL)")
	fs.IntVar(&z.rate, "zoho-rate", zohoRate, "Zoho API requests a minute (TDS_ZOHO_RATE)")
	fs.IntVar(&z.dailyBudget, "zoho-daily-budget", zohoBudget, "Zoho API requests a day for reconciliation (TDS_ZOHO_DAILY_BUDGET)")
	fs.DurationVar(&z.interval, "reconcile-interval", interval, "incremental reconciliation every; 0 turns it off (TDS_RECONCILE_INTERVAL)")
	fs.DurationVar(&z.fullInterval, "reconcile-full-interval", fullInterval, "full reconciliation every; 0 turns it off (TDS_RECONCILE_FULL_INTERVAL)")
	al := &s.alert
	fs.StringVar(&al.rules, "alert-rules", env("TDS_ALERT_RULES", ""), "YAML file configuring the built-in alert rules (TDS_ALERT_RULES)")
	fs.StringVar(&al.webhookURL, "alert-webhook-url", env("TDS_ALERT_WEBHOOK_URL", ""), "receiver of alerts as Alertmanager webhook payloads (TDS_ALERT_WEBHOOK_URL)")
	fs.StringVar(&al.webhookSecret, "alert-webhook-secret", env("TDS_ALERT_WEBHOOK_SECRET", ""), "Standard Webhooks secret, whsec_…, signing the alert webhooks (TDS_ALERT_WEBHOOK_SECRET)")
	fs.StringVar(&al.slackURL, "alert-slack-url", env("TDS_ALERT_SLACK_URL", ""), "Slack incoming webhook receiving alerts (TDS_ALERT_SLACK_URL)")
	fs.DurationVar(&al.interval, "alert-eval-interval", alertInterval, "alert rules evaluated every (TDS_ALERT_EVAL_INTERVAL)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if s.workers < 0 {
		return nil, fmt.Errorf("-workers must be >= 0, got %d", s.workers)
	}
	if s.maxConns < 1 {
		return nil, fmt.Errorf("-max-conns must be >= 1, got %d", s.maxConns)
	}
	if err := z.check(); err != nil {
		return nil, err
	}
	return &s, nil
}

// enabled tells whether reconciliation is configured.
func (z *zohoSettings) enabled() bool {
	return z.clientID != "" || z.clientSecret != "" || z.refreshToken != "" || z.organizationID != ""
}

// check refuses a partial set of credentials and bad numbers, naming the
// settings.
func (z *zohoSettings) check() error {
	if z.rate < 1 {
		return fmt.Errorf("-zoho-rate (TDS_ZOHO_RATE) must be >= 1, got %d", z.rate)
	}
	if z.dailyBudget < 1 {
		return fmt.Errorf("-zoho-daily-budget (TDS_ZOHO_DAILY_BUDGET) must be >= 1, got %d", z.dailyBudget)
	}
	if z.interval < 0 || z.fullInterval < 0 {
		return errors.New("-reconcile-interval and -reconcile-full-interval must be >= 0")
	}
	if !z.enabled() {
		return nil
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"-zoho-client-id (TDS_ZOHO_CLIENT_ID)", z.clientID},
		{"-zoho-client-secret (TDS_ZOHO_CLIENT_SECRET)", z.clientSecret},
		{"-zoho-refresh-token (TDS_ZOHO_REFRESH_TOKEN)", z.refreshToken},
		{"-zoho-organization-id (TDS_ZOHO_ORGANIZATION_ID)", z.organizationID},
	} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("reconciliation needs every Zoho credential; missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// reconciler returns the Reconciler the settings describe, or nil when
// reconciliation is not configured.
func (z *zohoSettings) reconciler(db *bun.DB, reg *tds.Registry, log *slog.Logger, opts ...tds.Option) (*tds.Reconciler, error) {
	if !z.enabled() {
		return nil, nil
	}
	rc, err := tds.NewReconciler(db, tds.ZohoAPI{
		ClientID: z.clientID, ClientSecret: z.clientSecret, RefreshToken: z.refreshToken,
		OrganizationID: z.organizationID, DataCenter: z.dc, Product: z.product,
		AccountsURL: z.accountsURL, APIURL: z.apiURL, RequestsPerMinute: z.rate, DailyBudget: z.dailyBudget,
	}, append([]tds.Option{tds.WithRegistry(reg), tds.WithLogger(log), tds.WithReconcileSchedule(z.interval, z.fullInterval)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("reconciliation: %w", err)
	}
	return rc, nil
}

// secret returns a random token with a recognisable prefix.
func secret(prefix string) string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return prefix + hex.EncodeToString(b)
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	s, err := parseSettings(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "server:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	// Fail closed, but make the first run work: generate what is missing
	// and print it once, as lines to paste into the shell that sends.
	var generated []string
	if len(splitList(s.webhookKeys)) == 0 && len(splitList(s.zohoSecret)) == 0 && len(splitList(s.standardSecret)) == 0 {
		s.webhookKeys = secret("whk_")
		generated = append(generated, "export TDS_WEBHOOK_KEYS="+s.webhookKeys)
	}
	if len(splitList(s.adminToken)) == 0 {
		s.adminToken = secret("adm_")
		generated = append(generated, "export TDS_ADMIN_TOKEN="+s.adminToken)
	}
	if len(generated) > 0 {
		fmt.Fprintln(stdout, "# No webhook key or admin token configured: generated for this run.")
		fmt.Fprintln(stdout, "# Paste these lines into the shell you send requests from:")
		for _, line := range generated {
			fmt.Fprintln(stdout, line)
		}
	}

	if err := serve(s, log); err != nil {
		log.Error("server stopped", "error", err)
		return 1
	}
	return 0
}

// serve runs the server until SIGINT or SIGTERM, then shuts it down.
func serve(s *settings, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	db, err := tds.Open(startCtx, s.database)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := tds.Migrate(startCtx, db); err != nil {
		return err
	}
	reg := tds.ZohoRegistry()
	if err := tds.MigrateMirror(startCtx, db, reg); err != nil {
		return err
	}

	// Each constructor takes only the options that apply to it: the
	// registry and the logger are named wherever they are read.
	syncer, err := tds.NewMirrorSyncer(tds.WithRegistry(reg))
	if err != nil {
		return err
	}
	// The server's own registry: tds's metrics, and the Go runtime's and
	// the process's.
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	alerter, err := tds.NewAlerter(db, s.alert.options(log)...)
	if err != nil {
		return err
	}
	defer closeAlerter(alerter, log)
	rc, err := s.zoho.reconciler(db, reg, log, tds.WithMetrics(metrics), tds.WithAlerter(alerter))
	if err != nil {
		return err
	}
	workerOpts := []tds.Option{tds.WithLogger(log), tds.WithConcurrency(max(s.workers, 1)), tds.WithMetrics(metrics),
		tds.WithAlerter(alerter)}
	handlerOpts := append(s.handlerOptions(reg, log), tds.WithMetrics(metrics), tds.WithAlerter(alerter))
	if rc != nil {
		// Closed after the workers stop: a run in flight is handed over
		// to the next start.
		defer rc.Close()
		workerOpts = append(workerOpts, tds.WithReconciler(rc))
		handlerOpts = append(handlerOpts, tds.WithReconciler(rc))
	}
	worker, err := tds.NewWorker(db, syncer, workerOpts...)
	if err != nil {
		return err
	}
	handler, err := tds.NewHandler(db, handlerOpts...)
	if err != nil {
		return err
	}
	defer handler.Close()

	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	ln = newLimitListener(ln, s.maxConns)
	scrape := promhttp.HandlerFor(metrics, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
	srv := newHTTPServer(routes(handler, scrape), log)
	// The metrics listener, when asked for, serves /metrics alone without
	// authentication, for a scraper on a private network.
	var metricsSrv *http.Server
	var metricsLn net.Listener
	if s.metricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", s.metricsAddr); err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", scrape)
		metricsSrv = newHTTPServer(mux, log)
	}

	// Workers run on their own context: they are stopped only after the
	// HTTP server has finished its in-flight requests.
	workerCtx, stopWorkers := context.WithCancel(context.Background())
	defer stopWorkers()
	workerDone := make(chan error, 1)
	if s.workers > 0 {
		go func() { workerDone <- worker.Run(workerCtx) }()
	} else {
		// No Worker: this process evaluates the alerts when it leads.
		go func() {
			_ = alerter.Run(workerCtx)
			workerDone <- nil
		}()
	}
	serveDone := make(chan error, 2)
	go func() { serveDone <- srv.Serve(ln) }()
	if metricsSrv != nil {
		go func() { serveDone <- metricsSrv.Serve(metricsLn) }()
		log.Info("metrics listening", "addr", metricsLn.Addr().String())
	}

	log.Info("listening", "addr", ln.Addr().String(), "database", dbKind(s.database), "workers", s.workers, "max_conns", s.maxConns,
		"reconciliation", rc != nil)

	var failure error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-serveDone:
		failure = fmt.Errorf("http server: %w", err)
	case err := <-workerDone:
		workerDone <- err // read again below
		failure = fmt.Errorf("worker stopped: %v", err)
	}
	stop() // a second signal kills the process

	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		failure = errors.Join(failure, fmt.Errorf("http shutdown: %w", err))
	}
	if metricsSrv != nil {
		if err := metricsSrv.Shutdown(shutdownCtx); err != nil {
			failure = errors.Join(failure, fmt.Errorf("metrics shutdown: %w", err))
		}
	}
	stopWorkers()
	if err := <-workerDone; err != nil {
		failure = errors.Join(failure, fmt.Errorf("worker: %w", err))
	}
	if failure == nil {
		log.Info("stopped")
	}
	return failure
}

// newHTTPServer is an HTTP server with the server's limits and timeouts.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		MaxHeaderBytes:    maxHeaderBytes,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// routes is the main listener's handler: tds's, and GET /metrics behind
// the admin token (Prometheus scrapes with it as its bearer token).
func routes(h *tds.Handler, scrape http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h.RequireAdmin(scrape))
	mux.Handle("/", h)
	return mux
}

// handlerOptions are the options of the Handler: every key, secret and
// token setting is a comma-separated list.
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
	if tokens := splitList(s.adminToken); len(tokens) > 0 {
		opts = append(opts, tds.WithAdminToken(tokens...))
	}
	if proxies := splitList(s.trustedProxies); len(proxies) > 0 {
		opts = append(opts, tds.WithTrustedProxies(proxies...))
	}
	return opts
}

// limitListener accepts at most n connections at once: past that, Accept
// waits for one to close, and new clients wait in the kernel's backlog
// instead of each costing a goroutine and buffers.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back once, when it is closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// splitList splits a comma-separated list, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// dbKind names the database without its credentials, for the log.
func dbKind(url string) string {
	if strings.HasPrefix(url, "postgres") {
		return "postgresql"
	}
	return url
}

// options are the Alerter's options.
func (a *alertSettings) options(log *slog.Logger) []tds.Option {
	opts := []tds.Option{tds.WithLogger(log), tds.WithAlertEvalInterval(a.interval)}
	if a.rules != "" {
		opts = append(opts, tds.WithAlertRulesFile(a.rules))
	}
	if a.webhookURL != "" {
		opts = append(opts, tds.WithAlertWebhook(a.webhookURL, a.webhookSecret))
	}
	if a.slackURL != "" {
		opts = append(opts, tds.WithAlertSlack(a.slackURL))
	}
	return opts
}

// closeAlerter flushes the alert counters and gives the last
// notifications a few seconds.
func closeAlerter(a *tds.Alerter, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		log.Warn("closing the alerter", "error", err)
	}
}
