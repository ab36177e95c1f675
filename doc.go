// Package tds makes webhook-driven data sync between a SaaS ERP (Zoho
// Books, Zoho Inventory) and a local database boring and safe.
//
// A Go backend passes its *bun.DB, mounts tds' [Handler] in its own router
// and supplies a [Syncer]; a [Worker] does the rest:
//
//	db, err := tds.Open(ctx, "sqlite:tds.db") // or "postgres://user:pw@host/db"
//	if err != nil { ... }
//	if err := tds.Migrate(ctx, db); err != nil { ... }
//
//	h, err := tds.NewHandler(db, tds.WithWebhookKeys(key)) // POST /webhooks/{route}, /health
//	if err != nil { ... }
//	defer h.Close()
//	mux.Handle("/zoho/", http.StripPrefix("/zoho", h))
//
//	w, err := tds.NewWorker(db, tds.SyncFunc(func(ctx context.Context, tx bun.Tx, job *tds.SyncJob) error {
//		return upsert(ctx, tx, job) // your tables, in tds' transaction
//	}))
//	if err != nil { ... }
//	go w.Run(ctx)
//
// # Ingest
//
// Every webhook is authenticated (a shared key, Zoho's HMAC signature or
// Standard Webhooks, see [WithWebhookKeys], [WithZohoSecret],
// [WithStandardWebhooksSecrets]), size-limited and parsed by the
// [Handler], then handed to a [Processor], which stores it in the [Inbox]
// (table tds_inbox_events) with an idempotency key, a content hash and
// redacted request metadata, validates it and queues it, in one
// transaction: the sender gets its 2xx only after that transaction
// commits. An identical redelivery is a duplicate (200, nothing stored); a
// changed payload for the same entity is a new event; an invalid event is
// stored with its errors and not queued (422). Concurrent webhooks share
// commits ([WithIngestBatch]). [Processor.ProcessTx] ingests inside the
// caller's own transaction.
//
// # Work
//
// A [Worker] claims jobs from the [Queue] (table tds_sync_queue), any
// number of Workers in any number of processes sharing one database, and
// runs the [Syncer] on each in a transaction that completes the job: an
// event's effect is applied once. The jobs of one entity run one at a
// time, in order. A failed attempt is retried with exponential backoff and
// jitter ([RetryPolicy], [Permanent], [RetryAfter]); a job out of attempts
// is dead-lettered, kept with its history until an operator retries or
// discards it ([Queue.RetryDeadLetter], [Queue.DiscardDeadLetter]). One
// Worker at a time leads housekeeping (expired leases, retention) and runs
// the [LeaderTask]s it is given. [MirrorSyncer] is a ready Syncer that
// upserts each record into a mirror table.
//
// # HTTP
//
// [Handler] is an [http.Handler] on a standard [http.ServeMux]:
//
//	POST /webhooks/{route}   a webhook for the registry's route
//	GET  /health             database ping and cached queue counts
//	GET  /health/live        the process answers
//	GET  /health/ready       database reachable and schema current
//
// It serves nothing else: the operator console is package tdsui's
// handler, mounted beside it.
//
// # Plug-ins
//
// Entity types are a [Registry] of [EntityType]s ([ZohoRegistry] is the
// preset). Behaviour plugs in through one-method interfaces with func
// adapters: [Validator] ([DefaultValidator]), [Prioritizer]
// ([DefaultPrioritizer]: invoices first, price lists last), [Syncer] (and
// [BatchSyncer]), [RetryPolicy]. Observers report what happened, for
// metrics and traces: [WithWebhookObserver], [WithBatchObserver],
// [WithObserver].
//
// # Options
//
// Constructors take options of one type, [Option], and each option knows
// the constructors it applies to; its documentation names them ("Applies to
// [NewWorker]."). An option given to any other constructor is an error at
// construction naming both ("tds: WithConcurrency does not apply to
// NewQueue"), never silently ignored. The options are not typed per
// constructor as bun's are, because several apply to several constructors
// ([WithRegistry], [WithClock], [WithLogger]) and per-constructor types
// would multiply them; one type lets a host keep one []Option per
// component. Defaults are exported constants (DefaultX); a bad value is an
// error naming the option.
//
// # Subpackages
//
// What a host may leave out lives beside this package, each importing it,
// never the reverse:
//
//   - tdsui: the operator console, an admin JSON API and an HTML
//     dashboard, as one http.Handler mounted beside [Handler];
//   - tdsreconcile: reconciliation against Zoho's API, repairing what
//     webhooks missed through a [Processor]; its schedule is a
//     [LeaderTask];
//   - tdsalert: alert rules and notifiers; evaluation is a [LeaderTask];
//   - tdsprom: Prometheus metrics over the observers;
//   - tdstest: a real database per test on both dialects, a webhook
//     sender, a Syncer conformance suite and a fake Zoho.
//
// PostgreSQL (bun's pgdialect and pgdriver) is the production store,
// shared by any number of processes; SQLite (modernc.org/sqlite, pure Go)
// is the embedded default. [Open] turns a URL into a ready *bun.DB for
// either.
package tds
