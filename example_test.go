package tds_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tdscore/tds"
)

// Ingest webhook events: store, validate and queue each in one transaction.
// A redelivery is recognised as a duplicate; an invalid event is kept with
// its errors but not queued.
func ExampleProcessor_Process() {
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
	p, err := tds.NewProcessor(db)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	body := []byte(`{"event_type":"update","entity_type":"product","entity_id":"123456",
		"data":{"item_id":"123456","name":"Hydraulic Pump 3kW","rate":1249.5}}`)
	var first int64
	for range 2 {
		ev, err := tds.ParseEnvelope(body)
		if err != nil {
			log.Fatal(err)
		}
		res, err := p.Process(ctx, ev)
		if err != nil {
			log.Fatal(err)
		}
		if first == 0 {
			first = res.EventID
		}
		fmt.Printf("same event=%v queued=%v duplicate=%v priority=%d\n", res.EventID == first, res.Queued, res.Duplicate, res.Priority)
	}

	res, err := p.Process(ctx, &tds.Event{
		EventType:  "update",
		EntityType: "invoice",
		EntityID:   "7",
		Data:       json.RawMessage(`{"invoice_id":"7"}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("invalid event stored=%v queued=%v\n", res.EventID > first, res.Queued)
	for _, e := range res.ValidationErrors {
		fmt.Println(" ", e)
	}
	// Output:
	// same event=true queued=true duplicate=false priority=5
	// same event=true queued=true duplicate=true priority=5
	// invalid event stored=true queued=false
	//   data.customer_id: is required
	//   data.invoice_number: is required
}
