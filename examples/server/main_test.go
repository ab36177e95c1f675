package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/zohofake"
	"github.com/tdscore/tds/tdsalert"
	"github.com/tdscore/tds/tdsreconcile"
	"github.com/tdscore/tds/tdstest"
	"github.com/tdscore/tds/tdsui"
)

func TestMain(m *testing.M) { tdstest.Main(m) }

// TestDBMaxConns: -db-max-conns sizes a PostgreSQL pool; SQLite keeps its
// one connection.
func TestDBMaxConns(t *testing.T) {
	reg := tds.ZohoRegistry()
	for url, want := range map[string]int{tdstest.PostgresURL(t): 5, "sqlite:" + filepath.Join(t.TempDir(), "tds.db"): 1} {
		db, err := openMigrated(t.Context(), &settings{database: url, dbMaxConns: 5}, reg)
		require.NoError(t, err)
		require.Equal(t, want, db.Stats().MaxOpenConnections, url)
		require.NoError(t, db.Close())
	}
}

func TestParseSettings(t *testing.T) {
	env := map[string]string{"TDS_ADDR": ":9000", "TDS_WORKERS": "7", "TDS_WEBHOOK_KEYS": "webhook-key-aaaaaaaa,webhook-key-bbbbbbbb", "TDS_DATABASE_URL": "sqlite:x.db",
		"TDS_MAX_CONNS": "50", "TDS_DB_MAX_CONNS": "12", "TDS_TRUSTED_PROXIES": "10.0.0.1", "TDS_METRICS_ADDR": "127.0.0.1:9090"}
	s, err := parseSettings([]string{"-addr", ":9100"}, func(k string) string { return env[k] }, io.Discard)
	require.NoError(t, err)
	require.Equal(t, ":9100", s.addr, "a flag wins over its variable")
	require.Equal(t, 7, s.workers)
	require.Equal(t, 50, s.maxConns)
	require.Equal(t, 12, s.dbMaxConns)
	require.Equal(t, "10.0.0.1", s.trustedProxies)
	require.Equal(t, "webhook-key-aaaaaaaa,webhook-key-bbbbbbbb", s.webhookKeys)
	require.Equal(t, "sqlite:x.db", s.database)
	require.Equal(t, "127.0.0.1:9090", s.metricsAddr)

	s, err = parseSettings(nil, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	require.Equal(t, ":8001", s.addr)
	require.Equal(t, "sqlite:tds.db", s.database)
	require.Equal(t, tds.DefaultConcurrency, s.workers)
	require.Equal(t, defaultMaxConns, s.maxConns)
	require.Equal(t, defaultDBMaxConns, s.dbMaxConns)
	_, err = parseSettings([]string{"-db-max-conns", "1"}, func(string) string { return "" }, io.Discard)
	require.ErrorContains(t, err, "-db-max-conns")
	require.Empty(t, s.metricsAddr, "no metrics listener unless asked")
	_, err = parseSettings([]string{"-max-conns", "0"}, func(string) string { return "" }, io.Discard)
	require.ErrorContains(t, err, "-max-conns")
	_, err = parseSettings(nil, func(k string) string { return map[string]string{"TDS_MAX_CONNS": "lots"}[k] }, io.Discard)
	require.ErrorContains(t, err, "TDS_MAX_CONNS")

	_, err = parseSettings(nil, func(k string) string { return map[string]string{"TDS_WORKERS": "many"}[k] }, io.Discard)
	require.ErrorContains(t, err, "TDS_WORKERS")
	// Reconciliation: all four credentials or none, numbers and durations
	// checked, each error naming its setting.
	zenv := map[string]string{"TDS_ZOHO_CLIENT_ID": "id", "TDS_ZOHO_CLIENT_SECRET": "secret", "TDS_ZOHO_REFRESH_TOKEN": "refresh",
		"TDS_ZOHO_ORGANIZATION_ID": "org", "TDS_ZOHO_DC": "eu", "TDS_RECONCILE_INTERVAL": "5m", "TDS_ZOHO_DAILY_BUDGET": "500"}
	s, err = parseSettings(nil, func(k string) string { return zenv[k] }, io.Discard)
	require.NoError(t, err)
	require.True(t, s.zoho.enabled())
	require.Equal(t, "eu", s.zoho.dc)
	require.Equal(t, 5*time.Minute, s.zoho.interval)
	require.Equal(t, tdsreconcile.DefaultFullInterval, s.zoho.fullInterval)
	require.Equal(t, 500, s.zoho.dailyBudget)
	require.Equal(t, tdsreconcile.DefaultRequestsPerMinute, s.zoho.rate)
	_, err = parseSettings(nil, func(k string) string { return map[string]string{"TDS_ZOHO_CLIENT_ID": "id"}[k] }, io.Discard)
	require.ErrorContains(t, err, "TDS_ZOHO_REFRESH_TOKEN")
	_, err = parseSettings(nil, func(k string) string { return map[string]string{"TDS_RECONCILE_INTERVAL": "often"}[k] }, io.Discard)
	require.ErrorContains(t, err, "TDS_RECONCILE_INTERVAL")
	_, err = parseSettings([]string{"-zoho-rate", "0"}, func(string) string { return "" }, io.Discard)
	require.ErrorContains(t, err, "-zoho-rate: must be >= 1, got 0")
	s, err = parseSettings(nil, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	require.False(t, s.zoho.enabled())

	s, err = parseSettings([]string{"-workers", "2", "extra"}, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	require.Equal(t, []string{"extra"}, s.args, "run refuses them, but for healthcheck's URL")

	aenv := map[string]string{"TDS_WORKERS": "0", "TDS_ALERT_RULES": "rules.yml", "TDS_ALERT_WEBHOOK_URL": "https://alerts.example/hook",
		"TDS_ALERT_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "TDS_ALERT_SLACK_URL": "https://hooks.example/x",
		"TDS_ALERT_EVAL_INTERVAL": "30s", "TDS_ALERTMANAGER_URL": "http://am1:9093, http://am2:9093",
		"TDS_EXTERNAL_URL": "https://tds.example"}
	s, err = parseSettings(nil, func(k string) string { return aenv[k] }, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 0, s.workers)
	require.Equal(t, alertSettings{rules: "rules.yml", webhookURL: "https://alerts.example/hook",
		webhookSecret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", slackURL: "https://hooks.example/x", interval: 30 * time.Second,
		alertmanagerURLs: "http://am1:9093, http://am2:9093", externalURL: "https://tds.example"}, s.alert)
	// Both Alertmanagers and the external URL reach the Alerter, which
	// checks them.
	am := &settings{alert: alertSettings{alertmanagerURLs: s.alert.alertmanagerURLs, externalURL: s.alert.externalURL, interval: time.Second}}
	a, err := tdsalert.New(tdstest.SQLite(t), am.alertOptions(slog.New(slog.DiscardHandler))...)
	require.NoError(t, err)
	require.NoError(t, a.Close(context.Background()))
	am.alert.alertmanagerURLs = "http://am1:9093,am2:9093"
	_, err = tdsalert.New(tdstest.SQLite(t), am.alertOptions(slog.New(slog.DiscardHandler))...)
	require.ErrorContains(t, err, "WithAlertmanager: URL 2")
	s, err = parseSettings(nil, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	require.Equal(t, tdsalert.DefaultEvalInterval, s.alert.interval)
	_, err = parseSettings([]string{"-workers", "-1"}, func(string) string { return "" }, io.Discard)
	require.ErrorContains(t, err, "-workers")
	_, err = parseSettings(nil, func(k string) string { return map[string]string{"TDS_ALERT_EVAL_INTERVAL": "often"}[k] }, io.Discard)
	require.ErrorContains(t, err, "TDS_ALERT_EVAL_INTERVAL")
	require.Equal(t, []string{"a", "b"}, splitList(" a, ,b,"))
}

// TestServerProcess builds the reference server, runs it as a process on
// SQLite and on PostgreSQL, posts every fixture, waits for each entity to
// reach its mirror table, then stops it with SIGTERM.
func TestServerProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	bin := buildServer(t)

	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		// No key or token given: the server generates them and prints them.
		runServer(t, bin, "sqlite:"+filepath.Join(t.TempDir(), "tds.db"), false)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		// An empty database: the server migrates it.
		runServer(t, bin, tdstest.PostgresURL(t, tdstest.Unmigrated()), true)
	})
}

// server is a running server process.
type server struct {
	cmd         *exec.Cmd
	mu          sync.Mutex
	stdout      bytes.Buffer
	stderr      bytes.Buffer
	addr        chan string
	metricsAddr chan string // when -metrics-addr is given
	exited      chan error
}

func (s *server) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "stdout:\n" + s.stdout.String() + "\nstderr:\n" + s.stderr.String()
}

// collect copies r into buf line by line, reporting the listen address.
func (s *server) collect(r io.Reader, buf *bytes.Buffer) {
	listening := regexp.MustCompile(`msg=listening addr=(\S+)`)
	metricsListening := regexp.MustCompile(`msg="metrics listening" addr=(\S+)`)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		s.mu.Lock()
		buf.WriteString(line + "\n")
		s.mu.Unlock()
		if m := listening.FindStringSubmatch(line); m != nil {
			s.addr <- m[1]
		}
		if m := metricsListening.FindStringSubmatch(line); m != nil {
			s.metricsAddr <- m[1]
		}
	}
}

func runServer(t *testing.T, bin, dbURL string, withFlags bool) {
	ctx := context.Background()
	args := []string{"-addr", "127.0.0.1:0", "-database", dbURL, "-workers", "2"}
	key, token := "", ""
	if withFlags {
		key, token = "proc-test-webhook-key", "proc-test-admin-token"
		args = append(args, "-webhook-keys", "proc-test-old-webhook-key,"+key, "-admin-token", "proc-test-old-admin-token,"+token, "-max-conns", "8", "-trusted-proxies", "10.0.0.0/8",
			"-metrics-addr", "127.0.0.1:0")
	}
	var fake *zohofake.Server
	if withFlags {
		// Reconciliation against a fake Zoho holding an item no webhook
		// brought; the schedule is off, runs are asked for by the test.
		fake = zohofake.New(zohofake.Options{})
		t.Cleanup(fake.Close)
		fake.Put("items", map[string]any{"item_id": "reconciled-1", "name": "Only in Zoho",
			"last_modified_time": "2026-11-02T10:00:00+0000"})
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TDS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if fake != nil {
		cmd.Env = append(cmd.Env, "TDS_ZOHO_CLIENT_ID=client-id", "TDS_ZOHO_CLIENT_SECRET=client-secret",
			"TDS_ZOHO_REFRESH_TOKEN=refresh-token", "TDS_ZOHO_ORGANIZATION_ID=org-1",
			"TDS_ZOHO_ACCOUNTS_URL="+fake.URL(), "TDS_ZOHO_API_URL="+fake.URL(),
			"TDS_RECONCILE_INTERVAL=0", "TDS_RECONCILE_FULL_INTERVAL=0")
	}
	s, addr := startServer(t, cmd)
	base := "http://" + addr

	if !withFlags {
		// stdout is a pipe, not a terminal: the generated key and token
		// are in a 0600 file, never in the output.
		out := s.output()
		m := regexp.MustCompile(`written to (\S+) \(mode 0600\)`).FindStringSubmatch(out)
		require.NotNil(t, m, "no notice of the generated secrets in\n%s", out)
		require.NotContains(t, out, "export TDS_")
		file, err := os.ReadFile(m[1])
		require.NoError(t, err)
		out = string(file)
		key = exported(t, out, "TDS_WEBHOOK_KEYS")
		token = exported(t, out, "TDS_ADMIN_TOKEN")
	}

	// Every fixture: the valid ones queued, the invalid one stored with 422.
	reg := tds.ZohoRegistry()
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "envelope", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	want := map[string]string{} // entity id per mirror table, of valid events
	valid := 0
	for _, f := range files {
		body, err := os.ReadFile(f)
		require.NoError(t, err)
		var env struct {
			EntityType string `json:"entity_type"`
			EntityID   string `json:"entity_id"`
		}
		require.NoError(t, json.Unmarshal(body, &env))
		et, ok := reg.Lookup(env.EntityType)
		require.True(t, ok, f)
		status, answer := post(t, base+"/webhooks/"+et.Route, body, "X-Webhook-Key", key)
		if strings.HasPrefix(filepath.Base(f), "invalid_") {
			require.Equal(t, http.StatusUnprocessableEntity, status, "%s: %s", f, answer)
			continue
		}
		require.Equal(t, http.StatusOK, status, "%s: %s", f, answer)
		valid++
		want[et.MirrorTable+"/"+env.EntityID] = env.EntityID
	}
	status, answer := post(t, base+"/webhooks/products", []byte(`{}`), "X-Webhook-Key", "wrong")
	require.Equal(t, http.StatusUnauthorized, status, answer)
	// Headers past 64 KiB are refused by the HTTP server itself.
	status, answer = post(t, base+"/webhooks/products", []byte(`{}`), "X-Webhook-Key", key, "X-Big", strings.Repeat("a", 100<<10))
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, status, answer)

	// Each entity reaches its mirror table.
	db, err := tds.Open(ctx, dbURL)
	require.NoError(t, err)
	defer db.Close()
	deadline := time.Now().Add(60 * time.Second)
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for {
		missing := 0
		for tk, id := range want {
			table := strings.SplitN(tk, "/", 2)[0]
			var n int
			require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table+" WHERE entity_id = ?", id).Scan(&n))
			missing += 1 - n
		}
		var done int
		require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'completed'").Scan(&done))
		if missing == 0 && done == valid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %d entities missing from their mirror tables, %d of %d jobs completed\n%s", missing, done, valid, s.output())
		}
		<-poll.C
	}
	// The delete came after the update of the same product: the row is kept, marked deleted.
	var deleted int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM products WHERE entity_id = '460000000038080' AND deleted_at IS NOT NULL").Scan(&deleted))
	require.Equal(t, 1, deleted)

	// Health and the admin API answer.
	resp, err := http.Get(base + "/health")
	require.NoError(t, err)
	var health map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&health))
	resp.Body.Close()
	require.Equal(t, "healthy", health["status"])
	req, _ := http.NewRequest("GET", base+"/admin/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	var events struct{ Events []tds.InboxEvent }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&events))
	resp.Body.Close()
	require.Len(t, events.Events, len(files))

	// /metrics: behind the admin token on the main listener, open on the
	// metrics listener.
	get := func(url, token string) (int, string) {
		req, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, answer = get(base+"/metrics", "")
	require.Equal(t, http.StatusUnauthorized, status, answer)
	status, answer = get(base+"/metrics", "wrong")
	require.Equal(t, http.StatusUnauthorized, status, answer)
	status, answer = get(base+"/metrics", token)
	require.Equal(t, http.StatusOK, status, answer)
	require.Contains(t, answer, `tds_ingest_requests_total{outcome="accepted",route="products"}`)
	require.Contains(t, answer, `tds_ingest_requests_total{outcome="unauthorized",route="products"} 1`)
	require.Contains(t, answer, `tds_queue_blocked_jobs 0`)
	require.Contains(t, answer, "go_goroutines")
	require.Contains(t, answer, "process_resident_memory_bytes")
	if withFlags {
		var metricsBase string
		select {
		case addr := <-s.metricsAddr:
			metricsBase = "http://" + addr
		case <-time.After(10 * time.Second):
			t.Fatalf("no metrics listener\n%s", s.output())
		}
		status, open := get(metricsBase+"/metrics", "")
		require.Equal(t, http.StatusOK, status, open)
		require.Contains(t, open, `tds_ingest_requests_total{outcome="unauthorized",route="products"} 1`)
		status, _ = get(metricsBase+"/admin/events", "")
		require.Equal(t, http.StatusNotFound, status, "the metrics listener serves /metrics alone")
	}

	if fake != nil {
		// A full run, asked for through the admin API, brings the item
		// only Zoho had into the mirror.
		status, answer := post(t, base+"/admin/reconcile", []byte(`{"mode":"full","entity_types":["product"]}`),
			"Authorization", "Bearer "+token)
		require.Equal(t, http.StatusAccepted, status, answer)
		var started struct {
			RunID int64 `json:"run_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(answer), &started))
		require.Eventually(t, func() bool {
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/admin/sync-runs/%d", base, started.RunID), nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var got struct {
				Run tdsreconcile.SyncRun `json:"run"`
			}
			if json.NewDecoder(resp.Body).Decode(&got) != nil {
				return false
			}
			require.NotEqual(t, tdsreconcile.RunFailed, got.Run.Status, got.Run.Error)
			return got.Run.Status == tdsreconcile.RunCompleted
		}, 60*time.Second, 20*time.Millisecond)
		require.Eventually(t, func() bool {
			var n int
			require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM products WHERE entity_id = 'reconciled-1'").Scan(&n))
			return n == 1
		}, 60*time.Second, 20*time.Millisecond)
	}

	// SIGTERM: a clean exit, nothing left processing.
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-s.exited:
		require.NoError(t, err, "exit status\n%s", s.output())
		require.Equal(t, 0, cmd.ProcessState.ExitCode())
	case <-time.After(60 * time.Second):
		t.Fatalf("server did not exit within 60s of SIGTERM\n%s", s.output())
	}
	require.Contains(t, s.output(), "msg=stopped")
	var processing int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM tds_sync_queue WHERE status = 'processing'").Scan(&processing))
	require.Zero(t, processing)
}

// exported finds "export NAME=value" in the server's output.
func exported(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^export ` + name + `=(\S+)$`).FindStringSubmatch(out)
	require.NotNil(t, m, "no export %s line in\n%s", name, out)
	return m[1]
}

func post(t *testing.T, url string, body []byte, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCredentialLists: every key, secret and token setting takes a
// comma-separated list, and each entry is accepted, so any of them can be
// rotated without downtime.
func TestCredentialLists(t *testing.T) {
	ctx := t.Context()
	db, err := tds.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "tds.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, tds.Migrate(ctx, db))

	zoho := []string{"zohoOldSecret0123456789abcdef0123456789", "zohoNewSecret0123456789abcdef0123456789"}
	std := [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)}
	s := &settings{
		zohoSecret:     " " + zoho[0] + " , " + zoho[1] + ",",
		standardSecret: "whsec_" + base64.StdEncoding.EncodeToString(std[0]) + ",whsec_" + base64.StdEncoding.EncodeToString(std[1]),
		adminToken:     "adm-old-0123456789abcdef, adm-new-0123456789abcdef",
		metricsToken:   "met-old-0123456789abcdef, met-new-0123456789abcdef",
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	webhooks, err := tds.NewHandler(db, s.handlerOptions(tds.ZohoRegistry(), quiet)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = webhooks.Close() })
	console, err := tdsui.New(db, s.consoleOptions(tds.ZohoRegistry(), quiet, nil, nil)...)
	require.NoError(t, err)
	scrape := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "metrics") })
	h := routes(webhooks, console, scrape)

	body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "envelope", "product.json"))
	require.NoError(t, err)
	send := func(method, path string, body []byte, headers ...string) int {
		r := httptest.NewRequest(method, path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Set(headers[i], headers[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for _, secret := range zoho {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		require.Equal(t, http.StatusOK, send("POST", "/webhooks/products", body, tds.HeaderZohoSignature, hex.EncodeToString(mac.Sum(nil))))
	}
	require.Equal(t, http.StatusUnauthorized, send("POST", "/webhooks/products", body, tds.HeaderZohoSignature, strings.Repeat("0", 64)))
	for i, key := range std {
		id, ts := fmt.Sprintf("msg_%d", i), strconv.FormatInt(time.Now().Unix(), 10)
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id + "." + ts + "."))
		mac.Write(body)
		sig := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
		require.Equal(t, http.StatusOK, send("POST", "/webhooks/products", body,
			tds.HeaderWebhookID, id, tds.HeaderWebhookTimestamp, ts, tds.HeaderWebhookSignature, sig))
	}
	for _, tok := range []string{"adm-old-0123456789abcdef", "adm-new-0123456789abcdef"} {
		require.Equal(t, http.StatusOK, send("GET", "/queue/stats", nil, "Authorization", "Bearer "+tok))
	}
	require.Equal(t, http.StatusUnauthorized, send("GET", "/queue/stats", nil, "Authorization", "Bearer adm-old-0123456789abcdef, adm-new-0123456789abcdef"))

	// The metrics tokens open GET /metrics and nothing else; an admin token opens it too.
	for _, tok := range []string{"met-old-0123456789abcdef", "met-new-0123456789abcdef", "adm-new-0123456789abcdef"} {
		require.Equal(t, http.StatusOK, send("GET", "/metrics", nil, "Authorization", "Bearer "+tok), tok)
	}
	require.Equal(t, http.StatusUnauthorized, send("GET", "/metrics", nil))
	for _, tok := range []string{"met-old-0123456789abcdef", "met-new-0123456789abcdef"} {
		for _, path := range []string{"/queue/stats", "/admin/events", "/admin/dead-letters", "/admin/alerts", "/admin/sync-runs"} {
			require.Equal(t, http.StatusUnauthorized, send("GET", path, nil, "Authorization", "Bearer "+tok), path)
		}
		for _, path := range []string{"/admin/dead-letters/retry", "/admin/reconcile", "/admin/alerts/1/ack"} {
			require.Equal(t, http.StatusUnauthorized, send("POST", path, []byte(`{"all":true}`), "Authorization", "Bearer "+tok), path)
		}
	}
}

// TestLimitListener: past n open connections, the next is accepted only
// once one of them is closed.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := newLimitListener(inner, 2)
	t.Cleanup(func() { _ = ln.Close() })
	accepted := make(chan net.Conn, 3)
	acceptDone := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				acceptDone <- err
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		require.NoError(t, err)
		clients = append(clients, c)
	}
	var served []net.Conn
	for range 2 {
		select {
		case c := <-accepted:
			served = append(served, c)
		case <-time.After(10 * time.Second):
			t.Fatal("the first two connections were not accepted")
		}
	}
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted while two were open")
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, served[0].Close())
	_ = served[0].Close() // a second close gives back no second slot
	select {
	case c := <-accepted:
		served = append(served, c)
	case <-time.After(10 * time.Second):
		t.Fatal("the third connection was not accepted after one closed")
	}
	// Close ends an Accept that waits for a slot.
	require.NoError(t, ln.Close())
	select {
	case err := <-acceptDone:
		require.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
	for _, c := range append(clients, served...) {
		_ = c.Close()
	}
}

// startServer starts cmd, a server process, collects its output (logged
// when the test fails), kills it at cleanup if it is still running, and
// returns it once it listens, with its address.
func startServer(t *testing.T, cmd *exec.Cmd) (*server, string) {
	t.Helper()
	s := &server{cmd: cmd, addr: make(chan string, 1), metricsAddr: make(chan string, 1), exited: make(chan error, 1)}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var pipes sync.WaitGroup
	pipes.Go(func() { s.collect(stdout, &s.stdout) })
	pipes.Go(func() { s.collect(stderr, &s.stderr) })
	go func() {
		pipes.Wait() // read everything before Wait closes the pipes
		s.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Log(s.output())
		}
	})
	select {
	case addr := <-s.addr:
		return s, addr
	case err := <-s.exited:
		t.Fatalf("server exited before listening: %v\n%s", err, s.output())
	case <-time.After(60 * time.Second):
		t.Fatalf("server did not listen within 60s\n%s", s.output())
	}
	return nil, ""
}
