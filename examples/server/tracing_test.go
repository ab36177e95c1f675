package main

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tdscore/tds/tdsotel"
)

// otlpReceiver is a minimal OTLP/HTTP trace receiver: it accepts
// POST /v1/traces (protobuf, gzip or not) and keeps the spans with their
// resource's service.name.
type otlpReceiver struct {
	mu      sync.Mutex
	spans   []*tracepb.Span
	service map[string]bool
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				o.service[kv.GetValue().GetStringValue()] = true
			}
		}
		for _, ss := range rs.ScopeSpans {
			o.spans = append(o.spans, ss.Spans...)
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// named returns the spans received with that name.
func (o *otlpReceiver) named(name string) []*tracepb.Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range o.spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func (o *otlpReceiver) names() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, s := range o.spans {
		out = append(out, s.Name)
	}
	return out
}

// With OTEL_EXPORTER_OTLP_ENDPOINT pointing at a receiver, the server's
// spans arrive there: the webhook's server span (a child of the sender's
// traceparent), its ingest batch, and its job's attempt linked to it; the
// log line of the webhook carries the server span's ids.
func TestServerExportsSpansOverOTLP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	recv := &otlpReceiver{service: map[string]bool{}}
	collector := httptest.NewServer(recv)
	defer collector.Close()

	bin := buildServer(t)
	const key = "otlp-test-webhook-key"
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-database", "sqlite:"+filepath.Join(t.TempDir(), "tds.db"),
		"-workers", "1", "-webhook-keys", key, "-admin-token", "otlp-test-admin-token", "-log-level", "debug")
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TDS_") && !strings.HasPrefix(kv, "OTEL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "OTEL_EXPORTER_OTLP_ENDPOINT="+collector.URL, "OTEL_SERVICE_NAME=tds-otlp-test",
		"OTEL_BSP_SCHEDULE_DELAY=50")
	s, addr := startServer(t, cmd)

	const traceID = "0af7651916cd43dd8448eb211c80319c"
	status, answer := post(t, "http://"+addr+"/webhooks/products",
		[]byte(`{"event_type":"update","entity_type":"product","entity_id":"otlp-1","data":{"item_id":"otlp-1","name":"Traced"}}`),
		"X-Webhook-Key", key, "Traceparent", "00-"+traceID+"-b7ad6b7169203331-01")
	require.Equal(t, http.StatusOK, status, answer)

	// The attempt's span comes once the worker has synced the job.
	deadline := time.Now().Add(60 * time.Second)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for len(recv.named(tdsotel.SpanSync)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no %s span within 60s; received %v\n%s", tdsotel.SpanSync, recv.names(), s.output())
		}
		<-poll.C
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-s.exited:
		require.NoError(t, err, s.output())
	case <-time.After(60 * time.Second):
		t.Fatalf("the server did not stop\n%s", s.output())
	}

	var server *tracepb.Span
	for _, name := range recv.names() {
		if strings.HasPrefix(name, "POST") || name == "tds.webhook" {
			server = recv.named(name)[0]
		}
	}
	require.NotNil(t, server, "no server span in %v", recv.names())
	require.Equal(t, tracepb.Span_SPAN_KIND_SERVER, server.Kind)
	require.Equal(t, traceID, hex.EncodeToString(server.TraceId), "the server span continues the sender's trace")
	batches := recv.named(tdsotel.SpanIngestBatch)
	require.Len(t, batches, 1)
	require.Equal(t, server.SpanId, batches[0].ParentSpanId)
	attempt := recv.named(tdsotel.SpanSync)[0]
	require.Len(t, attempt.Links, 1)
	require.Equal(t, server.TraceId, attempt.Links[0].TraceId)
	require.Equal(t, server.SpanId, attempt.Links[0].SpanId, "the attempt links to the webhook's span")
	recv.mu.Lock()
	require.True(t, recv.service["tds-otlp-test"], "OTEL_SERVICE_NAME names the service: %v", recv.service)
	recv.mu.Unlock()

	// The webhook's log line carries the server span's ids.
	line := regexp.MustCompile(`(?m)^.*msg="tds: webhook received".*$`).FindString(s.output())
	require.NotEmpty(t, line, s.output())
	require.Contains(t, line, fmt.Sprintf("trace_id=%s span_id=%s", traceID, hex.EncodeToString(server.SpanId)))
}

func TestTracingOn(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"OTEL_SERVICE_NAME": "tds"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
	} {
		require.Equal(t, c.want, tracingOn(func(k string) string { return c.env[k] }), "%v", c.env)
	}
}
