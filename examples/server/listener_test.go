package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestIdleConnectionsDoNotBlock: one client holding 300 idle keep-alive
// connections (each has completed a request) to a server with the
// default -max-conns cannot keep a webhook on a new connection waiting.
func TestIdleConnectionsDoNotBlock(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	const idle = 300
	require.Greater(t, idle, defaultMaxConns)
	bin := filepath.Join(t.TempDir(), "tds-server")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	key := "idle-test-webhook-key-0123456789abcdef"
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-database", "sqlite:"+filepath.Join(t.TempDir(), "tds.db"),
		"-workers", "1", "-webhook-keys", key, "-admin-token", "idle-test-admin-token-0123456789abcdef")
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TDS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	_, addr := startServer(t, cmd)

	// roundTrip writes one request on c and reads its answer, leaving c
	// open (keep-alive) when the server keeps it.
	roundTrip := func(c net.Conn, req string) (*http.Response, error) {
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(c, req); err != nil {
			return nil, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, nil
	}
	live := "GET /health/live HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	for i := range idle {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		conns = append(conns, c)
		resp, err := roundTrip(c, live)
		require.NoError(t, err, "keep-alive connection %d of %d got no answer", i+1, idle)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.False(t, resp.Close, "the server closed keep-alive connection %d", i+1)
	}

	body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "envelope", "product.json"))
	require.NoError(t, err)
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	conns = append(conns, c)
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST /webhooks/products HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nX-Webhook-Key: %s\r\nContent-Length: %d\r\n\r\n%s",
		addr, key, len(body), body)
	resp, err := roundTrip(c, req.String())
	elapsed := time.Since(start)
	require.NoError(t, err, "the webhook got no answer with %d idle connections open", idle)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	t.Logf("webhook answered in %v with %d idle keep-alive connections held by the client", elapsed, idle)
}

// TestLimitListenerEvictsIdle: a full listener closes an idle keep-alive
// connection to accept a new one, never one serving a request.
func TestLimitListenerEvictsIdle(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := newLimitListener(inner, 2)
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}), ConnState: ln.trackState}
	go func() { _ = srv.Serve(ln) }()
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(func() { unblock(); _ = srv.Close() })
	addr := inner.Addr().String()
	request := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n" }
	answer := func(c net.Conn) (*http.Response, error) {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		return http.ReadResponse(bufio.NewReader(c), nil)
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	// idle: a completed request, kept alive; busy: a request being served.
	idle := dial()
	_, err = io.WriteString(idle, request("/fast"))
	require.NoError(t, err)
	resp, err := answer(idle)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	busy := dial()
	_, err = io.WriteString(busy, request("/slow"))
	require.NoError(t, err)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not reach the handler")
	}

	// A third connection is served: the idle one is closed for it.
	third := dial()
	_, err = io.WriteString(third, request("/fast"))
	require.NoError(t, err)
	resp, err = answer(third)
	require.NoError(t, err, "the third connection was not served")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, idle.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = idle.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the idle connection was not closed")

	// A fourth is served too, in place of the third (now idle); the busy
	// connection, still serving, is kept and answers.
	fourth := dial()
	_, err = io.WriteString(fourth, request("/fast"))
	require.NoError(t, err)
	resp, err = answer(fourth)
	require.NoError(t, err, "the fourth connection was not served")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	unblock()
	resp, err = answer(busy)
	require.NoError(t, err, "the busy connection was closed")
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
