// Command server is the tds reference server: it receives Zoho webhooks,
// stores and queues them, and syncs each entity into a mirror table
// (products, customers, invoices, ...) of the same database.
//
//	go run ./examples/server
//
// starts it on :8001 with the SQLite file tds.db in the working directory;
// nothing else needs installing. Every flag has an environment equivalent
// (TDS_…): `server -h` lists them, generated from the one table of
// settings in settings.go, which docs/server.md's table matches (a test checks
// it). `server migrate` applies the migrations and exits, for a rollout
// that migrates before it starts the new version; `server healthcheck`
// GETs /health/ready and exits 0 or 1, for an image without a shell;
// `server -version` prints the version.
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
// token, and prints them once as shell export lines to a terminal; when
// stdout is not a terminal (a container's log) it writes them instead to
// tds-secrets.env (mode 0600) beside the SQLite file, or in the working
// directory, and prints only where.
//
// It listens before it opens the database: while the database cannot be
// reached it answers /health/live 200 and everything else 503, logs each
// attempt at WARN and tries again with backoff, instead of exiting.
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
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/opendb"
	"github.com/tdscore/tds/tdsotel"
)

// Timeouts of the HTTP server and of the shutdown.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 30 * time.Second
	startTimeout      = 30 * time.Second
	// migrateTimeout bounds `server migrate`, which may wait for the
	// migration lock another process holds.
	migrateTimeout = 10 * time.Minute
	// healthcheckTimeout bounds `server healthcheck`.
	healthcheckTimeout = 5 * time.Second
	// maxHeaderBytes bounds a request's headers; a webhook's are far
	// smaller, and the inbox stores at most 8 KiB of them.
	maxHeaderBytes = 64 << 10
	// defaultMaxConns is the default of -max-conns.
	defaultMaxConns = 256
	// defaultDBMaxConns is the default of -db-max-conns: tds.Open's pool.
	defaultDBMaxConns = 32
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is the server's main: it returns the exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, getenv, stdout, stderr)
}

// enabled tells whether reconciliation is configured.
func (z *zohoSettings) enabled() bool {
	return z.clientID != "" || z.clientSecret != "" || z.refreshToken != "" || z.organizationID != ""
}

// check refuses a partial set of credentials, naming the settings.
func (z *zohoSettings) check() error {
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

// secret returns a random token with a recognisable prefix.
func secret(prefix string) string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return prefix + hex.EncodeToString(b)
}

// runContext is run, stopped when ctx ends as by SIGINT (for tests).
func runContext(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	command := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		command, args = args[0], args[1:]
	}
	if !slices.ContainsFunc(commands, func(c struct{ name, doc string }) bool { return strings.Fields(c.name)[0] == command }) {
		fmt.Fprintf(stderr, "server: unknown command %q\n", command)
		usage(stderr)
		return 2
	}
	s, err := parseSettings(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil && len(s.args) > 0 && (command != "healthcheck" || len(s.args) > 1) {
		err = fmt.Errorf("unexpected arguments: %s", strings.Join(s.args, " "))
	}
	if err != nil {
		fmt.Fprintln(stderr, "server:", strings.ReplaceAll(err.Error(), "\n", "\nserver: "))
		return 2
	}
	if s.showVersion {
		fmt.Fprintln(stdout, versionString())
		return 0
	}
	log := s.logger(stderr)
	// pgdriver and bun print their own lines (a LISTEN connection lost):
	// through log, so that -log-format json stays JSON.
	opendb.SetDriverLogger(log)
	switch command {
	case "migrate":
		if err := migrate(s, log); err != nil {
			log.Error("migration failed", "error", err)
			return 1
		}
		return 0
	case "healthcheck":
		return healthcheck(s, stderr)
	}

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
		announceGenerated(stdout, generated, secretsDir(s.database), isTerminal(stdout))
	}

	tracer, stopTracing, err := startTracing(ctx, getenv)
	if err != nil {
		log.Error("tracing: reading the OTEL_* environment", "error", err)
		return 1
	}
	if tracer != nil {
		// Lines logged inside a span carry its trace_id and span_id.
		log = slog.New(tdsotel.LogHandler(log.Handler()))
		s.tracer = tracer
		log.Info("tracing", "exporter", "otlp/http")
	}
	err = serve(ctx, s, log)
	stopTracing(log) // after the workers: their last spans go too
	if err != nil {
		log.Error("server stopped", "error", err)
		return 1
	}
	return 0
}

// generatedSecretsFile is where generated credentials go when stdout is
// not a terminal.
const generatedSecretsFile = "tds-secrets.env"

// announceGenerated tells the operator the credentials generated for this
// run, as shell lines. A terminal shows them; anything else (a container's
// log, a file, a pipe to a collector) would keep them, so they go to a
// 0600 file in dir instead, and stdout says where; when that file cannot
// be written, stdout says only which settings to set.
func announceGenerated(stdout io.Writer, lines []string, dir string, terminal bool) {
	if terminal {
		fmt.Fprintln(stdout, "# No webhook key or admin token configured: generated for this run.")
		fmt.Fprintln(stdout, "# Paste these lines into the shell you send requests from:")
		for _, line := range lines {
			fmt.Fprintln(stdout, line)
		}
		return
	}
	var names []string
	for _, line := range lines {
		name, _, _ := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		names = append(names, name)
	}
	path := filepath.Join(dir, generatedSecretsFile)
	if err := writeSecretsFile(path, lines); err != nil {
		fmt.Fprintf(stdout, "# Generated %s for this run; not shown, as stdout is not a terminal, and not saved (%v). Set them to keep one value.\n",
			strings.Join(names, " and "), err)
		return
	}
	fmt.Fprintf(stdout, "# Generated %s for this run: written to %s (mode 0600), not shown, as stdout is not a terminal. Set them to keep one value.\n",
		strings.Join(names, " and "), path)
}

// writeSecretsFile writes lines to a new file at path readable by its
// owner alone. What was at path is removed first, and the file is created
// exclusively, so neither an old file's mode nor a planted symlink is
// followed.
func writeSecretsFile(path string, lines []string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, "# Generated by the tds server for one run; set these variables to keep them.\n"+strings.Join(lines, "\n")+"\n")
	return errors.Join(err, f.Close())
}

// secretsDir is where generated credentials are saved: beside the SQLite
// file (the image's /data volume), else the working directory.
func secretsDir(databaseURL string) string {
	for _, prefix := range []string{"sqlite:", "file:"} {
		if path, ok := strings.CutPrefix(databaseURL, prefix); ok {
			path, _, _ = strings.Cut(path, "?")
			if path == "" || strings.HasPrefix(path, ":memory:") {
				return "."
			}
			return filepath.Dir(path)
		}
	}
	return "."
}

// isTerminal tells whether w is a character device, as a terminal is.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// serve runs the server until SIGINT or SIGTERM (or ctx ends), then shuts
// it down. It listens first, and answers the probes while it waits for the
// database (openWhenReachable): alive, not ready; "listening" is logged
// once everything is served.
func serve(ctx context.Context, s *settings, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	limited := newLimitListener(ln, s.maxConns)
	ln = limited
	handler := newSwitchHandler(startingHandler())
	srv := newHTTPServer(handler, log)
	srv.ConnState = limited.trackState
	serveDone := make(chan error, 2)
	go func() { serveDone <- srv.Serve(ln) }()
	// shutdown stops the HTTP server before the rest was started.
	shutdown := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		return srv.Shutdown(ctx)
	}

	reg := tds.ZohoRegistry()
	db, err := openWhenReachable(ctx, s, reg, log, ln.Addr().String())
	if err != nil {
		stop()
		err = errors.Join(err, shutdown())
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			log.Info("shutting down", "before", "the database was reachable")
			log.Info("stopped")
			return nil
		}
		return err
	}
	defer db.Close()
	c, err := build(s, db, reg, log)
	if err != nil {
		return errors.Join(err, shutdown())
	}
	defer c.close(log)
	metricsSrv, metricsLn, err := listenMetrics(s.metricsAddr, c.scrape, log)
	if err != nil {
		return errors.Join(err, shutdown())
	}

	// Workers run on their own context: they are stopped only after the
	// HTTP server has finished its in-flight requests.
	workerCtx, stopWorkers := context.WithCancel(context.Background())
	defer stopWorkers()
	workerDone := make(chan error, 1)
	go func() { workerDone <- c.runWorkers(workerCtx, s.workers) }()
	handler.set(c.routes())
	if metricsSrv != nil {
		go func() { serveDone <- metricsSrv.Serve(metricsLn) }()
		log.Info("metrics listening", "addr", metricsLn.Addr().String())
	}

	log.Info("listening", "addr", ln.Addr().String(), "database", dbKind(s.database), "workers", s.workers, "max_conns", s.maxConns,
		"reconciliation", c.reconciler != nil)

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

// listenMetrics is the metrics listener, when addr asks for one: it
// serves /metrics alone without authentication, for a scraper on a private
// network.
func listenMetrics(addr string, scrape http.Handler, log *slog.Logger) (*http.Server, net.Listener, error) {
	if addr == "" {
		return nil, nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", scrape)
	return newHTTPServer(mux, log), ln, nil
}

// openMigrated opens the database and brings its schema and the mirror
// tables up to date: several processes starting at once take turns
// (PostgreSQL: an advisory lock).
func openMigrated(ctx context.Context, s *settings, reg *tds.Registry) (*bun.DB, error) {
	db, err := tds.Open(ctx, s.database)
	if err != nil {
		return nil, err
	}
	if db.Dialect().Name() == dialect.PG {
		// SQLite keeps its one connection: one writer at a time.
		db.SetMaxOpenConns(s.dbMaxConns)
		db.SetMaxIdleConns(s.dbMaxConns)
	}
	if err := tds.Migrate(ctx, db); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	if err := tds.MigrateMirror(ctx, db, reg); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return db, nil
}

// migrate is `server migrate`: the schema brought up to date, then exit.
func migrate(s *settings, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	db, err := openMigrated(ctx, s, tds.ZohoRegistry())
	if err != nil {
		return err
	}
	log.Info("migrated", "database", dbKind(s.database))
	return db.Close()
}

// healthcheck is `server healthcheck [URL]`: a probe for an image without
// a shell or curl. It exits 0 when URL answers 200, 1 otherwise.
func healthcheck(s *settings, stderr io.Writer) int {
	url := ""
	if len(s.args) == 1 {
		url = s.args[0]
	} else {
		host, port, err := net.SplitHostPort(s.addr)
		if err != nil {
			fmt.Fprintf(stderr, "healthcheck: -addr %q: %v\n", s.addr, err)
			return 1
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		url = "http://" + net.JoinHostPort(host, port) + "/health/ready"
	}
	client := &http.Client{Timeout: healthcheckTimeout}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: %s: %s %s\n", url, resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	return 0
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

// limitListener accepts at most n connections at once: past that, new
// clients wait in the kernel's backlog instead of each costing a goroutine
// and buffers. A full listener makes room by closing the connection that
// has waited longest for a request: an idle keep-alive one (which HTTP
// lets a server close at any time), or one accepted more than
// newConnGrace ago that has not sent a whole request yet. So a client
// holding connections open cannot keep others out; connections serving a
// request are never closed, and Accept waits for them.
//
// The HTTP server reports states through trackState (its ConnState).
type limitListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	wake      chan struct{} // a connection became closable

	mu    sync.Mutex
	conns map[*limitConn]struct{}
}

// newConnGrace is how long a new connection may take to send its first
// request before a full listener may close it.
const newConnGrace = time.Second

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, n), done: make(chan struct{}),
		wake: make(chan struct{}, 1), conns: map[*limitConn]struct{}{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	var retry *time.Timer
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		select {
		case l.slots <- struct{}{}:
		default:
			if l.evict() {
				continue
			}
			if retry == nil {
				retry = time.NewTimer(newConnGrace)
			} else {
				retry.Reset(newConnGrace)
			}
			select {
			case l.slots <- struct{}{}:
			case <-l.wake:
				continue
			case <-retry.C:
				continue
			case <-l.done:
				return nil, net.ErrClosed
			}
		}
		break
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	lc := &limitConn{Conn: c, since: time.Now()}
	lc.release = func() { l.forget(lc); <-l.slots }
	l.mu.Lock()
	l.conns[lc] = struct{}{}
	l.mu.Unlock()
	return lc, nil
}

// evict closes the connection waiting longest for a request, if one may
// be closed, and tells whether it did.
func (l *limitListener) evict() bool {
	now := time.Now()
	l.mu.Lock()
	var oldest *limitConn
	for c := range l.conns {
		closable := c.state == http.StateIdle || c.state == http.StateNew && now.Sub(c.since) >= newConnGrace
		if closable && (oldest == nil || c.since.Before(oldest.since)) {
			oldest = c
		}
	}
	if oldest != nil {
		delete(l.conns, oldest) // not chosen twice
	}
	l.mu.Unlock()
	if oldest == nil {
		return false
	}
	_ = oldest.Close() // gives its slot back; the server's read fails and it forgets the connection
	return true
}

// trackState is the HTTP server's ConnState hook.
func (l *limitListener) trackState(nc net.Conn, state http.ConnState) {
	c, ok := nc.(*limitConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, tracked := l.conns[c]; !tracked {
		return
	}
	switch state {
	case http.StateHijacked, http.StateClosed:
		delete(l.conns, c)
		return
	case http.StateIdle:
		c.since = time.Now()
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	c.state = state
}

func (l *limitListener) forget(c *limitConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back once, when it is closed. Its state and
// since (when it entered that state) are guarded by the listener's mu.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
	state   http.ConnState
	since   time.Time
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
