package tdstest_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdstest"
)

// priceSyncer is an ERP backend's Syncer: it keeps each item's selling
// price in the ERP's own table, ignoring stale versions.
type priceSyncer struct{}

const pricesTable = `CREATE TABLE erp_prices (
    item_id    TEXT PRIMARY KEY,
    rate       NUMERIC NOT NULL,
    version    TIMESTAMPTZ NOT NULL,
    deleted    BOOLEAN NOT NULL DEFAULT false
)`

func (priceSyncer) Sync(ctx context.Context, tx bun.Tx, job *tds.SyncJob) error {
	var item struct {
		Rate float64 `json:"rate"`
	}
	if err := json.Unmarshal(job.Data, &item); err != nil {
		return tds.Permanent(err)
	}
	// Through tx, so that the price and the job's completion commit
	// together; the WHERE keeps a newer version.
	_, err := tx.NewRaw(`INSERT INTO erp_prices (item_id, rate, version, deleted) VALUES (?, ?, ?, ?)
ON CONFLICT (item_id) DO UPDATE SET rate = excluded.rate, version = excluded.version, deleted = excluded.deleted
WHERE erp_prices.version <= excluded.version`,
		job.EntityID, item.Rate, job.Version, job.EventType == tds.EventDelete).Exec(ctx)
	return err
}

// priceSubject tells SyncerConformance how to build an item and read its
// price back.
var priceSubject = tdstest.Subject{
	EntityType: "product",
	Data: func(id string, v time.Time) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"item_id":%q,"rate":%d}`, id, v.Unix()%1000))
	},
	Read: func(ctx context.Context, db bun.IDB, id string) (tdstest.State, error) {
		var row struct {
			Rate    float64   `bun:"rate"`
			Version time.Time `bun:"version"`
			Deleted bool      `bun:"deleted"`
		}
		err := db.NewRaw(`SELECT rate, version, deleted FROM erp_prices WHERE item_id = ?`, id).Scan(ctx, &row)
		if errors.Is(err, sql.ErrNoRows) {
			return tdstest.State{}, nil
		}
		return tdstest.State{Found: true, Version: row.Version, Deleted: row.Deleted, Value: row.Rate}, err
	},
}

// testPriceSync is the ERP's integration test (in its own package it is
// func TestPriceSync(t *testing.T)): its Syncer against the contract, then
// one webhook from Zoho through to the price table.
func testPriceSync(t *testing.T) {
	db := tdstest.Postgres(t) // a fresh database with the tds schema
	if _, err := db.ExecContext(t.Context(), pricesTable); err != nil {
		t.Fatal(err)
	}
	tdstest.SyncerConformance(t, db, priceSyncer{}, priceSubject)

	const key = "erp-test-webhook-key-0001"
	h, err := tds.NewHandler(db, tds.WithWebhookKeys(key))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	a := tdstest.Send(t, h, "products", tds.Event{
		EventType: tds.EventUpdate, EntityType: "product", EntityID: "4600",
		Data: json.RawMessage(`{"item_id":"4600","name":"Pump","rate":1249.5,"last_modified_time":"2026-11-20T10:00:00+0000"}`),
	}, tdstest.WebhookKey(key))
	if a.Status != http.StatusOK {
		t.Fatalf("webhook: %d %s", a.Status, a.Body)
	}

	w, err := tds.NewWorker(db, priceSyncer{})
	if err != nil {
		t.Fatal(err)
	}
	if r := tdstest.Drain(t, db, w); len(r.Synced) != 1 {
		t.Fatalf("drain: %v", r)
	}
	var rate float64
	if err := db.QueryRowContext(t.Context(), `SELECT rate FROM erp_prices WHERE item_id = '4600'`).Scan(&rate); err != nil || rate != 1249.5 {
		t.Fatalf("price: %v, %v", rate, err)
	}
}

// startPostgres starts PostgreSQL in a container, as the ERP's integration
// tests do for their own tables, and points tdstest at it: each test then
// gets a database cloned on that server. The ERP's TestMain calls it
// before tdstest.Main(m); testcontainers' reaper removes the container
// when the test process ends.
func startPostgres(ctx context.Context) (stop func() error, err error) {
	ctr, err := tcpostgres.Run(ctx, "postgres:15-alpine", tcpostgres.BasicWaitStrategies())
	if err != nil {
		return nil, errors.Join(err, testcontainers.TerminateContainer(ctr))
	}
	stop = func() error { return testcontainers.TerminateContainer(ctr) }
	url, err := ctr.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		return nil, errors.Join(err, stop())
	}
	return stop, os.Setenv("TDS_TEST_DATABASE_URL", url)
}

// An ERP backend tests its own Syncer against the PostgreSQL its
// integration tests start with testcontainers. Its main_test.go:
//
//	func TestMain(m *testing.M) {
//		if _, err := startPostgres(context.Background()); err != nil {
//			log.Fatal(err)
//		}
//		tdstest.Main(m)
//	}
//
//	func TestPriceSync(t *testing.T) { testPriceSync(t) }
//
// Without a container of its own, tdstest starts one (or local binaries)
// by itself: then TestMain is just tdstest.Main(m).
func Example() {
	stop, err := startPostgres(context.Background())
	if err != nil {
		fmt.Println("no Docker engine:", err)
		return
	}
	defer stop()
	fmt.Println("TDS_TEST_DATABASE_URL is set; tdstest.Main(m) would now run TestPriceSync")
}
