package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdstest"
)

// logLines is a server's stderr as JSON lines, safe for concurrent use.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// await polls the log until a line satisfies match, and returns it decoded.
func (l *logLines) await(t *testing.T, what string, match func(line map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		sc := bufio.NewScanner(strings.NewReader(l.String()))
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && match(line) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %s within 60s:\n%s", what, l.String())
		}
		<-poll.C
	}
}

// requireJSONLines checks that every line of the log is a JSON object.
func (l *logLines) requireJSONLines(t *testing.T) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	for sc.Scan() {
		var line map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line), "a log line that is not JSON: %q", sc.Text())
	}
}

// startInProcess runs the server in this process with args (stdout
// discarded, stderr in the returned log) until the returned cancel, which
// acts as SIGINT; exit receives its exit code.
func startInProcess(t *testing.T, args ...string) (log *logLines, cancel context.CancelFunc, exit chan int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log, exit = &logLines{}, make(chan int, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		exit <- runContext(ctx, args, func(string) string { return "" }, io.Discard, log)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(60 * time.Second):
			t.Errorf("the server did not stop within 60s of its cancel\n%s", log.String())
		}
	})
	return log, cancel, exit
}

// proxy forwards TCP connections from its address to a target: a
// PostgreSQL that is "down" until the proxy starts, and whose
// connections the test can break.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

// startProxy listens on addr and forwards to target.
func startProxy(t *testing.T, addr, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err, "the port picked for the database that is down was taken meanwhile")
	p := &proxy{ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		p.breakAll()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Go(func() { _, _ = io.Copy(up, c); _ = up.Close() })
		p.wg.Go(func() { _, _ = io.Copy(c, up); _ = c.Close() })
	}
}

// breakAll closes every forwarded connection, as a database restart would.
func (p *proxy) breakAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// TestStartWaitsForDatabase: a server started before its PostgreSQL is
// alive (200 on /health/live) and not ready (503 on /health/ready, and on
// a webhook, with Retry-After); it logs each attempt at WARN; once the
// database answers it migrates, becomes ready and stores a webhook. With
// -log-format json, the driver's line when its LISTEN connection breaks is
// JSON too. Its cancel (SIGINT) ends it with exit code 0.
//
// Not parallel: the drivers' logger belongs to the process, and the last
// server started in it takes it.
func TestStartWaitsForDatabase(t *testing.T) {
	real, err := url.Parse(tdstest.PostgresURL(t, tdstest.Unmigrated()))
	require.NoError(t, err)
	// A port nothing listens on: the database is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := ln.Addr().String()
	require.NoError(t, ln.Close())
	dbURL := *real
	dbURL.Host = down

	const key, token = "start-test-webhook-key", "start-test-admin-token"
	log, cancel, exit := startInProcess(t, "-addr", "127.0.0.1:0", "-database", dbURL.String(), "-workers", "1",
		"-webhook-keys", key, "-admin-token", token, "-log-format", "json")
	waiting := log.await(t, "saying it waits for the database", func(l map[string]any) bool {
		return l["level"] == "WARN" && strings.HasPrefix(l["msg"].(string), "database unavailable")
	})
	require.EqualValues(t, 1, waiting["attempt"])
	require.NotEmpty(t, waiting["retry_in"])
	require.NotContains(t, waiting["error"], real.User.String(), "no credentials in the log")
	base := "http://" + waiting["addr"].(string)

	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := get("/health/live")
	require.Equal(t, http.StatusOK, status, body)
	status, body = get("/health/ready")
	require.Equal(t, http.StatusServiceUnavailable, status, body)
	require.Contains(t, body, `"status":"unready"`)
	product, err := os.ReadFile(filepath.Join("..", "..", "testdata", "envelope", "product.json"))
	require.NoError(t, err)
	req, _ := http.NewRequest("POST", base+"/webhooks/products", bytes.NewReader(product))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Webhook-Key", key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a webhook waits for the database too")
	require.NotEmpty(t, resp.Header.Get("Retry-After"))

	// The database comes up: the server migrates it and becomes ready.
	db := startProxy(t, down, real.Host)
	log.await(t, "listening", func(l map[string]any) bool { return l["msg"] == "listening" })
	status, body = get("/health/ready")
	require.Equal(t, http.StatusOK, status, body)
	status, answer := post(t, base+"/webhooks/products", product, "X-Webhook-Key", key)
	require.Equal(t, http.StatusOK, status, answer)
	require.Contains(t, answer, `"queued":true`)

	// The database drops every connection once the worker listens for
	// enqueues: the driver's own line about its LISTEN connection is a JSON
	// line of the server's log.
	admin, err := tds.Open(t.Context(), real.String())
	require.NoError(t, err)
	defer admin.Close()
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, admin.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&n))
		return n > 0
	}, 60*time.Second, 20*time.Millisecond, "the worker does not listen for enqueues\n%s", log.String())
	db.breakAll()
	line := log.await(t, "from the driver", func(l map[string]any) bool { return l["driver"] == "pgdriver" })
	require.Equal(t, "WARN", line["level"])
	require.Contains(t, line["msg"], "listener connection")

	cancel()
	select {
	case code := <-exit:
		require.Equal(t, 0, code, log.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("the server did not stop within 60s\n%s", log.String())
	}
	log.requireJSONLines(t)
}

// TestStartInterruptedWhileWaiting: SIGINT while the database is awaited
// ends the server at once with exit code 0; an error waiting cannot cure
// (a wrong password) ends it with 1, without waiting.
func TestStartInterruptedWhileWaiting(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := ln.Addr().String()
	require.NoError(t, ln.Close())

	log, cancel, exit := startInProcess(t, "-addr", "127.0.0.1:0", "-database", "postgres://tds:secret@"+down+"/tds?sslmode=disable",
		"-webhook-keys", "interrupt-test-webhook-key", "-admin-token", "interrupt-test-admin-token", "-log-format", "json")
	log.await(t, "saying it waits", func(l map[string]any) bool { return l["level"] == "WARN" })
	cancel()
	select {
	case code := <-exit:
		require.Equal(t, 0, code, log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("SIGINT did not end the wait within 30s\n%s", log.String())
	}
	log.await(t, "stopped", func(l map[string]any) bool { return l["msg"] == "stopped" })
	require.NotContains(t, log.String(), "secret")

	real, err := url.Parse(tdstest.PostgresURL(t))
	require.NoError(t, err)
	real.User = url.UserPassword(real.User.Username(), "wrong-password")
	var stderr logLines
	code := run([]string{"-addr", "127.0.0.1:0", "-database", real.String(), "-webhook-keys", "interrupt-test-webhook-key",
		"-admin-token", "interrupt-test-admin-token"}, func(string) string { return "" }, io.Discard, &stderr)
	require.Equal(t, 1, code, stderr.String())
	require.NotContains(t, stderr.String(), "retrying")
}
