// Package tds makes webhook-driven data sync between a SaaS ERP (Zoho Books,
// Zoho Inventory) and a local database boring and safe.
//
// Every webhook goes through the same steps, each a type of this package:
//
//   - the [Processor] stores it in the [Inbox] (table tds_inbox_events) with an
//     idempotency key, a content hash and redacted request metadata, so an
//     identical redelivery is recognised as a duplicate;
//   - a [Validator] checks it against the entity [Registry] (invalid events are
//     kept with every error);
//   - a [Prioritizer] gives it a priority and the [Queue] (table
//     tds_sync_queue) holds it until a worker syncs it.
//
// Store, validate and enqueue run in one transaction, so an event is either
// fully ingested or not at all; the webhook sender gets its 2xx only after
// that transaction commits.
//
// PostgreSQL (bun's pgdialect and pgdriver) is the production store, shared by
// any number of processes; SQLite (modernc.org/sqlite, pure Go) is the
// embedded default. [Open] turns a URL into a ready *bun.DB for either, and
// [Migrate] creates the schema:
//
//	db, err := tds.Open(ctx, "sqlite:tds.db") // or "postgres://user:pw@host/db"
//	if err != nil { ... }
//	if err := tds.Migrate(ctx, db); err != nil { ... }
//	p, err := tds.NewProcessor(db)
//	if err != nil { ... }
//	res, err := p.Process(ctx, &tds.Event{
//		EventType:  "update",
//		EntityType: "product",
//		EntityID:   "460000000038080",
//		Data:       json.RawMessage(`{"item_id":"460000000038080","name":"Pump"}`),
//	})
//
// res tells whether the event was queued, was a duplicate, or was invalid.
//
// Constructors take options of one type, [Option], and each option knows
// the constructors it applies to; its documentation names them ("Applies to
// [NewWorker]."). An option given to any other constructor is an error at
// construction naming both ("tds: WithConcurrency does not apply to
// NewQueue"), never silently ignored. The options are not typed per
// constructor as bun's are, because several apply to several constructors
// ([WithRegistry], [WithClock], [WithLogger]) and per-constructor types
// would multiply them; one type lets a server keep one []Option per
// component. The check still happens at construction, and a test keeps each
// option's list of constructors true to the code.
package tds

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/uptrace/bun"
)

// Event types carried in the envelope's event_type field.
const (
	EventCreate = "create"
	EventUpdate = "update"
	EventDelete = "delete"
)

// Status is the state of a job in the sync queue.
type Status string

// Job statuses. A job starts pending, is processing while a worker holds it,
// waits in retry after a failed attempt, and ends completed or dead_letter.
const (
	StatusPending    Status = "pending"
	StatusProcessing Status = "processing"
	StatusRetry      Status = "retry"
	StatusCompleted  Status = "completed"
	StatusDeadLetter Status = "dead_letter"
)

// Statuses lists every job status in lifecycle order.
var Statuses = []Status{StatusPending, StatusProcessing, StatusRetry, StatusCompleted, StatusDeadLetter}

// DefaultSource is the source recorded for events that do not name one.
const DefaultSource = "zoho"

// ZohoTimeLayout is the layout of Zoho's last_modified_time field.
const ZohoTimeLayout = "2006-01-02T15:04:05-0700"

var (
	// ErrDatabaseUnavailable reports that the database could not be reached
	// or could not take the write in time. Nothing was stored; the caller
	// should ask the sender to retry later (HTTP 503).
	ErrDatabaseUnavailable = errors.New("tds: database unavailable")

	// ErrNotFound reports that a requested inbox event or job does not exist.
	ErrNotFound = errors.New("tds: not found")

	// ErrUnknownEntityType reports an entity type that is not in the registry.
	ErrUnknownEntityType = errors.New("tds: unknown entity type")

	// ErrInvalidEvent reports an event that lacks what tds needs to store it
	// at all (entity type, entity id or event type). Such an event is not
	// stored; events that are well-formed but fail validation are stored and
	// reported through [Result.ValidationErrors] instead.
	ErrInvalidEvent = errors.New("tds: invalid event")
)

// Event is one webhook delivery, as handed to [Processor.Process].
type Event struct {
	// Source names the system that sent the event. Defaults to [DefaultSource].
	Source string
	// EventType is create, update or delete.
	EventType string
	// EntityType names a registered entity type, such as "product".
	EntityType string
	// EntityID is the entity's id in the source system.
	EntityID string
	// Data is the entity record, a JSON object.
	Data json.RawMessage
	// DeliveryID is the sender's id for this delivery, when it sends one
	// (for example the Standard Webhooks webhook-id header). Redeliveries
	// carry the same id; it makes the idempotency key.
	DeliveryID string
	// ReceivedAt is when the event arrived. Defaults to the processor's clock.
	ReceivedAt time.Time
	// Metadata describes the HTTP request; secrets are redacted before storing.
	Metadata RequestMetadata
}

// RequestMetadata describes the request that carried an event.
type RequestMetadata struct {
	// Headers of the request. Secret headers are redacted before they are
	// stored (see [WithRedactHeaders]).
	Headers map[string][]string `json:"headers,omitempty"`
	// ClientIP is the address the request came from.
	ClientIP string `json:"client_ip,omitempty"`
	// SignatureVerified tells whether a key or signature was checked.
	SignatureVerified bool `json:"signature_verified"`
	// Verifier names the check that accepted the request, if any.
	Verifier string `json:"verifier,omitempty"`
}

// ValidationError is one problem found in an event.
type ValidationError struct {
	// Field is the envelope or data field at fault, such as "data.name";
	// empty when the problem is not about one field.
	Field string `json:"field,omitempty"`
	// Message says what is wrong.
	Message string `json:"message"`
}

// String returns "field: message", or the message alone.
func (e ValidationError) String() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// ValidationErrors is every problem found in an event. It is an error so
// that a [Validator] can return it.
type ValidationErrors []ValidationError

// Error joins the problems into one line.
func (ve ValidationErrors) Error() string {
	s := "tds: invalid event"
	for i, e := range ve {
		if i == 0 {
			s += ": "
		} else {
			s += "; "
		}
		s += e.String()
	}
	return s
}

// InboxEvent is a stored webhook event: a row of tds_inbox_events.
//
// ProcessedAt is when the event was done with, nil until then: when its
// job completed, or when it was marked processed explicitly
// ([Inbox.MarkProcessed], a dead letter, a discarded dead letter). A
// completed job does not write the column; the [Inbox] reads the job's
// completed_at in its place.
type InboxEvent struct {
	bun.BaseModel `bun:"table:tds_inbox_events"`

	ID               int64            `bun:"id,pk,autoincrement" json:"id"`
	Source           string           `bun:"source,notnull" json:"source"`
	EventType        string           `bun:"event_type,notnull" json:"event_type"`
	EntityType       string           `bun:"entity_type,notnull" json:"entity_type"`
	SourceEntityID   string           `bun:"source_entity_id,notnull" json:"source_entity_id"`
	IdempotencyKey   string           `bun:"idempotency_key,notnull" json:"idempotency_key"`
	DeliveryID       *string          `bun:"delivery_id" json:"delivery_id,omitempty"`
	ContentHash      string           `bun:"content_hash,notnull" json:"content_hash"`
	Payload          json.RawMessage  `bun:"payload,notnull" json:"payload"`
	SourceModifiedAt time.Time        `bun:"source_modified_at,notnull" json:"source_modified_at"`
	RequestMetadata  RequestMetadata  `bun:"request_metadata,type:json,notnull" json:"request_metadata"`
	IsValid          bool             `bun:"is_valid,notnull" json:"is_valid"`
	ValidationErrors ValidationErrors `bun:"validation_errors,type:json" json:"validation_errors,omitempty"`
	ValidatedAt      *time.Time       `bun:"validated_at" json:"validated_at,omitempty"`
	MovedToQueue     bool             `bun:"moved_to_queue,notnull" json:"moved_to_queue"`
	QueuedAt         *time.Time       `bun:"queued_at" json:"queued_at,omitempty"`
	ProcessedAt      *time.Time       `bun:"processed_at" json:"processed_at,omitempty"`
	ReceivedAt       time.Time        `bun:"received_at,notnull" json:"received_at"`
}

// Job is an entry of the sync queue: a row of tds_sync_queue.
type Job struct {
	bun.BaseModel `bun:"table:tds_sync_queue"`

	ID             int64  `bun:"id,pk,autoincrement" json:"id"`
	InboxEventID   int64  `bun:"inbox_event_id,notnull" json:"inbox_event_id"`
	Source         string `bun:"source,notnull" json:"source"`
	EventType      string `bun:"event_type,notnull" json:"event_type"`
	EntityType     string `bun:"entity_type,notnull" json:"entity_type"`
	SourceEntityID string `bun:"source_entity_id,notnull" json:"source_entity_id"`
	Status         Status `bun:"status,notnull" json:"status"`
	Priority       int    `bun:"priority,notnull" json:"priority"`
	// Blocked reports that the job waits for an earlier unfinished job of
	// its entity; the jobs of an entity run one at a time, in order.
	Blocked          bool       `bun:"blocked,notnull" json:"blocked"`
	AttemptCount     int        `bun:"attempt_count,notnull" json:"attempt_count"`
	MaxRetryAttempts int        `bun:"max_retry_attempts,notnull" json:"max_retry_attempts"`
	NextRetryAt      time.Time  `bun:"next_retry_at,notnull" json:"next_retry_at"`
	LockedBy         *string    `bun:"locked_by" json:"locked_by,omitempty"`
	LockedUntil      *time.Time `bun:"locked_until" json:"locked_until,omitempty"`
	LastError        *string    `bun:"last_error" json:"last_error,omitempty"`
	LastErrorCode    *string    `bun:"last_error_code" json:"last_error_code,omitempty"`
	Outcome          *string    `bun:"outcome" json:"outcome,omitempty"`
	OutcomeDetail    *string    `bun:"outcome_detail" json:"outcome_detail,omitempty"`
	CreatedAt        time.Time  `bun:"created_at,notnull" json:"created_at"`
	UpdatedAt        time.Time  `bun:"updated_at,notnull" json:"updated_at"`
	CompletedAt      *time.Time `bun:"completed_at" json:"completed_at,omitempty"`
}

// dbTime is how tds writes a time: UTC at microsecond precision, which both
// PostgreSQL and SQLite store exactly, so a value read back compares equal.
func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
