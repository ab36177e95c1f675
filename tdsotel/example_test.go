package tdsotel_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/uptrace/bun"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdsotel"
)

// Trace a webhook and its job: the Handler behind tr.Handler with
// tr.HandlerOptions, the Worker with tr.WorkerOptions. The Syncer's ctx
// carries the attempt's span, which links to the webhook's.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tdsotel-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := tds.Open(ctx, "sqlite:"+filepath.Join(dir, "tds.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if err := tds.Migrate(ctx, db); err != nil {
		log.Fatal(err)
	}

	// In a program: an OTLP exporter, or nothing (the global provider).
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(ctx)
	tr, err := tdsotel.New(tdsotel.WithTracerProvider(tp))
	if err != nil {
		log.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	h, err := tds.NewHandler(db, append(tr.HandlerOptions(), tds.WithWebhookKeys("example-webhook-key"), tds.WithLogger(quiet))...)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	srv := httptest.NewServer(tr.Handler(h))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/products", strings.NewReader(
		`{"event_type":"update","entity_type":"product","entity_id":"p-1","data":{"item_id":"p-1","name":"Widget"}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(tds.HeaderWebhookKey, "example-webhook-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()

	synced := make(chan trace.SpanContext, 1)
	syncer := tds.SyncFunc(func(ctx context.Context, tx bun.Tx, job *tds.SyncJob) error {
		synced <- trace.SpanFromContext(ctx).SpanContext() // your bunotel queries nest here
		return nil
	})
	w, err := tds.NewWorker(db, syncer, append(tr.WorkerOptions(), tds.WithLogger(quiet))...)
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	attempt := <-synced
	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}

	var server trace.SpanContext
	for _, s := range exp.GetSpans() {
		if s.SpanKind == trace.SpanKindServer {
			server = s.SpanContext
			fmt.Println("server span:", s.Name)
		}
	}
	for _, s := range exp.GetSpans() {
		switch s.Name {
		case tdsotel.SpanIngestBatch:
			fmt.Println("ingest batch, child of the server span:", s.Parent.SpanID() == server.SpanID())
		case tdsotel.SpanSync:
			fmt.Println("attempt span = the Syncer's ctx:", s.SpanContext.Equal(attempt))
			fmt.Println("attempt links to the webhook:", s.Links[0].SpanContext.SpanID() == server.SpanID())
		}
	}
	// Output:
	// server span: POST /webhooks/{route}
	// ingest batch, child of the server span: true
	// attempt span = the Syncer's ctx: true
	// attempt links to the webhook: true
}
