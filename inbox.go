package tds

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/canonical"
)

// Redacted replaces the value of a secret header in stored request metadata.
const Redacted = "[REDACTED]"

// defaultRedactedHeaders never reach the database. Headers whose names
// contain "signature", "secret", "token" or "password" are redacted too.
var defaultRedactedHeaders = []string{
	"X-Webhook-Key", "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie",
	"X-Api-Key", "X-Zoho-Webhook-Signature", "Webhook-Signature", "X-Hub-Signature",
	"X-Hub-Signature-256",
}

var secretHeaderWords = []string{"signature", "secret", "token", "password"}

// Inbox stores received webhook events in tds_inbox_events. Its methods are
// safe for concurrent use.
type Inbox struct {
	db  bun.IDB
	cfg *config
}

// NewInbox returns an Inbox on db. It reads [WithSource], [WithRedactHeaders]
// and [WithClock].
func NewInbox(db *bun.DB, opts ...Option) (*Inbox, error) {
	if db == nil {
		return nil, errors.New("tds: NewInbox: db is nil")
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Inbox{db: db, cfg: cfg}, nil
}

// WithTx returns a copy of the Inbox whose methods run in tx.
func (in *Inbox) WithTx(tx bun.Tx) *Inbox {
	return &Inbox{db: tx, cfg: in.cfg}
}

// IdempotencyKey returns the key that makes ev a duplicate of another
// delivery: source:entity_type:entity_id:event_type, then "d:" and the
// sender's delivery id when ev has one, else "h:" and the content hash. So
// a redelivery (same delivery id, or same content) is a duplicate while a
// changed payload for the same entity is a new event. Colons and percent
// signs inside the parts are escaped, so different events never share a key.
func IdempotencyKey(source string, ev *Event, contentHash string) string {
	if ev.Source != "" {
		source = ev.Source
	}
	var b strings.Builder
	for _, p := range []string{source, ev.EntityType, ev.EntityID, ev.EventType} {
		b.WriteString(escapeKeyPart(p))
		b.WriteByte(':')
	}
	if ev.DeliveryID != "" {
		b.WriteString("d:")
		b.WriteString(escapeKeyPart(ev.DeliveryID))
	} else {
		b.WriteString("h:")
		b.WriteString(contentHash)
	}
	return b.String()
}

var keyEscaper = strings.NewReplacer("%", "%25", ":", "%3A")

func escapeKeyPart(s string) string { return keyEscaper.Replace(s) }

func checkKeyPart(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("must not be empty")
	}
	if len(s) > 200 {
		return errors.New("must be at most 200 bytes")
	}
	return nil
}

// redactHeaders copies h with the values of secret headers replaced by
// [Redacted].
func (c *config) redactHeaders(h map[string][]string) map[string][]string {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string][]string, len(h))
	for k, vs := range h {
		ck := http.CanonicalHeaderKey(k)
		if c.isSecretHeader(ck) {
			out[ck] = []string{Redacted}
			continue
		}
		out[ck] = append([]string(nil), vs...)
	}
	return out
}

func (c *config) isSecretHeader(canonical string) bool {
	if c.redact[canonical] {
		return true
	}
	lower := strings.ToLower(canonical)
	for _, w := range secretHeaderWords {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}

// newInboxEvent builds the row for ev: hash, key, version, redacted
// metadata. It fails with ErrInvalidEvent when ev lacks its identity.
func (c *config) newInboxEvent(ev *Event) (*InboxEvent, error) {
	var missing []string
	if strings.TrimSpace(ev.EventType) == "" {
		missing = append(missing, "event_type")
	}
	if strings.TrimSpace(ev.EntityType) == "" {
		missing = append(missing, "entity_type")
	}
	if strings.TrimSpace(ev.EntityID) == "" {
		missing = append(missing, "entity_id")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: missing %s", ErrInvalidEvent, strings.Join(missing, ", "))
	}
	for _, f := range []struct{ name, v string }{
		{"source", ev.Source}, {"event_type", ev.EventType}, {"entity_type", ev.EntityType},
		{"entity_id", ev.EntityID}, {"delivery id", ev.DeliveryID},
	} {
		if strings.ContainsRune(f.v, 0) {
			return nil, fmt.Errorf("%w: %s holds a NUL character", ErrInvalidEvent, f.name)
		}
	}
	data := ev.Data
	if len(data) == 0 {
		data = []byte("null")
	}
	canon, nul, err := canonical.Canonicalize(data)
	if err != nil {
		return nil, fmt.Errorf("%w: data: %v", ErrInvalidEvent, err)
	}
	if nul {
		// PostgreSQL stores no NUL in text or JSONB; refuse it on both
		// stores, so the same event fares the same everywhere.
		return nil, fmt.Errorf("%w: data holds a NUL character (\\u0000)", ErrInvalidEvent)
	}
	hash := canonical.Hash(canon)
	received := ev.ReceivedAt
	if received.IsZero() {
		received = c.now()
	}
	received = dbTime(received)
	source := ev.Source
	if source == "" {
		source = c.source
	}
	row := &InboxEvent{
		Source:           source,
		EventType:        ev.EventType,
		EntityType:       ev.EntityType,
		SourceEntityID:   ev.EntityID,
		IdempotencyKey:   IdempotencyKey(source, ev, hash),
		ContentHash:      hash,
		Payload:          canon,
		SourceModifiedAt: dbTime(eventVersion(canon, received)),
		ReceivedAt:       received,
		RequestMetadata: RequestMetadata{
			Headers:           c.redactHeaders(ev.Metadata.Headers),
			ClientIP:          ev.Metadata.ClientIP,
			SignatureVerified: ev.Metadata.SignatureVerified,
			Verifier:          ev.Metadata.Verifier,
		},
	}
	if ev.DeliveryID != "" {
		id := ev.DeliveryID
		row.DeliveryID = &id
	}
	return row, nil
}

// Store saves ev as a new inbox event, not yet validated nor queued. When an
// event with the same idempotency key exists, Store saves nothing and
// returns the existing event with duplicate set. Concurrent identical
// deliveries are told apart by the table's unique constraint, so exactly one
// of them stores a row.
func (in *Inbox) Store(ctx context.Context, ev *Event) (stored *InboxEvent, duplicate bool, err error) {
	row, err := in.cfg.newInboxEvent(ev)
	if err != nil {
		return nil, false, err
	}
	return insertInboxEvent(ctx, in.db, row)
}

// insertInboxEvent inserts row unless its idempotency key exists, in which
// case it returns the existing row and true.
func insertInboxEvent(ctx context.Context, db bun.IDB, row *InboxEvent) (*InboxEvent, bool, error) {
	res, err := db.NewInsert().Model(row).
		On("CONFLICT (idempotency_key) DO NOTHING").
		Returning("id").
		Exec(ctx)
	if err != nil {
		return nil, false, wrapDBErr("storing inbox event", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		return row, false, nil
	}
	existing := new(InboxEvent)
	err = db.NewSelect().Model(existing).Where("idempotency_key = ?", row.IdempotencyKey).Scan(ctx)
	if err != nil {
		return nil, false, wrapDBErr("reading duplicate inbox event", err)
	}
	return existing, true, nil
}

// Get returns the inbox event with the given id, or an error wrapping
// [ErrNotFound].
func (in *Inbox) Get(ctx context.Context, id int64) (*InboxEvent, error) {
	ev := new(InboxEvent)
	err := selectInboxEvents(in.db.NewSelect().Model(ev)).Where("id = ?", id).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: inbox event %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, wrapDBErr("reading inbox event", err)
	}
	return ev, nil
}

// MarkValidated records the outcome of validating event id: valid when errs
// is empty, otherwise invalid with every error kept.
func (in *Inbox) MarkValidated(ctx context.Context, id int64, errs ValidationErrors) error {
	q := in.db.NewUpdate().Model((*InboxEvent)(nil)).
		Set("is_valid = ?", len(errs) == 0).
		Set("validated_at = ?", dbTime(in.cfg.now())).
		Where("id = ?", id)
	if len(errs) == 0 {
		q = q.Set("validation_errors = NULL")
	} else {
		q = q.Set("validation_errors = ?", errs)
	}
	return in.updateOne(ctx, q, id, "marking inbox event validated")
}

// MarkQueued records that event id was moved to the sync queue.
func (in *Inbox) MarkQueued(ctx context.Context, id int64) error {
	q := in.db.NewUpdate().Model((*InboxEvent)(nil)).
		Set("moved_to_queue = ?", true).
		Set("queued_at = ?", dbTime(in.cfg.now())).
		Where("id = ?", id)
	return in.updateOne(ctx, q, id, "marking inbox event queued")
}

// MarkProcessed records that event id is done with, by setting its
// processed_at: given up on, or handled outside the queue. An event whose
// job completes is processed without it (see [InboxEvent.ProcessedAt]).
// Processed events are no longer listed as unprocessed and become
// eligible for cleanup.
func (in *Inbox) MarkProcessed(ctx context.Context, id int64) error {
	q := in.db.NewUpdate().Model((*InboxEvent)(nil)).
		Set("processed_at = ?", dbTime(in.cfg.now())).
		Where("id = ?", id)
	return in.updateOne(ctx, q, id, "marking inbox event processed")
}

// A completed job marks its inbox event processed without writing to it:
// the worker's burn-down would otherwise rewrite every event's wide row
// (payload, seven indexes) once more. An event is processed when its
// processed_at is set (MarkProcessed, a dead letter, a discard) or its job
// is completed; the job's completed_at is then its processed time, until
// Queue.DeleteCompleted copies it into processed_at.
const (
	// completedJobSQL selects the completed job of the event ?TableAlias.
	completedJobSQL = "FROM tds_sync_queue AS q WHERE q.inbox_event_id = ?TableAlias.id AND q.status = 'completed'"
	// processedAtSQL is when the event ?TableAlias was processed, or NULL.
	processedAtSQL = "COALESCE(?TableAlias.processed_at, (SELECT q.completed_at " + completedJobSQL + "))"
	// isUnprocessedSQL holds when the event ?TableAlias is not processed.
	isUnprocessedSQL = "(?TableAlias.processed_at IS NULL AND NOT EXISTS (SELECT 1 " + completedJobSQL + "))"
)

// selectInboxEvents makes q, a select of InboxEvent, read ProcessedAt as
// the time the event was processed, whether written or implied by its
// completed job.
func selectInboxEvents(q *bun.SelectQuery) *bun.SelectQuery {
	return q.ExcludeColumn("processed_at").ColumnExpr(processedAtSQL + " AS processed_at")
}

func (in *Inbox) updateOne(ctx context.Context, q *bun.UpdateQuery, id int64, doing string) error {
	res, err := q.Exec(ctx)
	if err != nil {
		return wrapDBErr(doing, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("tds: %s: %w: inbox event %d", doing, ErrNotFound, id)
	}
	return nil
}

// ListUnprocessed returns up to limit events not yet processed, oldest
// first, valid or not: events without processed_at whose job, if any, is
// not completed.
func (in *Inbox) ListUnprocessed(ctx context.Context, limit int) ([]InboxEvent, error) {
	var out []InboxEvent
	err := selectInboxEvents(in.db.NewSelect().Model(&out)).
		Where(isUnprocessedSQL).
		Order("id ASC").
		Limit(int64(limit)).
		Scan(ctx)
	if err != nil {
		return nil, wrapDBErr("listing unprocessed inbox events", err)
	}
	return out, nil
}

// HasContentHash reports whether any stored event has the content hash.
func (in *Inbox) HasContentHash(ctx context.Context, hash string) (bool, error) {
	ok, err := in.db.NewSelect().Model((*InboxEvent)(nil)).Where("content_hash = ?", hash).Exists(ctx)
	if err != nil {
		return false, wrapDBErr("looking up content hash", err)
	}
	return ok, nil
}

// InboxStats counts the events of the inbox.
type InboxStats struct {
	Total       int64      `json:"total"`
	Valid       int64      `json:"valid"`
	Invalid     int64      `json:"invalid"`
	Queued      int64      `json:"queued"`
	Unprocessed int64      `json:"unprocessed"`
	OldestAt    *time.Time `json:"oldest_received_at,omitempty"`
	NewestAt    *time.Time `json:"newest_received_at,omitempty"`
}

// Stats counts the inbox's events.
func (in *Inbox) Stats(ctx context.Context) (*InboxStats, error) {
	var s InboxStats
	var oldest, newest bun.NullTime
	err := in.db.NewSelect().Model((*InboxEvent)(nil)).
		ColumnExpr("COUNT(*)").
		ColumnExpr("COALESCE(SUM(CASE WHEN is_valid THEN 1 ELSE 0 END), 0)").
		ColumnExpr("COALESCE(SUM(CASE WHEN moved_to_queue THEN 1 ELSE 0 END), 0)").
		ColumnExpr("COALESCE(SUM(CASE WHEN "+isUnprocessedSQL+" THEN 1 ELSE 0 END), 0)").
		ColumnExpr("MIN(received_at)").
		ColumnExpr("MAX(received_at)").
		Scan(ctx, &s.Total, &s.Valid, &s.Queued, &s.Unprocessed, &oldest, &newest)
	if err != nil {
		return nil, wrapDBErr("counting inbox events", err)
	}
	s.Invalid = s.Total - s.Valid
	if !oldest.IsZero() {
		t, u := oldest.Time.UTC(), newest.Time.UTC()
		s.OldestAt, s.NewestAt = &t, &u
	}
	return &s, nil
}
