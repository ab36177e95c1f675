package store

import (
	"context"
	"time"

	"github.com/uptrace/bun"
)

// MirrorKept is a row a batched mirror write left alone: the table holds
// a newer version of the entity.
type MirrorKept struct {
	EntityID     string    `bun:"entity_id"`
	Version      time.Time `bun:"source_modified_at"`
	InboxEventID int64     `bun:"inbox_event_id"`
}

// mirrorSQL are the batched mirror statements, which differ by dialect.
type mirrorSQL struct {
	// upsert takes the table and the rows, and returns the entity ids it
	// wrote.
	upsert string
	// current takes the table and a list of entity ids.
	current string
	// rows renders the rows as the upsert's parameters.
	rows func(rows []Mirror) []any
}

// mirrorSet is what a mirror upsert sets; the WHERE clause that follows it
// in each statement is the stale guard.
const mirrorSet = `ON CONFLICT (entity_id) DO UPDATE SET
	source = excluded.source,
	data = CASE WHEN excluded.deleted_at IS NULL THEN excluded.data ELSE m.data END,
	source_modified_at = excluded.source_modified_at,
	synced_at = excluded.synced_at,
	deleted_at = excluded.deleted_at,
	inbox_event_id = excluded.inbox_event_id
WHERE m.source_modified_at <= excluded.source_modified_at
RETURNING entity_id`

var pgMirror = mirrorSQL{
	upsert: `INSERT INTO ? AS m (entity_id, source, data, source_modified_at, synced_at, deleted_at, inbox_event_id)
SELECT * FROM unnest(?::text[], ?::text[], ?::jsonb[], ?::timestamptz[], ?::timestamptz[], ?::timestamptz[], ?::bigint[])
` + mirrorSet,
	current: `SELECT entity_id, source_modified_at, inbox_event_id FROM ? WHERE entity_id = ANY(?::text[])`,
	rows: func(rows []Mirror) []any {
		n := len(rows)
		ids, sources, data := make([]string, n), make([]string, n), make([]string, n)
		versions, synced, deleted := make([]time.Time, n), make([]time.Time, n), make([]*time.Time, n)
		events := make([]int64, n)
		for i, r := range rows {
			ids[i], sources[i], data[i] = r.EntityID, r.Source, r.Data
			versions[i], synced[i], deleted[i], events[i] = r.Version, r.SyncedAt, r.DeletedAt, r.InboxEventID
		}
		return []any{pgArray(ids), pgArray(sources), pgArray(data), pgArray(versions), pgArray(synced),
			pgArray(deleted), pgArray(events)}
	},
}

// sqMirrorRow is a mirror row as a JSON parameter.
type sqMirrorRow struct {
	EntityID  string  `json:"id"`
	Source    string  `json:"source"`
	Data      string  `json:"data"`
	Version   string  `json:"version"`
	SyncedAt  string  `json:"synced_at"`
	DeletedAt *string `json:"deleted_at"`
	Event     int64   `json:"event"`
}

var sqMirror = mirrorSQL{
	upsert: `INSERT INTO ? AS m (entity_id, source, data, source_modified_at, synced_at, deleted_at, inbox_event_id)
SELECT value ->> '$.id', value ->> '$.source', value ->> '$.data', value ->> '$.version',
	value ->> '$.synced_at', value ->> '$.deleted_at', value ->> '$.event'
FROM json_each(?) WHERE TRUE
` + mirrorSet,
	current: `SELECT entity_id, source_modified_at, inbox_event_id FROM ?
WHERE entity_id IN (SELECT value FROM json_each(?))`,
	rows: func(rows []Mirror) []any {
		out := make([]sqMirrorRow, len(rows))
		for i, r := range rows {
			out[i] = sqMirrorRow{EntityID: r.EntityID, Source: r.Source, Data: r.Data, Version: sqTime(r.Version),
				SyncedAt: sqTime(r.SyncedAt), DeletedAt: sqNullTime(r.DeletedAt), Event: r.InboxEventID}
		}
		return []any{jsonParam(out)}
	},
}

// MirrorUpsertBatch implements [Store.MirrorUpsertBatch].
func (c common) MirrorUpsertBatch(ctx context.Context, db bun.IDB, table string, rows []Mirror) (map[string]MirrorKept, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	ms := c.dialect.mirror()
	args := append([]any{bun.Ident(table)}, ms.rows(rows)...)
	var written []string
	if err := db.NewRaw(ms.upsert, args...).Scan(ctx, &written); err != nil {
		return nil, err
	}
	if len(written) == len(rows) {
		return nil, nil
	}
	done := make(map[string]bool, len(written))
	for _, id := range written {
		done[id] = true
	}
	var kept []string
	for _, r := range rows {
		if !done[r.EntityID] {
			kept = append(kept, r.EntityID)
		}
	}
	var cur []MirrorKept
	if err := db.NewRaw(ms.current, bun.Ident(table), c.dialect.texts(kept)).Scan(ctx, &cur); err != nil {
		return nil, err
	}
	out := make(map[string]MirrorKept, len(cur))
	for _, k := range cur {
		out[k.EntityID] = k
	}
	return out, nil
}
