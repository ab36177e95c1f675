package tds

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
)

func newTestProcessor(t *testing.T, db *bun.DB, opts ...Option) *Processor {
	t.Helper()
	p, err := NewProcessor(db, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

// The Validator and the Prioritizer run as their docs say: once per call,
// for redeliveries too, outside any transaction (on SQLite, whose pool has
// one connection, a query from inside one would wait forever), and the
// Prioritizer only for valid events. A duplicate keeps the first outcome.
func TestValidatorAndPrioritizerContract(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		var validated, prioritized int
		var mu sync.Mutex
		v := ValidatorFunc(func(ctx context.Context, ev *Event) error {
			mu.Lock()
			validated++
			mu.Unlock()
			// Outside any transaction: the pool has a free connection.
			var n int
			if err := tdb.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM tds_inbox_events").Scan(&n); err != nil {
				return err
			}
			if ev.EntityID == "bad" {
				return errors.New("rejected")
			}
			return nil
		})
		pr := PrioritizerFunc(func(_ context.Context, ev *Event) int {
			mu.Lock()
			defer mu.Unlock()
			prioritized++
			return 3 + prioritized // a redelivery would get another priority
		})
		p := newTestProcessor(t, tdb.db, WithValidator(v), WithPrioritizer(pr))
		first, err := p.Process(ctx, productEvent("1", "a"))
		require.NoError(t, err)
		again, err := p.Process(ctx, productEvent("1", "a"))
		require.NoError(t, err)
		require.True(t, again.Duplicate)
		require.Equal(t, first.Priority, again.Priority, "the job keeps its first priority")
		bad, err := p.Process(ctx, productEvent("bad", "x"))
		require.NoError(t, err)
		require.False(t, bad.Queued)
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, 3, validated, "once per call, duplicates included")
		require.Equal(t, 2, prioritized, "valid events only, duplicates included")
	})
}

func TestProcessRedeliveryIsDuplicate(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		p := newTestProcessor(t, tdb.db)

		first, err := p.Process(ctx, fixture(t, "product.json"))
		require.NoError(t, err)
		require.False(t, first.Duplicate)
		require.True(t, first.Queued)
		require.Equal(t, 5, first.Priority)
		require.Contains(t, first.IdempotencyKey, "zoho:product:460000000038080:update:")

		// The same content with other key order and white space is the same delivery.
		again := fixture(t, "product.json")
		again.Data = json.RawMessage(`{ "last_modified_time": "2026-11-20T10:15:30+0530",
			"stock_on_hand": 42, "purchase_rate": 910.0, "rate": 1249.5, "status": "active",
			"unit": "pcs", "sku": "HP-3KW-001", "name": "Hydraulic Pump 3kW", "item_id": "460000000038080" }`)
		second, err := p.Process(ctx, again)
		require.NoError(t, err)
		require.True(t, second.Duplicate)
		require.True(t, second.Queued)
		require.Equal(t, first.EventID, second.EventID)
		require.Equal(t, first.JobID, second.JobID)
		require.Equal(t, first.IdempotencyKey, second.IdempotencyKey)

		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))
	})
}

func TestProcessChangedPayloadIsNewEvent(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		p := newTestProcessor(t, tdb.db)
		a, err := p.Process(ctx, productEvent("1", "Pump"))
		require.NoError(t, err)
		b, err := p.Process(ctx, productEvent("1", "Pump v2"))
		require.NoError(t, err)
		require.False(t, b.Duplicate)
		require.NotEqual(t, a.EventID, b.EventID)
		require.NotEqual(t, a.IdempotencyKey, b.IdempotencyKey)
		require.Equal(t, 2, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue WHERE source_entity_id = '1'"))

		// A sender's delivery id decides instead of the content.
		withID := productEvent("2", "Valve")
		withID.DeliveryID = "msg_1"
		c, err := p.Process(ctx, withID)
		require.NoError(t, err)
		require.Equal(t, "zoho:product:2:update:d:msg_1", c.IdempotencyKey)
		redelivered := productEvent("2", "Valve")
		redelivered.DeliveryID = "msg_1"
		d, err := p.Process(ctx, redelivered)
		require.NoError(t, err)
		require.True(t, d.Duplicate)
		other := productEvent("2", "Valve")
		other.DeliveryID = "msg_2"
		e, err := p.Process(ctx, other)
		require.NoError(t, err)
		require.False(t, e.Duplicate)
	})
}

func TestProcessConcurrentIdenticalDeliveries(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		p := newTestProcessor(t, tdb.db)
		const n = 50
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			results = make([]*Result, n)
			errs    = make([]error, n)
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				results[i], errs[i] = p.Process(ctx, fixture(t, "invoice.json"))
			}()
		}
		close(start)
		wg.Wait()
		dups := 0
		for i := range n {
			require.NoError(t, errs[i])
			require.Equal(t, results[0].EventID, results[i].EventID)
			if results[i].Duplicate {
				dups++
			}
		}
		require.Equal(t, n-1, dups)
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))
	})
}

func TestProcessInvalidEventKeptNotQueued(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		p := newTestProcessor(t, tdb.db)
		ev := &Event{EventType: "upsert", EntityType: "invoice", EntityID: "9",
			Data: json.RawMessage(`{"invoice_id":"9"}`)}
		res, err := p.Process(ctx, ev)
		require.NoError(t, err)
		require.False(t, res.Queued)
		require.Zero(t, res.JobID)
		require.Len(t, res.ValidationErrors, 3)

		in, err := NewInbox(tdb.db)
		require.NoError(t, err)
		stored, err := in.Get(ctx, res.EventID)
		require.NoError(t, err)
		require.False(t, stored.IsValid)
		require.False(t, stored.MovedToQueue)
		require.Equal(t, res.ValidationErrors, stored.ValidationErrors)
		require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))

		// The redelivery of an invalid event reports the same errors.
		again, err := p.Process(ctx, ev)
		require.NoError(t, err)
		require.True(t, again.Duplicate)
		require.Equal(t, res.ValidationErrors, again.ValidationErrors)

		// A Validator's plain error is kept as one problem.
		p2 := newTestProcessor(t, tdb.db, WithValidator(ValidatorFunc(func(context.Context, *Event) error {
			return errors.New("blocked by policy")
		})))
		res, err = p2.Process(ctx, productEvent("5", "x"))
		require.NoError(t, err)
		require.Equal(t, ValidationErrors{{Message: "blocked by policy"}}, res.ValidationErrors)
	})
}

func TestProcessRejectsEventWithoutIdentity(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		p := newTestProcessor(t, tdb.db)
		for _, ev := range []*Event{
			nil,
			{EntityType: "product", EntityID: "1"},
			{EventType: "update", EntityID: "1"},
			{EventType: "update", EntityType: "product"},
			{EventType: "update", EntityType: "product", EntityID: "1", Data: json.RawMessage(`{bad`)},
			// PostgreSQL stores no NUL; refused on both stores alike.
			{EventType: "update", EntityType: "product", EntityID: "1", Data: json.RawMessage(`{"item_id":"1","name":"a\u0000b"}`)},
			{EventType: "update", EntityType: "product", EntityID: "1\x002", Data: json.RawMessage(`{}`)},
		} {
			_, err := p.Process(context.Background(), ev)
			require.ErrorIs(t, err, ErrInvalidEvent)
		}
		require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
	})
}

func TestProcessTxRollbackLeavesNothing(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		p := newTestProcessor(t, tdb.db)
		errHost := errors.New("host write failed")
		err := tdb.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			res, err := p.ProcessTx(ctx, tx, fixture(t, "customer.json"))
			require.NoError(t, err)
			require.True(t, res.Queued)
			return errHost
		})
		require.ErrorIs(t, err, errHost)
		require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_inbox_events"))
		require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))

		// Committed, it is there.
		err = tdb.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			_, err := p.ProcessTx(ctx, tx, fixture(t, "customer.json"))
			return err
		})
		require.NoError(t, err)
		require.Equal(t, 1, count(t, tdb.db, "SELECT COUNT(*) FROM tds_sync_queue"))
	})
}

func TestProcessDatabaseUnavailable(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		p := newTestProcessor(t, tdb.db)
		require.NoError(t, tdb.db.Close())
		_, err := p.Process(context.Background(), productEvent("1", "x"))
		require.ErrorIs(t, err, ErrDatabaseUnavailable)
	})
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		// Nothing listens on port 1.
		_, err := Open(context.Background(), "postgres://postgres@127.0.0.1:1/none?sslmode=disable&dial_timeout=1s")
		require.ErrorIs(t, err, ErrDatabaseUnavailable)
	})
}

func TestProcessOptionsErrors(t *testing.T) {
	t.Parallel()
	tdb := openTestDB(t, "sqlite")
	_, err := NewProcessor(tdb.db, WithMaxAttempts(0), WithSource(""), WithValidator(nil))
	require.Error(t, err)
	for _, name := range []string{"WithMaxAttempts", "WithSource", "WithValidator"} {
		require.Contains(t, err.Error(), name)
	}
}

// A type's VersionField is where ingest reads the version (and the
// validator checks its layout); a type without one keeps Zoho's
// last_modified_time. One Event value reused for another type is typed
// afresh: the type is looked up once per Process call, not once per value.
func TestProcessReadsTheTypesVersionField(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		reg, err := NewRegistry(
			EntityType{Name: "order", IDField: "id", VersionField: "updated_at", MaxAttempts: 7},
			EntityType{Name: "note", IDField: "id"},
		)
		require.NoError(t, err)
		p, err := NewProcessor(tdb.db, WithRegistry(reg))
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		in, err := NewInbox(tdb.db)
		require.NoError(t, err)
		q, err := NewQueue(tdb.db, WithRegistry(reg))
		require.NoError(t, err)

		ev := &Event{EventType: EventUpdate, EntityType: "order", EntityID: "1",
			Data: json.RawMessage(`{"id":"1","updated_at":"2026-11-01T08:00:00Z","last_modified_time":"2026-01-01T00:00:00+0000"}`)}
		res, err := p.Process(ctx, ev)
		require.NoError(t, err)
		require.True(t, res.Queued, res.ValidationErrors)
		stored, err := in.Get(ctx, res.EventID)
		require.NoError(t, err)
		requireSameTime(t, time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC), stored.Version, "updated_at, not last_modified_time")
		job, err := q.Get(ctx, res.JobID)
		require.NoError(t, err)
		require.Equal(t, 7, job.MaxAttempts)

		ev.EntityType, ev.EntityID = "note", "2"
		ev.Data = json.RawMessage(`{"id":"2","updated_at":"2026-11-01T08:00:00Z","last_modified_time":"2026-01-01T05:30:00+0530"}`)
		res, err = p.Process(ctx, ev)
		require.NoError(t, err)
		require.True(t, res.Queued, res.ValidationErrors)
		stored, err = in.Get(ctx, res.EventID)
		require.NoError(t, err)
		requireSameTime(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), stored.Version, "no VersionField: last_modified_time")
		job, err = q.Get(ctx, res.JobID)
		require.NoError(t, err)
		require.Equal(t, DefaultMaxAttempts, job.MaxAttempts)

		res, err = p.Process(ctx, &Event{EventType: EventUpdate, EntityType: "order", EntityID: "3",
			Data: json.RawMessage(`{"id":"3","updated_at":"yesterday"}`)})
		require.NoError(t, err)
		require.False(t, res.Queued)
		require.Equal(t, "data.updated_at", res.ValidationErrors[0].Field)
	})
}
