package tdsui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdsui"
)

// Mount the console beside the webhook Handler, under a prefix of your own
// router: the webhooks go to tds, the admin API and the dashboard (/ui/)
// to tdsui, both on one database.
func ExampleNew() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tdsui-example")
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

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	webhooks, err := tds.NewHandler(db, tds.WithWebhookKeys("example-webhook-key"), tds.WithLogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	defer webhooks.Close()
	console, err := tdsui.New(db, tdsui.WithAdminToken("example-admin-token"), tdsui.WithLogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/zoho/webhooks/", http.StripPrefix("/zoho", webhooks))
	mux.Handle("/zoho/", http.StripPrefix("/zoho", console))
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
	fmt.Println("webhook:", resp.StatusCode)

	for _, token := range []string{"", "example-admin-token"} {
		req, err := http.NewRequest("GET", srv.URL+"/zoho/queue/stats", nil)
		if err != nil {
			log.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		var stats struct {
			TotalEvents int64            `json:"total_events"`
			ByStatus    map[string]int64 `json:"by_status"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Printf("queue stats: %d, %d jobs, %d pending\n", resp.StatusCode, stats.TotalEvents, stats.ByStatus["pending"])
	}
	// Output:
	// webhook: 200
	// queue stats: 401, 0 jobs, 0 pending
	// queue stats: 200, 1 jobs, 1 pending
}
