package tdsotel

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdsreconcile"
)

// ScopeName is the instrumentation scope of the tracer.
const ScopeName = "github.com/tdscore/tds/tdsotel"

// Span names.
const (
	// SpanIngestBatch is the group-commit transaction that stored a
	// webhook's event.
	SpanIngestBatch = "tds.ingest_batch"
	// SpanSync is one attempt of a job: a call of the Syncer's Sync.
	SpanSync = "tds.sync"
	// SpanSyncBatch is a call of a BatchSyncer's SyncBatch.
	SpanSyncBatch = "tds.sync_batch"
	// SpanReconcile is a reconciliation run, while it runs in a process.
	SpanReconcile = "tds.reconcile"
)

// Attribute keys of the spans.
const (
	AttrEntityType  = attribute.Key("tds.entity_type")
	AttrEntityID    = attribute.Key("tds.entity_id")
	AttrJobID       = attribute.Key("tds.job_id")
	AttrEventID     = attribute.Key("tds.inbox_event_id")
	AttrAttempt     = attribute.Key("tds.attempt")
	AttrJobStatus   = attribute.Key("tds.job.status")  // completed, retry, dead_letter
	AttrOutcome     = attribute.Key("tds.job.outcome") // synced, superseded
	AttrBatchEvents = attribute.Key("tds.batch.events")
	AttrBatchJobs   = attribute.Key("tds.batch.jobs")
	AttrRunID       = attribute.Key("tds.reconcile.run_id")
	AttrRunMode     = attribute.Key("tds.reconcile.mode")
	AttrRunDryRun   = attribute.Key("tds.reconcile.dry_run")
	AttrRunStatus   = attribute.Key("tds.reconcile.status")
)

// Tracer makes the spans of tds. Its methods are safe for concurrent use.
type Tracer struct {
	tp     trace.TracerProvider
	prop   propagation.TextMapPropagator
	tracer trace.Tracer
}

// Option configures [New].
type Option struct {
	name  string
	apply func(*Tracer) error
}

// WithTracerProvider sets the provider of the spans.
// Defaults to otel.GetTracerProvider() at the time New is called.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return Option{"WithTracerProvider", func(t *Tracer) error {
		if tp == nil {
			return errors.New("provider is nil")
		}
		t.tp = tp
		return nil
	}}
}

// WithPropagator sets how the trace context of an incoming webhook
// request is read from its headers (the Zoho API calls' outgoing
// headers use it too). The context stored with an event is always the
// W3C trace context, whatever the propagator.
// Defaults to otel.GetTextMapPropagator() at the time New is called.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return Option{"WithPropagator", func(t *Tracer) error {
		if p == nil {
			return errors.New("propagator is nil")
		}
		t.prop = p
		return nil
	}}
}

// New returns a Tracer. An option with a bad value is an error naming it.
func New(opts ...Option) (*Tracer, error) {
	t := &Tracer{}
	var errs []error
	for _, o := range opts {
		if o.apply == nil {
			continue
		}
		if err := o.apply(t); err != nil {
			errs = append(errs, fmt.Errorf("tdsotel: %s: %w", o.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if t.tp == nil {
		t.tp = otel.GetTracerProvider()
	}
	if t.prop == nil {
		t.prop = otel.GetTextMapPropagator()
	}
	t.tracer = t.tp.Tracer(ScopeName)
	return t, nil
}

// Handler wraps the webhook handler h (a *tds.Handler, or the mux it is
// mounted on) so that every request gets a server span following the HTTP
// semantic conventions, a child of the trace context in its headers if
// any. The events it stores carry the span's context when the Handler was
// built with [Tracer.HandlerOptions].
func (t *Tracer) Handler(h http.Handler) http.Handler {
	return otelhttp.NewHandler(h, "tds.webhook",
		otelhttp.WithTracerProvider(t.tp), otelhttp.WithPropagators(t.prop))
}

// HandlerOptions are the options of [tds.NewHandler] (and
// [tds.NewProcessor]) that store each event with the trace context of the
// call storing it, and give each group-commit transaction a span
// ([SpanIngestBatch]): a child of the span of the request that leads the
// batch, linked to the span of every request it holds, each of which gets
// a link back to it.
func (t *Tracer) HandlerOptions() []tds.Option {
	return []tds.Option{tds.WithTraceContext(t.carrier), tds.WithIngestHook(t.ingest)}
}

// WorkerOptions are the options of [tds.NewWorker] that give each job
// attempt a span ([SpanSync]) whose context the Syncer receives, so that
// its own spans (bun's bunotel queries, say) nest under it. The span is
// the root of a trace of its own, linked to the context stored with the
// job's event: the webhook's trace is found from every attempt, in any
// process, after any delay. It carries the entity type and id, the job,
// the attempt, and when it ends the job's status (completed, retry,
// dead_letter) and outcome, with an error status for a failed attempt.
//
// A BatchSyncer's SyncBatch gets one span ([SpanSyncBatch]) linked to the
// stored context of each of its jobs, with an event per job telling its
// status; when SyncBatch fails, its jobs are synced one at a time, each
// in a [SpanSync] of its own.
func (t *Tracer) WorkerOptions() []tds.Option {
	return []tds.Option{tds.WithAttemptHook(t.attempt)}
}

// ReconcileHooks are hooks for [tdsreconcile.WithHooks] giving each
// reconciliation run, while it runs in this process, a span
// ([SpanReconcile]); its Zoho API calls (with [Tracer.Transport] on its
// HTTP client) and the repairs it ingests nest under it.
func (t *Tracer) ReconcileHooks() tdsreconcile.Hooks {
	return tdsreconcile.Hooks{RunStarting: t.reconcile}
}

// Transport wraps rt (nil for http.DefaultTransport) so that every request
// gets a client span, for the HTTPClient of [tdsreconcile.ZohoAPI]: each
// Zoho API and token call, retries included.
func (t *Tracer) Transport(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(t.tp), otelhttp.WithPropagators(t.prop))
}

// w3c encodes and decodes the stored trace context.
var w3c = propagation.TraceContext{}

// carrier is the stored form of ctx's span context: the W3C traceparent,
// then a space and the tracestate when there is one (a traceparent has no
// space).
func (t *Tracer) carrier(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	mc := propagation.MapCarrier{}
	w3c.Inject(ctx, mc)
	s := mc.Get("traceparent")
	if ts := mc.Get("tracestate"); ts != "" && s != "" {
		s += " " + ts
	}
	return s
}

// SpanContextOf decodes a trace context as tds stores it with an event
// ([tds.AttemptJob.TraceContext]); the result is invalid when s is not
// one.
func SpanContextOf(s string) trace.SpanContext {
	parent, state, _ := strings.Cut(s, " ")
	mc := propagation.MapCarrier{"traceparent": parent}
	if state != "" {
		mc["tracestate"] = state
	}
	return trace.SpanContextFromContext(w3c.Extract(context.Background(), mc))
}

func (t *Tracer) ingest(ctx context.Context, requests []context.Context) (context.Context, func(error)) {
	links := make([]trace.Link, 0, len(requests))
	for _, r := range requests {
		if sc := trace.SpanContextFromContext(r); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	leader := trace.SpanContextFromContext(ctx)
	ctx, span := t.tracer.Start(ctx, SpanIngestBatch, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithLinks(links...), trace.WithAttributes(AttrBatchEvents.Int(len(requests))))
	// The other requests' spans point to the batch that stored their
	// event (the leader's is its parent).
	own := span.SpanContext()
	for _, r := range requests {
		if rs := trace.SpanFromContext(r); rs.IsRecording() && !rs.SpanContext().Equal(leader) {
			rs.AddLink(trace.Link{SpanContext: own})
		}
	}
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

func (t *Tracer) attempt(ctx context.Context, a tds.AttemptInfo) (context.Context, func([]tds.JobResult, error)) {
	links := make([]trace.Link, 0, len(a.Jobs))
	for _, j := range a.Jobs {
		if sc := SpanContextOf(j.TraceContext); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{AttrJobID.Int64(j.JobID)}})
		}
	}
	name := SpanSync
	attrs := make([]attribute.KeyValue, 0, 5)
	if a.Batch {
		name = SpanSyncBatch
		attrs = append(attrs, AttrBatchJobs.Int(len(a.Jobs)))
	} else if len(a.Jobs) == 1 {
		j := a.Jobs[0]
		attrs = append(attrs, AttrEntityType.String(j.EntityType), AttrEntityID.String(j.EntityID),
			AttrJobID.Int64(j.JobID), AttrEventID.Int64(j.InboxEventID), AttrAttempt.Int(j.Attempt))
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(links...), trace.WithAttributes(attrs...))
	return ctx, func(results []tds.JobResult, err error) {
		defer span.End()
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			return
		}
		var failed error
		for _, r := range results {
			kv := []attribute.KeyValue{AttrJobStatus.String(string(r.Status))}
			if r.Outcome != "" {
				kv = append(kv, AttrOutcome.String(string(r.Outcome)))
			}
			if a.Batch {
				span.AddEvent("tds.job", trace.WithAttributes(append(kv, AttrJobID.Int64(r.JobID),
					AttrEntityType.String(r.EntityType), AttrEntityID.String(r.EntityID), AttrAttempt.Int(r.Attempt))...))
			} else {
				span.SetAttributes(kv...)
			}
			if r.Err != nil {
				span.RecordError(r.Err, trace.WithAttributes(AttrJobID.Int64(r.JobID)))
				failed = errors.Join(failed, r.Err)
			}
		}
		if failed != nil {
			span.SetStatus(codes.Error, failed.Error())
		}
	}
}

func (t *Tracer) reconcile(ctx context.Context, run tdsreconcile.SyncRun) (context.Context, func(error)) {
	ctx, span := t.tracer.Start(ctx, SpanReconcile, trace.WithAttributes(AttrRunID.Int64(run.ID),
		AttrRunMode.String(string(run.Mode)), AttrRunDryRun.Bool(run.DryRun)))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
