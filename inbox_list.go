package tds

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tdscore/tds/internal/store"
)

// DefaultListLimit is how many rows a listing returns when its [Page]
// names no limit.
const DefaultListLimit = 100

// Page is one page of a listing, which lists newest first: every listing
// of tds and of its packages (inbox events, dead letters, reconciliation
// runs and drift) pages the same way.
type Page struct {
	// Limit caps how many rows are listed; 0 means [DefaultListLimit].
	Limit int
	// BeforeID lists only rows with a smaller id: the cursor of the next
	// page is the last id of this one.
	BeforeID int64
}

// limit is the page's limit, its default applied.
func (p Page) limit() int {
	if p.Limit <= 0 {
		return DefaultListLimit
	}
	return p.Limit
}

// InboxFilter selects inbox events. Zero fields select everything.
type InboxFilter struct {
	// Source, EntityType, EntityID and EventType keep events with exactly
	// these values.
	Source, EntityType, EntityID, EventType string
	// Status, when set, keeps events with this status.
	Status EventStatus
	// Valid, Queued and Processed, when set, keep events that passed
	// validation, were queued, or were processed (or the opposite).
	// Processed is kept for compatibility: it means finished whatever the
	// outcome, a dead letter included (see [InboxEvent.ProcessedAt]);
	// Status tells the outcomes apart.
	Valid, Queued, Processed *bool
	// Since and Until keep events received in [Since, Until).
	Since, Until time.Time
	// Page is the page of the listing.
	Page
}

// List returns the events f selects, newest first. An unknown Status is
// an error.
func (in *Inbox) List(ctx context.Context, f InboxFilter) ([]InboxEvent, error) {
	if f.Status != "" && !slices.Contains(EventStatuses, f.Status) {
		return nil, fmt.Errorf("tds: listing inbox events: unknown status %q", f.Status)
	}
	rows, err := in.st.ListEvents(ctx, in.db, store.EventFilter{
		Source: f.Source, EntityType: f.EntityType, EntityID: f.EntityID, EventType: f.EventType,
		Valid: f.Valid, Queued: f.Queued, Processed: f.Processed, Status: string(f.Status),
		Since: dbTimeOrZero(f.Since), Until: dbTimeOrZero(f.Until), BeforeID: f.BeforeID, Limit: f.limit(),
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
