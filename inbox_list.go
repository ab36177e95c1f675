package tds

import (
	"context"
	"time"

	"github.com/uptrace/bun"
)

// DefaultListLimit is how many rows a listing returns when its filter
// names no limit.
const DefaultListLimit = 100

// InboxFilter selects inbox events. Zero fields select everything.
type InboxFilter struct {
	// Source, EntityType, EntityID and EventType keep events with exactly
	// these values.
	Source, EntityType, EntityID, EventType string
	// Valid, Queued and Processed, when set, keep events that passed
	// validation, were queued, or were processed (or the opposite); see
	// [InboxEvent.ProcessedAt] for what processed means.
	Valid, Queued, Processed *bool
	// Since and Until keep events received in [Since, Until).
	Since, Until time.Time
	// Limit caps how many events are listed; 0 means [DefaultListLimit].
	Limit int
	// BeforeID lists only events with a smaller id: the cursor of the next
	// page (events are listed newest first).
	BeforeID int64
}

// List returns the events f selects, newest first.
func (in *Inbox) List(ctx context.Context, f InboxFilter) ([]InboxEvent, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	out := []InboxEvent{}
	q := selectInboxEvents(in.db.NewSelect().Model(&out))
	for col, v := range map[string]string{
		"source": f.Source, "entity_type": f.EntityType,
		"source_entity_id": f.EntityID, "event_type": f.EventType,
	} {
		if v != "" {
			q = q.Where("? = ?", bun.Ident(col), v)
		}
	}
	if f.Valid != nil {
		q = q.Where("is_valid = ?", *f.Valid)
	}
	if f.Queued != nil {
		q = q.Where("moved_to_queue = ?", *f.Queued)
	}
	if f.Processed != nil {
		if *f.Processed {
			q = q.Where("NOT " + isUnprocessedSQL)
		} else {
			q = q.Where(isUnprocessedSQL)
		}
	}
	if !f.Since.IsZero() {
		q = q.Where("received_at >= ?", dbTime(f.Since))
	}
	if !f.Until.IsZero() {
		q = q.Where("received_at < ?", dbTime(f.Until))
	}
	if f.BeforeID > 0 {
		q = q.Where("id < ?", f.BeforeID)
	}
	if err := q.Order("id DESC").Limit(int64(limit)).Scan(ctx); err != nil {
		return nil, wrapDBErr("listing inbox events", err)
	}
	return out, nil
}
