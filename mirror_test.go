package tds

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
)

// versioned is a product event whose version is base+minutes.
func versioned(id string, minutes int, eventType string) *Event {
	v := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(minutes) * time.Minute)
	data, _ := json.Marshal(map[string]any{"item_id": id, "name": "v" + v.Format("1504"),
		"last_modified_time": v.Format(ZohoTimeLayout)})
	return &Event{EventType: eventType, EntityType: "product", EntityID: id, Data: data}
}

func TestMirrorSyncer(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		ctx := context.Background()
		e := newWorkerEnv(t, tdb)
		require.NoError(t, MigrateMirror(ctx, e.db, ZohoRegistry()))
		require.NoError(t, MigrateMirror(ctx, e.db, ZohoRegistry()), "idempotent")
		m, err := NewMirrorSyncer(WithClock(e.clock.Now))
		require.NoError(t, err)

		ingest := func(ev *Event) int64 {
			res, err := e.p.Process(ctx, ev)
			require.NoError(t, err)
			return res.JobID
		}
		newer := ingest(versioned("1", 10, EventUpdate))
		stale := ingest(versioned("1", 5, EventUpdate))
		del := ingest(versioned("1", 20, EventDelete))
		e.start(t, m)
		j := e.waitStatus(t, newer, StatusCompleted)
		require.Equal(t, OutcomeSynced, *j.Outcome)
		j = e.waitStatus(t, stale, StatusCompleted)
		require.Equal(t, OutcomeSuperseded, *j.Outcome)
		require.Contains(t, *j.OutcomeDetail, "older than the mirrored version")
		e.waitStatus(t, del, StatusCompleted)

		var row struct {
			Data         string     `bun:"data"`
			DeletedAt    *time.Time `bun:"deleted_at"`
			InboxEventID int64      `bun:"inbox_event_id"`
			SyncedAt     time.Time  `bun:"synced_at"`
		}
		require.NoError(t, e.db.NewSelect().Table("products").Column("data", "deleted_at", "inbox_event_id", "synced_at").
			Where("entity_id = ?", "1").Scan(ctx, &row))
		require.NotNil(t, row.DeletedAt)
		require.Contains(t, row.Data, "v0010", "a delete keeps the last data")
		require.Equal(t, e.job(t, del).InboxEventID, row.InboxEventID)
		require.True(t, e.clock.Now().Equal(row.SyncedAt))

		// An update newer than the delete brings the entity back.
		back := ingest(versioned("1", 30, EventUpdate))
		e.waitStatus(t, back, StatusCompleted)
		require.Equal(t, 0, count(t, e.db, "SELECT COUNT(*) FROM products WHERE deleted_at IS NOT NULL"))
	})
}

func TestMirrorSyncerUnknownTypeIsPermanent(t *testing.T) {
	m, err := NewMirrorSyncer()
	require.NoError(t, err)
	err = m.Sync(context.Background(), bun.Tx{}, &SyncJob{EntityType: "nope"})
	var perm *PermanentError
	require.ErrorAs(t, err, &perm)
	require.ErrorIs(t, err, ErrUnknownEntityType)
}

func TestMigrateMirrorUsesRegistryNames(t *testing.T) {
	eachDB(t, func(t *testing.T, tdb *testDB) {
		reg, err := NewRegistry(EntityType{Name: "widget", IDField: "id", MirrorTable: "erp_widgets"})
		require.NoError(t, err)
		require.NoError(t, MigrateMirror(context.Background(), tdb.db, reg))
		require.Equal(t, 0, count(t, tdb.db, "SELECT COUNT(*) FROM erp_widgets"))
	})
}
