package main

import (
	"context"
	"net/http"

	"github.com/uptrace/bun"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdsotel"
)

// tracing is -trace: package tdsotel on a provider that samples every
// span and hands them to a batch span processor whose exporter discards
// them, so that a run measures what tracing costs tds (spans made, links
// decoded, trace contexts stored) and not a collector. nil is off.
type tracing struct {
	tp *sdktrace.TracerProvider
	tr *tdsotel.Tracer
}

// benchTraceparent is the trace context stored with the burn-down's
// events under -trace, so that every attempt's span decodes one and links
// to it, as after a traced webhook.
const benchTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func startTracing(on bool) (*tracing, error) {
	if !on {
		return nil, nil
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(discard{}))
	tr, err := tdsotel.New(tdsotel.WithTracerProvider(tp))
	if err != nil {
		return nil, err
	}
	return &tracing{tp: tp, tr: tr}, nil
}

func (t *tracing) stop() {
	if t != nil {
		_ = t.tp.Shutdown(context.Background())
	}
}

func (t *tracing) handlerOptions() []tds.Option {
	if t == nil {
		return nil
	}
	return t.tr.HandlerOptions()
}

func (t *tracing) workerOptions() []tds.Option {
	if t == nil {
		return nil
	}
	return t.tr.WorkerOptions()
}

// wrap gives h a server span per request.
func (t *tracing) wrap(h http.Handler) http.Handler {
	if t == nil {
		return h
	}
	return t.tr.Handler(h)
}

// traceEvents stores benchTraceparent with every event, as a traced
// ingest would have.
func (t *tracing) traceEvents(ctx context.Context, db *bun.DB) error {
	if t == nil {
		return nil
	}
	_, err := db.NewRaw("UPDATE tds_inbox_events SET trace_context = ?", benchTraceparent).Exec(ctx)
	return err
}

// discard is a span exporter that drops what it is given.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }
