package tds

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/store"
)

// MirrorSyncer is the reference [Syncer]: it keeps the latest copy of each
// entity in the entity type's mirror table ([EntityType.MirrorTable] of
// the registry: products, customers, …), with columns
//
//	entity_id          primary key, the entity's id in the source
//	source             the system that sent it
//	data               the latest payload (JSONB on PostgreSQL)
//	source_modified_at the version of data
//	synced_at          when tds wrote the row
//	deleted_at         set by a delete event, cleared by a later update
//	inbox_event_id     the inbox event that wrote the row
//
// It never lets an older version overwrite a newer one: an event whose
// version is older than the row's completes as superseded ([OutcomeSuperseded],
// with the newer version in the job's outcome_detail) and changes nothing.
// Of two events with the same version the later one received wins. A
// delete keeps the last data and sets deleted_at. Create the tables with
// [MigrateMirror]; rename them through the registry.
type MirrorSyncer struct {
	reg *Registry
	now func() time.Time
}

var _ Syncer = (*MirrorSyncer)(nil)

// NewMirrorSyncer returns a MirrorSyncer. opts are the options that apply
// to NewMirrorSyncer; see [Option]. The registry names the entity types and
// their mirror tables; the clock sets synced_at.
func NewMirrorSyncer(opts ...Option) (*MirrorSyncer, error) {
	cfg, err := newConfig(forMirrorSyncer, opts)
	if err != nil {
		return nil, err
	}
	return &MirrorSyncer{reg: cfg.registry, now: cfg.now}, nil
}

// Table returns the mirror table of entityType.
func (m *MirrorSyncer) Table(entityType string) (string, error) {
	t, ok := m.reg.Lookup(entityType)
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownEntityType, entityType)
	}
	return t.MirrorTable, nil
}

// Sync writes job to its mirror table in tx, unless the table holds a
// newer version. An unknown entity type is a permanent failure.
func (m *MirrorSyncer) Sync(ctx context.Context, tx bun.Tx, job *SyncJob) error {
	table, err := m.Table(job.EntityType)
	if err != nil {
		return Permanent(err)
	}
	st, err := store.For(tx)
	if err != nil {
		return Permanent(err)
	}
	row := m.row(table, job, dbTime(m.now()))
	cur, applied, err := st.MirrorUpsert(ctx, tx, &row)
	if err != nil {
		return fmt.Errorf("tds: mirroring %s %s: %w", job.EntityType, job.EntityID, err)
	}
	if applied {
		return nil
	}
	job.Supersede(supersededDetail(row.Version, cur.Version, cur.InboxEventID))
	return nil
}

// row is the mirror row of job, written at now.
func (m *MirrorSyncer) row(table string, job *SyncJob, now time.Time) store.Mirror {
	row := store.Mirror{Table: table, EntityID: job.EntityID, Source: job.Source, Data: string(job.Data),
		Version: dbTime(job.Version), SyncedAt: now, InboxEventID: job.InboxEventID}
	if row.Data == "" {
		row.Data = "null"
	}
	if job.EventType == EventDelete {
		row.DeletedAt = &now // a delete keeps the last known record
	}
	return row
}

// supersededDetail says why a job changed nothing.
func supersededDetail(version, current time.Time, currentEvent int64) string {
	return fmt.Sprintf("version %s is older than the mirrored version %s (inbox event %d)",
		version.Format(time.RFC3339Nano), current.UTC().Format(time.RFC3339Nano), currentEvent)
}

// SyncBatch mirrors jobs with one upsert per table, with the same stale
// guard as Sync: a job older than the mirrored version is superseded. It
// implements [BatchSyncer].
func (m *MirrorSyncer) SyncBatch(ctx context.Context, tx bun.Tx, jobs []*SyncJob) error {
	st, err := store.For(tx)
	if err != nil {
		return Permanent(err)
	}
	now := dbTime(m.now())
	type group struct {
		rows []store.Mirror
		jobs []*SyncJob
		ids  map[string]bool
	}
	var tables []string
	groups := map[string]*group{}
	for _, job := range jobs {
		table, err := m.Table(job.EntityType)
		if err != nil {
			return err // Sync fails the job alone
		}
		g := groups[table]
		if g == nil {
			g = &group{ids: map[string]bool{}}
			groups[table] = g
			tables = append(tables, table)
		}
		if g.ids[job.EntityID] {
			// Two jobs write the same row (a table is keyed by entity id
			// alone: the same id from two sources, or two entity types
			// sharing a table). One statement cannot apply them in order
			// nor tell which was stale: Sync them one at a time.
			return fmt.Errorf("tds: two jobs of the batch write %s %q", table, job.EntityID)
		}
		g.ids[job.EntityID] = true
		g.rows = append(g.rows, m.row(table, job, now))
		g.jobs = append(g.jobs, job)
	}
	for _, table := range tables {
		g := groups[table]
		kept, err := st.MirrorUpsertBatch(ctx, tx, table, g.rows)
		if err != nil {
			return fmt.Errorf("tds: mirroring %d rows into %s: %w", len(g.rows), table, err)
		}
		for i, job := range g.jobs {
			if cur, ok := kept[job.EntityID]; ok {
				job.Supersede(supersededDetail(g.rows[i].Version, cur.Version, cur.InboxEventID))
			}
		}
	}
	return nil
}

var _ BatchSyncer = (*MirrorSyncer)(nil)

// MigrateMirror creates the mirror table of every entity type of reg that
// does not exist yet (CREATE TABLE IF NOT EXISTS), for [MirrorSyncer]. It
// is idempotent; on PostgreSQL concurrent callers take turns through the
// migration advisory lock. Table names are the registry's, which are
// checked to be plain SQL identifiers when registered.
func MigrateMirror(ctx context.Context, db *bun.DB, reg *Registry) error {
	if db == nil || reg == nil {
		return errors.New("tds: MigrateMirror: db and registry are required")
	}
	st, err := store.For(db)
	if err != nil {
		return err
	}
	var tables []string
	seen := map[string]bool{}
	for _, t := range reg.Types() {
		if seen[t.MirrorTable] {
			continue
		}
		seen[t.MirrorTable] = true
		if !tablePattern.MatchString(t.MirrorTable) {
			return fmt.Errorf("tds: MigrateMirror: mirror table %q is not a plain SQL identifier", t.MirrorTable)
		}
		tables = append(tables, t.MirrorTable)
	}
	return wrapDBErr("migrating mirror tables", st.MigrateMirror(ctx, db, tables))
}
