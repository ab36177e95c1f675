package tds

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/tdscore/tds/internal/canonical"
	"github.com/tdscore/tds/internal/record"
	"github.com/tdscore/tds/internal/store"
)

// Redacted replaces, in stored request metadata, the value of every header
// not stored in clear (see [WithRedactHeaders]) and of every secret query
// parameter of the URL.
const Redacted = "[REDACTED]"

// storedHeaders are the only headers whose values are stored in clear,
// known to carry no credential; every other header is stored with its
// name and the value [Redacted]. An allowlist, because no list of words
// finds every credential (Cf-Access-Jwt-Assertion, X-Amzn-Oidc-Data,
// X-Ms-Client-Principal, X-Otp, ...). The header of WithDeliveryIDHeader
// is stored in clear too.
var storedHeaders = map[string]bool{
	"Accept": true, "Accept-Encoding": true, "Accept-Language": true,
	"Content-Encoding": true, "Content-Length": true, "Content-Type": true,
	"User-Agent": true, "Via": true, "Forwarded": true, "X-Forwarded-For": true,
	"X-Forwarded-Host": true, "X-Forwarded-Port": true, "X-Forwarded-Proto": true,
	"X-Real-Ip": true, "X-Request-Id": true, "X-Correlation-Id": true,
	"Traceparent": true, "Tracestate": true,
	"Webhook-Id": true, "Webhook-Timestamp": true, // Standard Webhooks' id and time, signed
}

// defaultRedactedHeaders never reach the database, even were one added to
// storedHeaders.
var defaultRedactedHeaders = []string{
	"X-Webhook-Key", "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie",
	"X-Api-Key", "X-Zoho-Webhook-Signature", "Webhook-Signature", "X-Hub-Signature",
	"X-Hub-Signature-256",
}

// secretHeaderWords mark a query parameter as secret when its name
// contains one, in any case: ?access_token=, ?api_key=, ?sig=, ?hmac=,
// ?pass=. The rule is broad on purpose: a parameter redacted wrongly costs
// a little debugging, a secret stored in clear text costs a rotation.
// (Headers are stored by an allowlist instead: storedHeaders.)
var secretHeaderWords = []string{
	"key", "auth", "token", "secret", "sig", "hmac", "pass", "pwd", "credential", "session", "cookie",
	"jwt", "bearer", "otp", "sid",
}

// isSecretName reports whether name contains one of secretHeaderWords.
func isSecretName(name string) bool {
	lower := strings.ToLower(name)
	for _, w := range secretHeaderWords {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}

// redactURL returns the request URI u with the value of every query
// parameter whose name is secret (see isSecretName) replaced by
// [Redacted]. The other parameters keep their text and order. A URI that
// does not parse is dropped: its secrets could not be found.
func redactURL(u string) string {
	if u == "" {
		return ""
	}
	parsed, err := url.Parse(u)
	if err != nil {
		return ""
	}
	if parsed.RawQuery == "" && !parsed.ForceQuery {
		return u
	}
	// Parameters are separated by '&' and, in older servers, ';': a
	// secret hidden behind either is found.
	var b strings.Builder
	q := parsed.RawQuery
	for {
		end := strings.IndexAny(q, "&;")
		p := q
		if end >= 0 {
			p = q[:end]
		}
		rawName, _, _ := strings.Cut(p, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			name = rawName
		}
		if isSecretName(name) || isSecretName(rawName) {
			p = rawName + "=" + Redacted
		}
		b.WriteString(p)
		if end < 0 {
			break
		}
		b.WriteByte(q[end])
		q = q[end+1:]
	}
	parsed.RawQuery = b.String()
	parsed.Fragment, parsed.RawFragment = "", ""
	return parsed.String()
}

// Inbox stores received webhook events in tds_inbox_events. Its methods are
// safe for concurrent use.
type Inbox struct {
	db  bun.IDB
	st  store.Store
	cfg *config
}

// NewInbox returns an Inbox on db. opts are the options that apply to
// NewInbox; see [Option].
func NewInbox(db *bun.DB, opts ...Option) (*Inbox, error) {
	if db == nil {
		return nil, errors.New("tds: NewInbox: db is nil")
	}
	st, err := store.For(db)
	if err != nil {
		return nil, err
	}
	cfg, err := newConfig(forInbox, opts)
	if err != nil {
		return nil, err
	}
	return newInbox(db, st, cfg), nil
}

// newInbox returns an Inbox on db configured by cfg, which it may share
// with others (see NewHandler).
func newInbox(db *bun.DB, st store.Store, cfg *config) *Inbox {
	return &Inbox{db: db, st: st, cfg: cfg}
}

// WithTx returns a copy of the Inbox whose methods run in tx.
func (in *Inbox) WithTx(tx bun.Tx) *Inbox {
	return &Inbox{db: tx, st: in.st, cfg: in.cfg}
}

// idempotencyKey returns the key that makes ev a duplicate of another
// delivery: source:entity_type:entity_id:event_type, then "d:" and the
// sender's delivery id when ev has one, else "h:" and the content hash. So
// a redelivery (same delivery id, or same content) is a duplicate while a
// changed payload for the same entity is a new event. A Standard Webhooks
// message is keyed source:d:webhook-id alone: its signature covers the id
// and the body but not the URL, which gives the entity and event types, so
// the message re-sent to another route or with another ?event= is the same
// event. Colons and percent signs inside the parts are escaped, so
// different events never share a key.
func idempotencyKey(source string, ev *Event, contentHash string) string {
	if ev.Source != "" {
		source = ev.Source
	}
	var b strings.Builder
	if ev.DeliveryID != "" && ev.Metadata.Verifier == VerifierStandardWebhooks {
		b.WriteString(escapeKeyPart(source))
		b.WriteString(":d:")
		b.WriteString(escapeKeyPart(ev.DeliveryID))
		return b.String()
	}
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

// redactHeaders copies h with the values of the headers not stored in
// clear (see isSecretHeader) replaced by [Redacted], their names kept.
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

// isSecretHeader reports whether a header's value is kept out of the
// database: every header but storedHeaders and the delivery id header,
// and those named by WithRedactHeaders in any case.
func (c *config) isSecretHeader(canonical string) bool {
	if c.redact[canonical] {
		return true
	}
	return !storedHeaders[canonical] && canonical != c.handler.deliveryIDHeader
}

// maxStoredHeaderBytes bounds the request headers stored with an event:
// the sum of the lengths of their names and values, 8 KiB.
const maxStoredHeaderBytes = 8 << 10

// capHeaders keeps h within maxStoredHeaderBytes by dropping its largest
// headers first (ties by name), and returns the names it dropped, sorted.
// h is not modified.
func capHeaders(h map[string][]string) (map[string][]string, []string) {
	size := func(name string) int {
		n := len(name)
		for _, v := range h[name] {
			n += len(v)
		}
		return n
	}
	total := 0
	for name := range h {
		total += size(name)
	}
	if total <= maxStoredHeaderBytes {
		return h, nil
	}
	names := slices.Collect(maps.Keys(h))
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(size(b), size(a)), cmp.Compare(a, b))
	})
	var dropped []string
	for _, name := range names {
		if total <= maxStoredHeaderBytes {
			break
		}
		total -= size(name)
		dropped = append(dropped, name)
	}
	out := make(map[string][]string, len(h)-len(dropped))
	for name, vs := range h {
		if !slices.Contains(dropped, name) {
			out[name] = vs
		}
	}
	slices.Sort(dropped)
	return out, dropped
}

// checkIdentity refuses, with ErrInvalidEvent, an event without its
// identity (event type, entity type, entity id) or with a part no
// database stores alike.
func checkIdentity(ev *Event) error {
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
		return fmt.Errorf("%w: missing %s", ErrInvalidEvent, strings.Join(missing, ", "))
	}
	for _, f := range []struct{ name, v string }{
		{"source", ev.Source}, {"event_type", ev.EventType}, {"entity_type", ev.EntityType},
		{"entity_id", ev.EntityID}, {"delivery id", ev.DeliveryID},
	} {
		// The same answer on every database: PostgreSQL refuses NUL and
		// invalid UTF-8 in text, and its columns are bounded.
		if strings.ContainsRune(f.v, 0) {
			return fmt.Errorf("%w: %s holds a NUL character", ErrInvalidEvent, f.name)
		}
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidEvent, f.name)
		}
		if len(f.v) > record.MaxIdentityBytes {
			return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalidEvent, f.name, record.MaxIdentityBytes)
		}
	}
	return nil
}

// newInboxEvent builds the row for ev of type et (nil when unknown): hash,
// key, version, redacted metadata. It fails with ErrInvalidEvent when ev
// lacks its identity.
func (c *config) newInboxEvent(ev *Event, et *EntityType) (*store.Event, error) {
	if err := checkIdentity(ev); err != nil {
		return nil, err
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
	headers, dropped := capHeaders(c.redactHeaders(ev.Metadata.Headers))
	metadata, err := json.Marshal(RequestMetadata{
		Headers:           headers,
		DroppedHeaders:    dropped,
		URL:               redactURL(ev.Metadata.URL),
		ClientIP:          ev.Metadata.ClientIP,
		SignatureVerified: ev.Metadata.SignatureVerified,
		Verifier:          ev.Metadata.Verifier,
	})
	if err != nil {
		return nil, fmt.Errorf("tds: encoding request metadata: %w", err)
	}
	row := &store.Event{
		Source:         source,
		EventType:      ev.EventType,
		EntityType:     ev.EntityType,
		EntityID:       ev.EntityID,
		IdempotencyKey: idempotencyKey(source, ev, hash),
		ContentHash:    hash,
		Payload:        canon,
		Version:        dbTime(eventVersion(canon, et.versionField(), received)),
		Metadata:       metadata,
		ReceivedAt:     received,
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
	row, err := in.cfg.newInboxEvent(ev, in.cfg.typeOf(ev))
	if err != nil {
		return nil, false, err
	}
	got, inserted, err := in.st.InsertEvent(ctx, in.db, row)
	if err != nil {
		return nil, false, wrapDBErr("storing inbox event", err)
	}
	out, err := eventOf(got)
	if err != nil {
		return nil, false, err
	}
	return out, !inserted, nil
}

// Get returns the inbox event with the given id, or an error wrapping
// [ErrNotFound].
func (in *Inbox) Get(ctx context.Context, id int64) (*InboxEvent, error) {
	row, err := in.st.GetEvent(ctx, in.db, id)
	if errors.Is(err, store.ErrNoRows) {
		return nil, fmt.Errorf("%w: inbox event %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, wrapDBErr("reading inbox event", err)
	}
	return eventOf(row)
}

// MarkValidated records the outcome of validating event id: valid when errs
// is empty, otherwise invalid with every error kept.
func (in *Inbox) MarkValidated(ctx context.Context, id int64, errs ValidationErrors) error {
	var b json.RawMessage
	if len(errs) > 0 {
		var err error
		if b, err = json.Marshal(errs); err != nil {
			return fmt.Errorf("tds: encoding validation errors: %w", err)
		}
	}
	ok, err := in.st.MarkValidated(ctx, in.db, id, b, dbTime(in.cfg.now()))
	return updatedOne(ok, err, id, "marking inbox event validated")
}

// MarkQueued records that event id was moved to the sync queue.
func (in *Inbox) MarkQueued(ctx context.Context, id int64) error {
	ok, err := in.st.MarkQueued(ctx, in.db, id, dbTime(in.cfg.now()))
	return updatedOne(ok, err, id, "marking inbox event queued")
}

// MarkProcessed records that event id is done with, by setting its
// processed_at: given up on, or handled outside the queue. An event whose
// job completes is processed without it (see [InboxEvent.ProcessedAt]).
// Processed events are no longer listed as unprocessed and become
// eligible for cleanup.
func (in *Inbox) MarkProcessed(ctx context.Context, id int64) error {
	ok, err := in.st.MarkProcessed(ctx, in.db, id, dbTime(in.cfg.now()))
	return updatedOne(ok, err, id, "marking inbox event processed")
}

func updatedOne(ok bool, err error, id int64, doing string) error {
	if err != nil {
		return wrapDBErr(doing, err)
	}
	if !ok {
		return fmt.Errorf("tds: %s: %w: inbox event %d", doing, ErrNotFound, id)
	}
	return nil
}

// ListUnprocessed returns up to limit events not yet processed, oldest
// first, valid or not: events without processed_at whose job, if any, is
// not completed.
func (in *Inbox) ListUnprocessed(ctx context.Context, limit int) ([]InboxEvent, error) {
	no := false
	rows, err := in.st.ListEvents(ctx, in.db, store.EventFilter{Processed: &no, Limit: limit, Oldest: true})
	if err != nil {
		return nil, wrapDBErr("listing unprocessed inbox events", err)
	}
	return eventsOf(rows)
}

// hasContentHash reports whether any stored event has the content hash.
func (in *Inbox) hasContentHash(ctx context.Context, hash string) (bool, error) {
	ok, err := in.st.HasContentHash(ctx, in.db, hash)
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
	c, err := in.st.InboxStats(ctx, in.db)
	if err != nil {
		return nil, wrapDBErr("counting inbox events", err)
	}
	return &InboxStats{Total: c.Total, Valid: c.Valid, Invalid: c.Total - c.Valid, Queued: c.Queued,
		Unprocessed: c.Unprocessed, OldestAt: c.OldestAt, NewestAt: c.NewestAt}, nil
}

// eventVersion is data's field when it holds a time that parses, else
// received.
func eventVersion(data json.RawMessage, field string, received time.Time) time.Time {
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) == nil {
		if v, ok := m[field]; ok && !record.IsNull(v) {
			if t, err := record.ParseTime(v); err == nil {
				return t
			}
		}
	}
	return received
}
