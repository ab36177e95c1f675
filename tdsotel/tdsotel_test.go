package tdsotel_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/internal/testkit"
	"github.com/tdscore/tds/tdsotel"
	"github.com/tdscore/tds/tdstest"
)

func TestMain(m *testing.M) { tdstest.Main(m) }

// process is what one process of the test holds: a pool, a tracer
// provider recording in memory, and a Tracer on it.
type process struct {
	db  *bun.DB
	exp *tracetest.InMemoryExporter
	tp  *sdktrace.TracerProvider
	tr  *tdsotel.Tracer
}

func newProcess(t *testing.T, url string) *process {
	t.Helper()
	db, err := tds.Open(t.Context(), url)
	require.NoError(t, err)
	p := &process{db: db, exp: tracetest.NewInMemoryExporter()}
	p.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(p.exp))
	p.tr, err = tdsotel.New(tdsotel.WithTracerProvider(p.tp), tdsotel.WithPropagator(propagation.TraceContext{}))
	require.NoError(t, err)
	return p
}

// end is the process's exit: its spans are flushed, its pool closed.
func (p *process) end(t *testing.T) tracetest.SpanStubs {
	t.Helper()
	spans := p.exp.GetSpans()
	require.NoError(t, p.tp.Shutdown(context.Background()))
	require.NoError(t, p.db.Close())
	return spans
}

func byName(spans tracetest.SpanStubs, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// flaky fails each job's first attempt and records the span context its
// ctx carries at every call.
type flaky struct {
	mu    sync.Mutex
	seen  map[string]int
	spans []trace.SpanContext
}

func (f *flaky) Sync(ctx context.Context, _ bun.Tx, job *tds.SyncJob) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.spans = append(f.spans, trace.SpanFromContext(ctx).SpanContext())
	f.seen[job.EntityID]++
	if f.seen[job.EntityID] == 1 {
		return tds.RetryAfter(time.Millisecond, errors.New("the source is busy"))
	}
	return nil
}

// One webhook, then its job's attempts in another process: the attempts'
// spans link to the webhook's server span, whose context was stored with
// the event; a retried job's two attempts link to the same span; the
// Syncer's ctx carries the attempt's span.
func TestWebhookAndItsAttemptsInAnotherProcessFormOneLinkedTrace(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		// The sender's trace, as a traceparent header.
		const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

		// Process 1: the webhook.
		p1 := newProcess(t, tdb.URL)
		h, err := tds.NewHandler(p1.db, append(p1.tr.HandlerOptions(), tds.WithoutAuthentication(),
			tds.WithLogger(testdb.QuietLogger))...)
		require.NoError(t, err)
		data, _ := json.Marshal(map[string]any{"item_id": "p-1", "name": "Widget"})
		ans := tdstest.Send(t, p1.tr.Handler(h), "products",
			tds.Event{EventType: tds.EventUpdate, EntityType: "product", EntityID: "p-1", Data: data},
			tdstest.Header("Traceparent", incoming))
		require.Equal(t, 200, ans.Status, string(ans.Body))
		require.NoError(t, h.Close())
		spans1 := p1.end(t)

		servers := byName(spans1, "tds.webhook")
		if len(servers) == 0 { // named for the route once the mux has routed
			for _, s := range spans1 {
				if s.SpanKind == trace.SpanKindServer {
					servers = append(servers, s)
				}
			}
		}
		require.Len(t, servers, 1, "one server span: %v", spans1)
		server := servers[0]
		require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", server.SpanContext.TraceID().String(), "a child of the sender's trace")
		require.Equal(t, "POST", attr(server, "http.request.method"))
		require.Equal(t, "200", attr(server, "http.response.status_code"))

		batches := byName(spans1, tdsotel.SpanIngestBatch)
		require.Len(t, batches, 1)
		require.Equal(t, server.SpanContext.SpanID(), batches[0].Parent.SpanID(), "the batch is the leading request's child")
		require.Equal(t, "1", attr(batches[0], string(tdsotel.AttrBatchEvents)))

		// What the database holds: the server span's context.
		var stored string
		require.NoError(t, tdb.DB.NewRaw("SELECT trace_context FROM tds_inbox_events").Scan(t.Context(), &stored))
		require.Equal(t, server.SpanContext, tdsotel.SpanContextOf(stored).WithRemote(false))

		// Process 2, started after process 1 is gone: the worker.
		p2 := newProcess(t, tdb.URL)
		s := &flaky{seen: map[string]int{}}
		w, err := tds.NewWorker(p2.db, s, append(p2.tr.WorkerOptions(), tds.WithLogger(testdb.QuietLogger),
			tds.WithPollInterval(10*time.Millisecond))...)
		require.NoError(t, err)
		rep := tdstest.Drain(t, p2.db, w, tdstest.WaitForRetries())
		require.Len(t, rep.Synced, 1, rep.String())
		spans2 := p2.end(t)

		attempts := byName(spans2, tdsotel.SpanSync)
		require.Len(t, attempts, 2)
		require.Len(t, s.spans, 2)
		for i, a := range attempts {
			require.Equal(t, s.spans[i], a.SpanContext, "the Syncer's ctx carries attempt %d's span", i+1)
			require.False(t, a.Parent.IsValid(), "an attempt's span is a root")
			require.Len(t, a.Links, 1)
			require.Equal(t, server.SpanContext.TraceID(), a.Links[0].SpanContext.TraceID())
			require.Equal(t, server.SpanContext.SpanID(), a.Links[0].SpanContext.SpanID(), "attempt %d links to the ingest span", i+1)
			require.Equal(t, "product", attr(a, string(tdsotel.AttrEntityType)))
			require.Equal(t, "p-1", attr(a, string(tdsotel.AttrEntityID)))
			require.Equal(t, []string{"1", "2"}[i], attr(a, string(tdsotel.AttrAttempt)))
		}
		require.Equal(t, "retry", attr(attempts[0], string(tdsotel.AttrJobStatus)))
		require.Equal(t, codes.Error, attempts[0].Status.Code)
		require.Contains(t, attempts[0].Status.Description, "the source is busy")
		require.Equal(t, "completed", attr(attempts[1], string(tdsotel.AttrJobStatus)))
		require.Equal(t, "synced", attr(attempts[1], string(tdsotel.AttrOutcome)))
		require.Equal(t, codes.Unset, attempts[1].Status.Code)
	})
}

// batchSyncer applies every batch at once.
type batchSyncer struct {
	mu    sync.Mutex
	spans []trace.SpanContext
}

func (b *batchSyncer) Sync(context.Context, bun.Tx, *tds.SyncJob) error { return nil }

func (b *batchSyncer) SyncBatch(ctx context.Context, _ bun.Tx, jobs []*tds.SyncJob) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.spans = append(b.spans, trace.SpanFromContext(ctx).SpanContext())
	return nil
}

// A SyncBatch gets one span, linked to the stored context of each of its
// jobs, with an event per job.
func TestSyncBatchSpanLinksEachJob(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		p := newProcess(t, tdb.URL)
		proc := testdb.Processor(t, p.db, time.Now, p.tr.HandlerOptions()...)
		tracer := p.tp.Tracer("test")
		var want []trace.SpanContext
		for _, id := range []string{"p-1", "p-2", "p-3"} {
			ctx, span := tracer.Start(context.Background(), "ingest "+id)
			data, _ := json.Marshal(map[string]any{"item_id": id, "name": "Widget"})
			_, err := proc.Process(ctx, &tds.Event{EventType: tds.EventUpdate, EntityType: "product", EntityID: id, Data: data})
			require.NoError(t, err)
			span.End()
			want = append(want, span.SpanContext())
		}
		bs := &batchSyncer{}
		w, err := tds.NewWorker(p.db, bs, append(p.tr.WorkerOptions(), tds.WithLogger(testdb.QuietLogger),
			tds.WithConcurrency(1), tds.WithBatchSize(10))...)
		require.NoError(t, err)
		tdstest.Drain(t, p.db, w)
		spans := p.end(t)
		batch := byName(spans, tdsotel.SpanSyncBatch)
		require.Len(t, batch, 1, "%v", spans)
		require.Equal(t, bs.spans, []trace.SpanContext{batch[0].SpanContext})
		var linked []trace.SpanContext
		for _, l := range batch[0].Links {
			linked = append(linked, l.SpanContext.WithRemote(false))
		}
		require.ElementsMatch(t, want, linked)
		require.Len(t, batch[0].Events, 3)
		require.Equal(t, "3", attr(batch[0], string(tdsotel.AttrBatchJobs)))
	})
}

// Concurrent webhooks share an ingest batch: its span links to each
// request's span, and each request's span links back to it.
func TestIngestBatchLinksItsRequests(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) { ingestBatchLinks(t, tdb) })
}

func ingestBatchLinks(t *testing.T, tdb *testdb.DB) {
	p := newProcess(t, tdb.URL)
	proc := testdb.Processor(t, p.db, time.Now, append(p.tr.HandlerOptions(), tds.WithIngestBatch(64))...)
	tracer := p.tp.Tracer("test")
	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, span := tracer.Start(context.Background(), "request")
			defer span.End()
			id := "p-" + string(rune('a'+i))
			data, _ := json.Marshal(map[string]any{"item_id": id, "name": "Widget"})
			_, err := proc.Process(ctx, &tds.Event{EventType: tds.EventUpdate, EntityType: "product", EntityID: id, Data: data})
			require.NoError(t, err)
		})
	}
	wg.Wait()
	spans := p.end(t)
	batches := byName(spans, tdsotel.SpanIngestBatch)
	requests := byName(spans, "request")
	require.Len(t, requests, n)
	events := 0
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, b := range batches {
		byID[b.SpanContext.SpanID()] = b
		events += len(b.Links)
	}
	require.Equal(t, n, events, "every request is linked from its batch")
	for _, r := range requests {
		var batch tracetest.SpanStub
		for _, b := range batches {
			if b.Parent.SpanID() == r.SpanContext.SpanID() {
				batch = b // it led the batch
			}
		}
		if batch.Name == "" {
			require.Len(t, r.Links, 1, "a request that joined a batch links to it")
			batch = byID[r.Links[0].SpanContext.SpanID()]
		}
		require.Equal(t, tdsotel.SpanIngestBatch, batch.Name)
	}
}

// Log lines written inside a span carry its trace_id and span_id: the
// Worker's line about a failed attempt names the attempt's span.
func TestLogLinesCarryTheSpan(t *testing.T) {
	tdb := testdb.Open(t, "sqlite")
	p := newProcess(t, tdb.URL)
	var buf testkit.LogBuffer
	log := slog.New(tdsotel.LogHandler(slog.NewJSONHandler(&buf, nil)))
	proc := testdb.Processor(t, p.db, time.Now, p.tr.HandlerOptions()...)
	testdb.Ingest(t, proc, "p-1", "Widget")
	s := &flaky{seen: map[string]int{}}
	w, err := tds.NewWorker(p.db, s, append(p.tr.WorkerOptions(), tds.WithLogger(log))...)
	require.NoError(t, err)
	tdstest.Drain(t, p.db, w, tdstest.WaitForRetries())
	spans := p.end(t)
	attempts := byName(spans, tdsotel.SpanSync)
	require.Len(t, attempts, 2)

	var line map[string]any
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "will retry") {
			require.NoError(t, json.Unmarshal([]byte(l), &line))
		}
	}
	require.NotNil(t, line, buf.String())
	require.Equal(t, attempts[0].SpanContext.TraceID().String(), line[tdsotel.LogTraceID])
	require.Equal(t, attempts[0].SpanContext.SpanID().String(), line[tdsotel.LogSpanID])

	// Without a span, no ids.
	buf.Reset()
	log.Info("outside")
	require.NotContains(t, buf.String(), tdsotel.LogTraceID)
}

func TestNewRefusesNil(t *testing.T) {
	_, err := tdsotel.New(tdsotel.WithTracerProvider(nil), tdsotel.WithPropagator(nil))
	require.ErrorContains(t, err, "tdsotel: WithTracerProvider: provider is nil")
	require.ErrorContains(t, err, "tdsotel: WithPropagator: propagator is nil")
}
