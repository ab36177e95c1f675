package tds_test

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
)

// Mount the Handler under a prefix of your own router and receive a
// webhook. The sender gets its 200 once the event is stored and queued; a
// redelivery is answered as a duplicate, which the sender must not retry.
func ExampleHandler() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tds-example")
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

	h, err := tds.NewHandler(db,
		tds.WithWebhookKeys("example-webhook-key"),
		tds.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	mux := http.NewServeMux()
	mux.Handle("/zoho/", http.StripPrefix("/zoho", h))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	body := `{"event_type":"update","entity_type":"product","entity_id":"123456",
		"data":{"item_id":"123456","name":"Hydraulic Pump 3kW","rate":1249.5}}`
	for range 2 {
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
		var answer struct {
			Queued    bool   `json:"queued"`
			Duplicate bool   `json:"duplicate"`
			Message   string `json:"message"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Printf("%d queued=%v duplicate=%v: %s\n", resp.StatusCode, answer.Queued, answer.Duplicate, answer.Message)
	}

	resp, err := http.Post(srv.URL+"/zoho/webhooks/products", "application/json", strings.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "without the key")
	// Output:
	// 200 queued=true duplicate=false: event stored and queued
	// 200 queued=true duplicate=true: duplicate delivery: the event was received before
	// 401 without the key
}
