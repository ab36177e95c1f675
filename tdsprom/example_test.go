package tdsprom_test

import (
	"bufio"
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdsprom"
)

// Record a Handler's webhooks on a registry of your own, serve it on
// /metrics, and scrape it after one webhook.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tdsprom-example")
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

	reg := prometheus.NewRegistry()
	m, err := tdsprom.New(reg)
	if err != nil {
		log.Fatal(err)
	}
	if err := m.WatchDatabase(db); err != nil { // tds_queue_jobs and the other gauges
		log.Fatal(err)
	}
	h, err := tds.NewHandler(db, tds.WithWebhookKeys("example-webhook-key"),
		tds.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		tds.WithWebhookObserver(m.ObserveWebhook), tds.WithBatchObserver(m.ObserveBatch))
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	mux := http.NewServeMux()
	mux.Handle("/zoho/", http.StripPrefix("/zoho", h))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	body := `{"event_type":"update","entity_type":"product","entity_id":"123456",
		"data":{"item_id":"123456","name":"Hydraulic Pump 3kW","rate":1249.5}}`
	req, err := http.NewRequest("POST", srv.URL+"/zoho/webhooks/products", strings.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Webhook-Key", "example-webhook-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()

	resp, err = http.Get(srv.URL + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		// tds_queue_jobs has a series, 0 included, for every status and
		// registered priority; the non-zero ones are printed.
		l := lines.Text()
		if strings.HasPrefix(l, "tds_ingest_requests_total") || strings.HasPrefix(l, `tds_queue_jobs{`) && !strings.HasSuffix(l, " 0") {
			fmt.Println(l)
		}
	}
	// Output:
	// tds_ingest_requests_total{outcome="accepted",route="products"} 1
	// tds_queue_jobs{priority="5",status="pending"} 1
}
