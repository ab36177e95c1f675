package tds

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
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
	now := dbTime(m.now())
	version := dbTime(job.Version)
	data := string(job.Data)
	if data == "" {
		data = "null"
	}
	var deletedAt *time.Time
	dataExpr := "excluded.data"
	if job.EventType == EventDelete {
		deletedAt = &now
		dataExpr = "m.data" // a delete keeps the last known record
	}
	res, err := tx.NewRaw(`INSERT INTO ? AS m
(entity_id, source, data, source_modified_at, synced_at, deleted_at, inbox_event_id)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (entity_id) DO UPDATE SET
	source = excluded.source,
	data = `+dataExpr+`,
	source_modified_at = excluded.source_modified_at,
	synced_at = excluded.synced_at,
	deleted_at = excluded.deleted_at,
	inbox_event_id = excluded.inbox_event_id
WHERE m.source_modified_at <= excluded.source_modified_at`,
		bun.Ident(table), job.EntityID, job.Source, data, version, now, deletedAt, job.InboxEventID,
	).Exec(ctx)
	if err != nil {
		return fmt.Errorf("tds: mirroring %s %s: %w", job.EntityType, job.EntityID, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	var cur struct {
		SourceModifiedAt time.Time `bun:"source_modified_at"`
		InboxEventID     int64     `bun:"inbox_event_id"`
	}
	err = tx.NewSelect().Table(table).Column("source_modified_at", "inbox_event_id").
		Where("entity_id = ?", job.EntityID).Scan(ctx, &cur)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("tds: mirroring %s %s: the row was neither written nor found", job.EntityType, job.EntityID)
	}
	if err != nil {
		return fmt.Errorf("tds: mirroring %s %s: %w", job.EntityType, job.EntityID, err)
	}
	job.Supersede(fmt.Sprintf("version %s is older than the mirrored version %s (inbox event %d)",
		version.Format(time.RFC3339Nano), cur.SourceModifiedAt.UTC().Format(time.RFC3339Nano), cur.InboxEventID))
	return nil
}

// MigrateMirror creates the mirror table of every entity type of reg that
// does not exist yet (CREATE TABLE IF NOT EXISTS), for [MirrorSyncer]. It
// is idempotent; on PostgreSQL concurrent callers take turns through the
// migration advisory lock. Table names are the registry's, which are
// checked to be plain SQL identifiers when registered.
func MigrateMirror(ctx context.Context, db *bun.DB, reg *Registry) error {
	if db == nil || reg == nil {
		return errors.New("tds: MigrateMirror: db and registry are required")
	}
	var ddl string
	switch {
	case isPostgres(db):
		ddl = `CREATE TABLE IF NOT EXISTS ? (
	entity_id          TEXT PRIMARY KEY,
	source             TEXT        NOT NULL,
	data               JSONB       NOT NULL,
	source_modified_at TIMESTAMPTZ NOT NULL,
	synced_at          TIMESTAMPTZ NOT NULL,
	deleted_at         TIMESTAMPTZ,
	inbox_event_id     BIGINT      NOT NULL
)`
	case isSQLite(db):
		ddl = `CREATE TABLE IF NOT EXISTS ? (
	entity_id          TEXT PRIMARY KEY,
	source             TEXT      NOT NULL,
	data               TEXT      NOT NULL,
	source_modified_at TIMESTAMP NOT NULL,
	synced_at          TIMESTAMP NOT NULL,
	deleted_at         TIMESTAMP,
	inbox_event_id     INTEGER   NOT NULL
)`
	default:
		return errUnsupportedDialect
	}
	seen := map[string]bool{}
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if isPostgres(db) {
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", int64(migrateLockKey)); err != nil {
				return err
			}
		}
		for _, t := range reg.Types() {
			if seen[t.MirrorTable] {
				continue
			}
			seen[t.MirrorTable] = true
			if !tablePattern.MatchString(t.MirrorTable) {
				return fmt.Errorf("mirror table %q is not a plain SQL identifier", t.MirrorTable)
			}
			if _, err := tx.ExecContext(ctx, ddl, bun.Ident(t.MirrorTable)); err != nil {
				return fmt.Errorf("creating %s: %w", t.MirrorTable, err)
			}
		}
		return nil
	})
	return wrapDBErr("migrating mirror tables", err)
}
