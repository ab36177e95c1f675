package tds

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tdscore/tds/internal/dberr"
	"github.com/tdscore/tds/internal/record"
	"github.com/tdscore/tds/internal/store"
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

// EventStatus is where an inbox event stands: read from the event and its
// job, never stored. Each says one thing; in particular only
// [EventStatusSynced] means the Syncer applied the event.
type EventStatus string

// Event statuses.
const (
	// EventStatusReceived: stored, neither refused by validation nor
	// queued (an [Inbox] used directly, before MarkValidated/Enqueue).
	EventStatusReceived EventStatus = "received"
	// EventStatusInvalid: refused by validation; never queued.
	EventStatusInvalid EventStatus = "invalid"
	// EventStatusWaiting: its job is pending, running, or waiting to be
	// retried after a failed attempt.
	EventStatusWaiting EventStatus = "waiting"
	// EventStatusSynced: its job completed and the Syncer applied it
	// (outcome [OutcomeSynced]).
	EventStatusSynced EventStatus = "synced"
	// EventStatusSuperseded: its job completed without a change, a newer
	// version being applied already ([OutcomeSuperseded]).
	EventStatusSuperseded EventStatus = "superseded"
	// EventStatusDeadLetter: its job ran out of attempts or failed
	// permanently; it waits for an operator to retry or discard it.
	EventStatusDeadLetter EventStatus = "dead_letter"
	// EventStatusDiscarded: an operator discarded its dead letter
	// ([OutcomeDiscarded]).
	EventStatusDiscarded EventStatus = "discarded"
	// EventStatusClosed: marked processed without a job to say how
	// ([Inbox.MarkProcessed]), or its completed job was deleted
	// ([Queue.DeleteCompleted]) and its outcome is no longer known.
	EventStatusClosed EventStatus = "closed"
)

// EventStatuses lists every event status, the unfinished first.
var EventStatuses = []EventStatus{EventStatusReceived, EventStatusWaiting, EventStatusDeadLetter, EventStatusInvalid,
	EventStatusSynced, EventStatusSuperseded, EventStatusDiscarded, EventStatusClosed}

// DefaultSource is the source recorded for events that do not name one.
const DefaultSource = "zoho"

// ZohoTimeLayout is the layout of Zoho's last_modified_time field.
const ZohoTimeLayout = record.ZohoTimeLayout

var (
	// ErrDatabaseUnavailable reports that the database could not be reached
	// or could not take the write in time. Nothing was stored; the caller
	// should ask the sender to retry later (HTTP 503).
	ErrDatabaseUnavailable = dberr.ErrUnavailable

	// ErrNotFound reports that a requested inbox event or job does not exist.
	ErrNotFound = dberr.ErrNotFound

	// ErrUnknownEntityType reports an entity type that is not in the registry.
	ErrUnknownEntityType = errors.New("tds: unknown entity type")

	// ErrInvalidEvent reports an event that lacks what tds needs to store it
	// at all (entity type, entity id or event type). Such an event is not
	// stored; events that are well-formed but fail validation are stored and
	// reported through [Result.ValidationErrors] instead.
	ErrInvalidEvent = dberr.ErrInvalidEvent
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

	// checks are problems the Handler found before validation (a Zoho-signed
	// record without its version), stored with the Validator's.
	checks ValidationErrors
	// et is the event's entity type in registry etReg, once resolved (by
	// the Handler from the route, or at the first lookup), so that the
	// Validator, the Prioritizer and the queue do not look it up again
	// (see Registry.typeOf).
	et    *EntityType
	etReg *Registry
}

// RequestMetadata describes the request that carried an event.
type RequestMetadata struct {
	// Headers of the request. Only known-harmless headers keep their
	// values when stored; every other header keeps its name, with the
	// value [Redacted] (see [WithRedactHeaders]).
	Headers map[string][]string `json:"headers,omitempty"`
	// DroppedHeaders names the headers left out because the headers
	// exceeded 8 KiB; the largest go first.
	DroppedHeaders []string `json:"dropped_headers,omitempty"`
	// URL is the request's path and query as received. The values of
	// query parameters whose names look secret (containing key, auth,
	// token, secret, sig, hmac, pass, pwd, credential, session, cookie,
	// jwt, bearer, otp or sid) are redacted before it is stored.
	URL string `json:"url,omitempty"`
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
// Status says where the event stands (synced, dead letter, ...).
// ProcessedAt is when no worker would touch the event again unless an
// operator acts, nil until then, whatever the outcome: when its job
// completed (synced, superseded, discarded) or was dead-lettered, or when
// it was marked processed ([Inbox.MarkProcessed]). It does not say the
// event was applied: Status does.
type InboxEvent struct {
	ID             int64   `json:"id"`
	Source         string  `json:"source"`
	EventType      string  `json:"event_type"`
	EntityType     string  `json:"entity_type"`
	EntityID       string  `json:"entity_id"`
	IdempotencyKey string  `json:"idempotency_key"`
	DeliveryID     *string `json:"delivery_id,omitempty"`
	ContentHash    string  `json:"content_hash"`
	// Payload is the entity record as received (canonical JSON).
	Payload json.RawMessage `json:"payload"`
	// Version is the record's last_modified_time when it had one, else
	// when it was received: a Syncer compares versions to ignore stale
	// events (column source_modified_at).
	Version          time.Time        `json:"version"`
	RequestMetadata  RequestMetadata  `json:"request_metadata"`
	IsValid          bool             `json:"is_valid"`
	ValidationErrors ValidationErrors `json:"validation_errors,omitempty"`
	ValidatedAt      *time.Time       `json:"validated_at,omitempty"`
	MovedToQueue     bool             `json:"moved_to_queue"`
	QueuedAt         *time.Time       `json:"queued_at,omitempty"`
	ProcessedAt      *time.Time       `json:"processed_at,omitempty"`
	ReceivedAt       time.Time        `json:"received_at"`
	Status           EventStatus      `json:"status"`
}

// Job is an entry of the sync queue: a row of tds_sync_queue.
type Job struct {
	ID           int64  `json:"id"`
	InboxEventID int64  `json:"inbox_event_id"`
	Source       string `json:"source"`
	EventType    string `json:"event_type"`
	EntityType   string `json:"entity_type"`
	EntityID     string `json:"entity_id"`
	Status       Status `json:"status"`
	Priority     int    `json:"priority"`
	// Blocked reports that the job waits for an earlier unfinished job of
	// its entity; the jobs of an entity run one at a time, in order.
	Blocked bool `json:"blocked"`
	// Attempt is the number of the job's latest attempt, 0 before the
	// first.
	Attempt int `json:"attempt"`
	// MaxAttempts is how many attempts the job has before it is
	// dead-lettered.
	MaxAttempts int       `json:"max_attempts"`
	NextRetryAt time.Time `json:"next_retry_at"`
	// LeasedBy names the worker holding the job while it is processing,
	// and LeaseExpiresAt when its lease runs out unless renewed.
	LeasedBy       *string    `json:"leased_by,omitempty"`
	LeaseExpiresAt *time.Time `json:"lease_expires_at,omitempty"`
	LastError      *string    `json:"last_error,omitempty"`
	LastErrorCode  *string    `json:"last_error_code,omitempty"`
	Outcome        *Outcome   `json:"outcome,omitempty"`
	OutcomeDetail  *string    `json:"outcome_detail,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	CompletedAt    *time.Time `json:"completed_at,omitempty"`
}

// dbTime is how tds writes a time (see record.DBTime).
func dbTime(t time.Time) time.Time { return record.DBTime(t) }

// jobOf converts a stored job row.
func jobOf(r *store.Job) *Job {
	return &Job{
		ID: r.ID, InboxEventID: r.InboxEventID, Source: r.Source, EventType: r.EventType,
		EntityType: r.EntityType, EntityID: r.EntityID, Status: Status(r.Status), Priority: r.Priority,
		Blocked: r.Blocked, Attempt: r.Attempt, MaxAttempts: r.MaxAttempts, NextRetryAt: r.NextRetryAt.UTC(),
		LeasedBy: r.LeasedBy, LeaseExpiresAt: record.UTCPtr(r.LeaseExpiresAt), LastError: r.LastError,
		LastErrorCode: r.LastErrorCode, Outcome: (*Outcome)(r.Outcome), OutcomeDetail: r.OutcomeDetail,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), CompletedAt: record.UTCPtr(r.CompletedAt),
	}
}

func jobsOf(rows []store.Job) []Job {
	out := make([]Job, len(rows))
	for i := range rows {
		out[i] = *jobOf(&rows[i])
	}
	return out
}

// eventOf converts a stored event row.
func eventOf(r *store.Event) (*InboxEvent, error) {
	ev := &InboxEvent{
		ID: r.ID, Source: r.Source, EventType: r.EventType, EntityType: r.EntityType, EntityID: r.EntityID,
		IdempotencyKey: r.IdempotencyKey, DeliveryID: r.DeliveryID, ContentHash: r.ContentHash,
		Payload: r.Payload, Version: r.Version.UTC(), IsValid: r.IsValid, ValidatedAt: record.UTCPtr(r.ValidatedAt),
		MovedToQueue: r.MovedToQueue, QueuedAt: record.UTCPtr(r.QueuedAt), ProcessedAt: record.UTCPtr(r.ProcessedAt),
		ReceivedAt: r.ReceivedAt.UTC(), Status: EventStatus(r.Status),
	}
	if len(r.Metadata) > 0 {
		if err := json.Unmarshal(r.Metadata, &ev.RequestMetadata); err != nil {
			return nil, fmt.Errorf("tds: inbox event %d: request metadata: %w", r.ID, err)
		}
	}
	ve, err := decodeValidationErrors(r.ValidationErrors)
	if err != nil {
		return nil, fmt.Errorf("tds: inbox event %d: %w", r.ID, err)
	}
	ev.ValidationErrors = ve
	return ev, nil
}

func decodeValidationErrors(b json.RawMessage) (ValidationErrors, error) {
	if len(b) == 0 || string(b) == "null" {
		return nil, nil
	}
	var ve ValidationErrors
	if err := json.Unmarshal(b, &ve); err != nil {
		return nil, fmt.Errorf("validation errors: %w", err)
	}
	return ve, nil
}

func eventsOf(rows []store.Event) ([]InboxEvent, error) {
	out := make([]InboxEvent, len(rows))
	for i := range rows {
		ev, err := eventOf(&rows[i])
		if err != nil {
			return nil, err
		}
		out[i] = *ev
	}
	return out, nil
}
