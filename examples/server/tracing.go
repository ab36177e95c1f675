package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tdscore/tds/tdsotel"
)

// Tracing follows OpenTelemetry's standard environment, not flags of its
// own: OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// turns it on, and the OTLP/HTTP exporter and the SDK read the rest
// themselves (headers, timeout, compression, OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and its argument,
// OTEL_BSP_* for the batch processor). OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none keeps it off.

// tracingShutdownTimeout bounds the flush of the last spans on exit.
const tracingShutdownTimeout = 5 * time.Second

// tracingOn reports whether the environment asks for traces.
func tracingOn(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") ||
		strings.EqualFold(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")), "none") {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// startTracing returns the tds tracer exporting over OTLP/HTTP and the
// function that flushes and stops it, or a nil tracer when the
// environment does not ask for traces. The provider and propagator
// (W3C trace context and baggage) become the process's globals.
func startTracing(ctx context.Context, getenv func(string) string) (*tdsotel.Tracer, func(*slog.Logger), error) {
	if !tracingOn(getenv) {
		return nil, func(*slog.Logger) {}, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, err
	}
	// The defaults first: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override them.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "tds"), attribute.String("service.version", versionString())),
		resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exp.Shutdown(ctx)
		return nil, nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(prop)
	tr, err := tdsotel.New(tdsotel.WithTracerProvider(tp), tdsotel.WithPropagator(prop))
	if err != nil {
		_ = tp.Shutdown(ctx)
		return nil, nil, err
	}
	stop := func(log *slog.Logger) {
		ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			log.Warn("flushing the last spans", "error", err)
		}
	}
	return tr, stop, nil
}
