package tdsalert_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdsalert"
)

// The built-in rules, with zoho_daily_webhooks' threshold lowered to 0: the
// first webhook of the day fires it.
func ExampleAlerter_Evaluate() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tdsalert-example")
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

	rules := strings.NewReader(`rules: [{name: zoho_daily_webhooks, threshold: 0}]`)
	a, err := tdsalert.New(db, tdsalert.WithRules(rules))
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close(ctx)

	p, err := tds.NewProcessor(db)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Process(ctx, &tds.Event{EventType: tds.EventUpdate, EntityType: "product", EntityID: "1",
		Data: []byte(`{"item_id": "1", "name": "Widget"}`)}); err != nil {
		log.Fatal(err)
	}

	// The Worker leading housekeeping does this every interval when given
	// tds.WithLeaderTask(a.Task()).
	if err := a.Evaluate(ctx); err != nil {
		log.Fatal(err)
	}
	alerts, err := a.Alerts(ctx, tdsalert.StateFiring)
	if err != nil {
		log.Fatal(err)
	}
	for _, al := range alerts {
		fmt.Println(al.Rule, al.State, al.Value)
	}
	// Output: zoho_daily_webhooks firing 1
}
