package tds

import (
	"context"
	"time"

	"github.com/tdscore/tds/internal/store"
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
	rows, err := in.st.ListEvents(ctx, in.db, store.EventFilter{
		Source: f.Source, EntityType: f.EntityType, EntityID: f.EntityID, EventType: f.EventType,
		Valid: f.Valid, Queued: f.Queued, Processed: f.Processed,
		Since: dbTimeOrZero(f.Since), Until: dbTimeOrZero(f.Until), BeforeID: f.BeforeID, Limit: limit,
	})
	if err != nil {
		return nil, wrapDBErr("listing inbox events", err)
	}
	return eventsOf(rows)
}

// dbTimeOrZero is dbTime, keeping the zero time zero.
func dbTimeOrZero(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return dbTime(t)
}
