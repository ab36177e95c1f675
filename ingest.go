package tds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// Group commit: concurrent Process calls share one transaction and one
// commit. Every caller is answered only after the commit that holds its
// event, so the guarantee of a single Process call is unchanged; what is
// shared is the cost of the commit (the WAL flush or SQLite fsync) and the
// round trips, since a batch is stored with one multi-row INSERT per table.

// DefaultIngestBatch is the most events one ingest transaction holds.
const DefaultIngestBatch = 64

// ingestTimeout bounds a batch's transaction, whose callers may have gone.
const ingestTimeout = 30 * time.Second

// ingestReq is one Process call waiting for its batch.
type ingestReq struct {
	ev    *Event
	row   *InboxEvent // built before the batch; nil if ev was rejected
	prio  int
	res   *Result
	err   error
	done  chan struct{} // closed when the batch holding it has ended
	lead  chan struct{} // receives the leadership of batches
	taken bool          // by a batch; guarded by batcher.mu
	gone  bool          // the caller stopped waiting before a batch took it
}

// batcher groups concurrent requests. There is no background goroutine:
// up to inflight callers at a time are leaders, each taking the waiting
// requests as a batch, running it and waking its callers. A leader whose
// own request is done hands the leadership to the oldest waiting request,
// so nobody leads for long and every waiter blocks on channels of its own.
type batcher struct {
	p        *Processor
	max      int
	inflight int

	mu      sync.Mutex
	pending []*ingestReq
	leaders int
}

func newBatcher(p *Processor, max, inflight int) *batcher {
	return &batcher{p: p, max: max, inflight: inflight}
}

func (b *batcher) do(ctx context.Context, r *ingestReq) (*Result, error) {
	r.done = make(chan struct{})
	r.lead = make(chan struct{}, 1)
	b.mu.Lock()
	b.pending = append(b.pending, r)
	if b.leaders < b.inflight {
		b.leaders++
		r.lead <- struct{}{}
	}
	b.mu.Unlock()
	for {
		select {
		case <-r.done:
			return r.res, r.err
		case <-r.lead:
			b.leadUntilDone(ctx, r)
		case <-ctx.Done():
			b.mu.Lock()
			taken := r.taken
			if !taken {
				r.gone = true
				select {
				case <-r.lead: // promoted meanwhile: pass it on
					b.handOffLocked()
				default:
				}
			}
			b.mu.Unlock()
			if !taken {
				return nil, ctx.Err()
			}
			// A batch holds the event: its outcome is the answer.
			<-r.done
			return r.res, r.err
		}
	}
}

// leadUntilDone runs batches until r's is done, then hands the leadership
// on, or gives it up when nothing waits.
func (b *batcher) leadUntilDone(ctx context.Context, r *ingestReq) {
	for {
		batch := b.take()
		if len(batch) > 0 {
			b.run(ctx, batch)
		}
		select {
		case <-r.done:
			b.mu.Lock()
			b.handOffLocked()
			b.mu.Unlock()
			return
		default:
		}
		if len(batch) == 0 {
			// r is in another leader's batch: wait for it there.
			b.mu.Lock()
			b.handOffLocked()
			b.mu.Unlock()
			return
		}
	}
}

// handOffLocked passes a leadership to the oldest request still waiting,
// or retires it.
func (b *batcher) handOffLocked() {
	for _, w := range b.pending {
		if !w.gone && !w.taken {
			select {
			case w.lead <- struct{}{}:
				return
			default: // w leads already
			}
		}
	}
	b.leaders--
}

// take removes up to max waiting requests from the queue, oldest first.
func (b *batcher) take() []*ingestReq {
	b.mu.Lock()
	defer b.mu.Unlock()
	var batch []*ingestReq
	i := 0
	for ; i < len(b.pending) && len(batch) < b.max; i++ {
		r := b.pending[i]
		if r.gone {
			continue
		}
		r.taken = true
		batch = append(batch, r)
	}
	b.pending = append(b.pending[:0], b.pending[i:]...)
	return batch
}

func (b *batcher) run(ctx context.Context, batch []*ingestReq) {
	defer func() {
		for _, r := range batch {
			close(r.done)
		}
	}()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ingestTimeout)
	defer cancel()
	err := b.p.store(ctx, batch)
	if err == nil {
		b.p.afterCommit(batch)
		return
	}
	if len(batch) == 1 || isUnavailable(err) {
		for _, r := range batch {
			r.res, r.err = nil, wrapDBErr("processing event", err)
		}
		return
	}
	// One event spoiled the batch: store each alone so that only the
	// culprit fails.
	for _, r := range batch {
		one := []*ingestReq{r}
		if err := b.p.store(ctx, one); err != nil {
			r.res, r.err = nil, wrapDBErr("processing event", err)
			continue
		}
		b.p.afterCommit(one)
	}
}

// store stores a batch and commits it. On PostgreSQL the insert is one
// statement, run in autocommit; its duplicates are looked up after it
// committed. On SQLite the batch takes a transaction.
func (p *Processor) store(ctx context.Context, batch []*ingestReq) error {
	if isPostgres(p.db) {
		return p.storeBatch(ctx, p.db, batch, false)
	}
	return p.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		return p.storeBatch(ctx, tx, batch, false)
	})
}

// prepare builds the inbox row of r.ev and validates it. It fails only
// for events that cannot be stored at all.
func (p *Processor) prepare(ctx context.Context, ev *Event) (*ingestReq, error) {
	if ev == nil {
		return nil, errNilEvent
	}
	row, err := p.cfg.newInboxEvent(ev)
	if err != nil {
		return nil, err
	}
	now := row.ReceivedAt
	r := &ingestReq{ev: ev, row: row}
	if verr := p.cfg.validator.Validate(ctx, ev); verr != nil {
		var ve ValidationErrors
		if !errors.As(verr, &ve) || len(ve) == 0 {
			ve = ValidationErrors{{Message: verr.Error()}}
		}
		row.ValidationErrors = ve
	} else {
		row.IsValid = true
		row.MovedToQueue = true
		row.QueuedAt = &now
		r.prio = clampPriority(p.cfg.prioritizer.Priority(ctx, ev))
	}
	row.ValidatedAt = &now
	return r, nil
}

// storeBatch stores the batch's events in db (one statement on PostgreSQL,
// see insertPostgres; one INSERT per table in a transaction on SQLite) and
// sets each request's result. Redeliveries, within the batch or of events
// stored before, become duplicates.
//
// With notifyInTx it wakes workers from inside db, the caller's transaction
// (on PostgreSQL the notification is delivered when it commits); otherwise
// the caller wakes them once it has committed.
func (p *Processor) storeBatch(ctx context.Context, db bun.IDB, batch []*ingestReq, notifyInTx bool) error {
	// The first request of each key stores it; later ones are duplicates.
	first := make(map[string]*ingestReq, len(batch))
	rows := make([]*InboxEvent, 0, len(batch))
	for _, r := range batch {
		r.res, r.err = nil, nil
		if _, seen := first[r.row.IdempotencyKey]; !seen {
			first[r.row.IdempotencyKey] = r
			r.row.ID = 0
			rows = append(rows, r.row)
		}
	}
	var stored []storedEvent
	var err error
	if isPostgres(db) {
		stored, err = p.insertPostgres(ctx, db, rows, first)
	} else {
		stored, err = p.insertSQLite(ctx, db, rows, first)
	}
	if err != nil {
		return err
	}
	queued := false
	for _, st := range stored {
		r := first[st.IdempotencyKey]
		r.row.ID = st.ID
		r.res = &Result{EventID: st.ID, IdempotencyKey: st.IdempotencyKey, Queued: r.row.IsValid,
			ValidationErrors: r.row.ValidationErrors}
		if st.JobID != nil {
			r.res.JobID, r.res.Priority = *st.JobID, *st.Priority
			queued = true
		}
	}
	if queued && notifyInTx {
		if err := notifyQueued(ctx, db); err != nil {
			return err
		}
	}
	// Everything else is a duplicate: of a stored event, or of a request
	// earlier in this batch.
	var dupKeys []string
	for _, r := range batch {
		if r.res == nil {
			dupKeys = append(dupKeys, r.row.IdempotencyKey)
		}
	}
	if len(dupKeys) == 0 {
		return nil
	}
	var existing []InboxEvent
	if err := db.NewSelect().Model(&existing).
		Column("id", "idempotency_key", "moved_to_queue", "validation_errors").
		Where("idempotency_key IN (?)", bun.List(dupKeys)).
		Scan(ctx); err != nil {
		return err
	}
	byKey := make(map[string]*Result, len(existing))
	var queuedIDs []int64
	for _, e := range existing {
		byKey[e.IdempotencyKey] = &Result{EventID: e.ID, IdempotencyKey: e.IdempotencyKey, Duplicate: true,
			Queued: e.MovedToQueue, ValidationErrors: e.ValidationErrors}
		if e.MovedToQueue {
			queuedIDs = append(queuedIDs, e.ID)
		}
	}
	if len(queuedIDs) > 0 {
		var jobsOf []Job
		if err := db.NewSelect().Model(&jobsOf).Column("id", "inbox_event_id", "priority").
			Where("inbox_event_id IN (?)", bun.List(queuedIDs)).Scan(ctx); err != nil {
			return err
		}
		byID := make(map[int64]*Result, len(byKey))
		for _, res := range byKey {
			byID[res.EventID] = res
		}
		for _, j := range jobsOf {
			byID[j.InboxEventID].JobID, byID[j.InboxEventID].Priority = j.ID, j.Priority
		}
	}
	for _, r := range batch {
		if r.res != nil {
			continue
		}
		res, ok := byKey[r.row.IdempotencyKey]
		if !ok {
			return errors.New("tds: a conflicting inbox event vanished")
		}
		cp := *res
		r.res = &cp
	}
	return nil
}

// afterCommit runs once a batch's transaction has committed: it wakes the
// workers if the batch queued a job.
func (p *Processor) afterCommit(batch []*ingestReq) {
	for _, r := range batch {
		if r.err == nil && r.res != nil && r.res.JobID != 0 && !r.res.Duplicate {
			p.wake.poke()
			return
		}
	}
}

// waker wakes idle workers after ingest commits. On PostgreSQL it sends
// NOTIFY in a transaction of its own rather than in the ingest transaction:
// PostgreSQL serialises the commits of notifying transactions (a lock held
// until after the commit record is flushed), which would undo group
// commit. At most one NOTIFY per process is in flight; pokes meanwhile
// coalesce into one more. On SQLite the wake-up is an in-process signal.
type waker struct {
	db      *bun.DB
	log     *slog.Logger
	mu      sync.Mutex
	sending bool
	again   bool
}

func (w *waker) poke() {
	if !isPostgres(w.db) {
		_ = notifyQueued(context.Background(), w.db)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sending {
		w.again = true
		return
	}
	w.sending = true
	go w.send()
}

func (w *waker) send() {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := notifyQueued(ctx, w.db); err != nil {
			// Workers poll as well; a lost wake-up costs latency, not data.
			w.log.Debug("tds: waking workers failed", "error", err)
		}
		cancel()
		w.mu.Lock()
		if !w.again {
			w.sending = false
			w.mu.Unlock()
			return
		}
		w.again = false
		w.mu.Unlock()
	}
}

// storedEvent is an inbox event a batch inserted, with its job if queued.
type storedEvent struct {
	ID             int64  `bun:"id"`
	IdempotencyKey string `bun:"idempotency_key"`
	JobID          *int64 `bun:"job_id"`
	Priority       *int   `bun:"priority"`
}

// insertSQLite inserts rows and the jobs of the valid ones with one INSERT
// per table; db must be a transaction.
func (p *Processor) insertSQLite(ctx context.Context, db bun.IDB, rows []*InboxEvent, first map[string]*ingestReq) ([]storedEvent, error) {
	var stored []storedEvent
	if err := db.NewInsert().Model(&rows).
		On("CONFLICT (idempotency_key) DO NOTHING").
		Returning("id, idempotency_key").
		Scan(ctx, &stored); err != nil {
		return nil, err
	}
	var jobs []*Job
	byEvent := make(map[int64]*storedEvent, len(stored))
	for i := range stored {
		st := &stored[i]
		byEvent[st.ID] = st
		r := first[st.IdempotencyKey]
		if r.row.IsValid {
			r.row.ID = st.ID
			jobs = append(jobs, p.cfg.newJob(r.row, r.prio, r.row.ReceivedAt))
		}
	}
	if len(jobs) == 0 {
		return stored, nil
	}
	if err := blockBehindHeads(ctx, db, jobs); err != nil {
		return nil, err
	}
	var queued []struct {
		ID           int64 `bun:"id"`
		InboxEventID int64 `bun:"inbox_event_id"`
		Priority     int   `bun:"priority"`
	}
	if err := db.NewInsert().Model(&jobs).Returning("id, inbox_event_id, priority").Scan(ctx, &queued); err != nil {
		return nil, err
	}
	for _, q := range queued {
		st := byEvent[q.InboxEventID]
		st.JobID, st.Priority = &q.ID, &q.Priority
	}
	return stored, nil
}

// insertPostgres stores a batch on PostgreSQL in one statement: it takes
// the entity locks, inserts the inbox rows and the jobs of the valid ones,
// and returns both. One statement needs no explicit transaction: run in
// autocommit it is one round trip and one commit. The rows travel as one
// array per column, so the statement's text and plan are the same for any
// batch: PostgreSQL parses and plans a few arrays, not a VALUES list of
// hundreds of literals.
//
// The locks serialise the ingestion of an entity, so that its jobs get ids
// in the order their transactions commit. A job is blocked when its entity
// has a head (see entity.go): one earlier in the batch, or one in the table,
// which tds_busy_entities reads with a snapshot taken once the locks are
// held.
func (p *Processor) insertPostgres(ctx context.Context, db bun.IDB, rows []*InboxEvent, first map[string]*ingestReq) ([]storedEvent, error) {
	n := len(rows)
	var (
		sources, eventTypes, entityTypes, entityIDs = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		idemKeys, hashes, payloads, metadata        = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		deliveryIDs, verrs                          = make([]*string, n), make([]*string, n)
		valid, moved                                = make([]bool, n), make([]bool, n)
		modified, received                          = make([]time.Time, n), make([]time.Time, n)
		validatedAt, queuedAt                       = make([]*time.Time, n), make([]*time.Time, n)
		keys                                        = make([]entityKey, n)
		// the jobs of the valid events
		jobKeys                                 []string
		jobPrios, jobAttempts                   []int
		jobAt                                   []time.Time
		jobSources, jobEntityTypes, jobEntities []string
	)
	for i, r := range rows {
		// bun drops NUL characters from array elements without a word;
		// Process refuses them up front, and this keeps it that way.
		if err := refuseNUL(r.Source, r.EventType, r.EntityType, r.SourceEntityID, r.IdempotencyKey,
			deref(r.DeliveryID), r.ContentHash); err != nil {
			return nil, err
		}
		md, err := json.Marshal(r.RequestMetadata)
		if err != nil {
			return nil, err
		}
		if len(r.ValidationErrors) > 0 {
			b, err := json.Marshal(r.ValidationErrors)
			if err != nil {
				return nil, err
			}
			v := string(b)
			verrs[i] = &v
		}
		sources[i], eventTypes[i], entityTypes[i], entityIDs[i] = r.Source, r.EventType, r.EntityType, r.SourceEntityID
		idemKeys[i], hashes[i], payloads[i], metadata[i] = r.IdempotencyKey, r.ContentHash, string(r.Payload), string(md)
		deliveryIDs[i], valid[i], moved[i] = r.DeliveryID, r.IsValid, r.MovedToQueue
		modified[i], received[i], validatedAt[i], queuedAt[i] = r.SourceModifiedAt, r.ReceivedAt, r.ValidatedAt, r.QueuedAt
		keys[i] = eventEntity(r)
		if r.IsValid {
			jobKeys = append(jobKeys, r.IdempotencyKey)
			jobPrios = append(jobPrios, first[r.IdempotencyKey].prio)
			jobAttempts = append(jobAttempts, p.cfg.maxAttemptsFor(r.EntityType))
			jobAt = append(jobAt, r.ReceivedAt)
			jobSources, jobEntityTypes, jobEntities = append(jobSources, r.Source), append(jobEntityTypes, r.EntityType), append(jobEntities, r.SourceEntityID)
		}
	}
	arr := pgdialect.Array
	args := []any{entityLockClass, arr(entityLockKeys(keys)),
		arr(sources), arr(eventTypes), arr(entityTypes), arr(entityIDs), arr(idemKeys), arr(deliveryIDs),
		arr(hashes), arr(payloads), arr(modified), arr(metadata), arr(valid), arr(verrs), arr(validatedAt),
		arr(moved), arr(queuedAt), arr(received)}
	query := insertEventsPG
	if len(jobKeys) > 0 {
		query = insertEventsAndJobsPG
		args = append(args, arr(jobSources), arr(jobEntityTypes), arr(jobEntities),
			arr(jobKeys), arr(jobPrios), arr(jobAttempts), arr(jobAt))
	}
	var stored []storedEvent
	if err := db.NewRaw(query, args...).Scan(ctx, &stored); err != nil {
		return nil, err
	}
	return stored, nil
}

// errNUL refuses a text PostgreSQL cannot store.
var errNUL = fmt.Errorf("%w: a NUL character", ErrInvalidEvent)

func refuseNUL(ss ...string) error {
	for _, s := range ss {
		if strings.IndexByte(s, 0) >= 0 {
			return errNUL
		}
	}
	return nil
}

// insertEventsSQL is the head of insertPostgres's statement: the entity
// locks, then the inbox rows. Joining lk makes every lock come before the
// first insert; unnest keeps the arrays' order, so ids follow the batch's.
const insertEventsSQL = `WITH lk AS (
	SELECT count(pg_advisory_xact_lock(?, k)) AS n FROM unnest(?::int4[]) AS k
), ins AS (
	INSERT INTO tds_inbox_events (source, event_type, entity_type, source_entity_id, idempotency_key,
		delivery_id, content_hash, payload, source_modified_at, request_metadata, is_valid,
		validation_errors, validated_at, moved_to_queue, queued_at, received_at)
	SELECT v.* FROM lk, unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[],
		?::jsonb[], ?::timestamptz[], ?::jsonb[], ?::boolean[], ?::jsonb[], ?::timestamptz[], ?::boolean[],
		?::timestamptz[], ?::timestamptz[]) AS v
	ON CONFLICT (idempotency_key) DO NOTHING
	RETURNING id, idempotency_key, source, event_type, entity_type, source_entity_id
)`

// insertEventsPG stores a batch without valid events.
const insertEventsPG = insertEventsSQL + `
SELECT id, idempotency_key, NULL::bigint AS job_id, NULL::int AS priority FROM ins`

// insertEventsAndJobsPG stores a batch and the jobs of its valid events.
// busy's function takes lk's count so that it runs after the locks.
const insertEventsAndJobsPG = insertEventsSQL + `, busy AS (
	SELECT b.source, b.entity_type, b.source_entity_id
	FROM lk, tds_busy_entities(lk.n, ?::text[], ?::text[], ?::text[]) AS b
), q AS (
	INSERT INTO tds_sync_queue (inbox_event_id, source, event_type, entity_type, source_entity_id,
		status, priority, max_retry_attempts, next_retry_at, created_at, updated_at, blocked)
	SELECT ins.id, ins.source, ins.event_type, ins.entity_type, ins.source_entity_id,
		'pending', j.priority, j.max_attempts, j.at, j.at, j.at,
		row_number() OVER (PARTITION BY ins.entity_type, ins.source_entity_id, ins.source ORDER BY ins.id) > 1
		OR EXISTS (SELECT 1 FROM busy WHERE busy.entity_type = ins.entity_type
			AND busy.source_entity_id = ins.source_entity_id AND busy.source = ins.source)
	FROM ins JOIN unnest(?::text[], ?::int[], ?::int[], ?::timestamptz[]) AS j (idempotency_key, priority, max_attempts, at)
		ON j.idempotency_key = ins.idempotency_key
	ORDER BY ins.id
	RETURNING id, inbox_event_id, priority
)
SELECT ins.id, ins.idempotency_key, q.id AS job_id, q.priority FROM ins LEFT JOIN q ON q.inbox_event_id = ins.id`
