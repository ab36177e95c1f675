package tdsotel_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/tdsreconcile"
)

// A reconciliation run gets a span; its Zoho API calls (client spans from
// Transport) and the repairs it ingests nest under it: the repaired
// event's stored trace context is the run's trace.
func TestReconcileRunAndZohoCallsAreTraced(t *testing.T) {
	tdb := testdb.Open(t, "sqlite")
	p := newProcess(t, tdb.URL)
	fake := testdb.Zoho(t, p.db)
	testdb.PutProducts(fake, 2, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Hour)
	proc := testdb.Processor(t, p.db, time.Now, p.tr.HandlerOptions()...)
	api := tdsreconcile.ZohoAPI(testdb.ZohoAPI(fake.URL()))
	api.HTTPClient = &http.Client{Transport: p.tr.Transport(nil)}
	rc, err := tdsreconcile.New(p.db, proc, api, tdsreconcile.WithLogger(testdb.QuietLogger),
		tdsreconcile.WithHooks(p.tr.ReconcileHooks()))
	require.NoError(t, err)
	run, err := rc.Run(t.Context(), tdsreconcile.Request{Mode: tdsreconcile.Full, EntityTypes: []string{"product"}})
	require.NoError(t, err)
	require.Equal(t, int64(2), run.Repaired)
	require.NoError(t, rc.Close())

	var stored []string
	require.NoError(t, p.db.NewRaw("SELECT trace_context FROM tds_inbox_events").Scan(t.Context(), &stored))
	spans := p.end(t)
	runs := byName(spans, "tds.reconcile")
	require.Len(t, runs, 1)
	require.Equal(t, "full", attr(runs[0], "tds.reconcile.mode"))
	traceID := runs[0].SpanContext.TraceID()
	clients := 0
	for _, s := range spans {
		if s.SpanKind == trace.SpanKindClient {
			clients++
			require.Equal(t, traceID, s.SpanContext.TraceID(), "a Zoho call in the run's trace: %s", s.Name)
		}
	}
	require.GreaterOrEqual(t, clients, 3, "the token, the listing and the details")
	require.Len(t, stored, 2)
	for _, s := range stored {
		require.Contains(t, s, traceID.String(), "a repair's event carries the run's trace")
	}
}
