// Package tdsotel traces tds with OpenTelemetry, as bun's bunotel traces
// bun: it reaches tds only through the root package's generic hooks, so a
// program that does not import it builds nothing of OpenTelemetry.
//
// One webhook's trace, and where each span comes from:
//
//   - a server span per webhook request ([Tracer.Handler], HTTP semantic
//     conventions), a child of the trace context in the request's headers;
//   - a span for the group-commit transaction that stored its event
//     ([SpanIngestBatch], from [Tracer.HandlerOptions]), linked both ways
//     with the span of every request it holds;
//   - the request's trace context (its W3C traceparent) stored with the
//     event in the database;
//   - a span per job attempt ([SpanSync], from [Tracer.WorkerOptions]),
//     whose context the Syncer receives, linked to that stored context:
//     found from the webhook's trace after a retry, in another process,
//     after a restart;
//   - a span per reconciliation run ([Tracer.ReconcileHooks]) and a client
//     span per Zoho API call ([Tracer.Transport]).
//
// [LogHandler] adds trace_id and span_id to the log lines written inside
// a span.
//
//	tr, err := tdsotel.New() // the global TracerProvider and propagator
//	h, err := tds.NewHandler(db, append(opts, tr.HandlerOptions()...)...)
//	w, err := tds.NewWorker(db, syncer, append(wopts, tr.WorkerOptions()...)...)
//	http.Handle("/", tr.Handler(h))
package tdsotel
