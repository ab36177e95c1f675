// Package tdstest is a test kit for programs that embed tds: real databases
// for each test, webhooks sent through a [tds.Handler] signed as a sender
// would sign them, a [tds.Worker] run until its queue is empty, a check
// of a [tds.Syncer] against the Syncer contract, and a fake Zoho API for a
// reconciler (package tdsreconcile). tds tests itself with it.
//
// # Databases
//
// [Postgres] and [SQLite] hand each test a fresh database with the tds schema
// ([tds.Migrate]), closed and dropped when the test ends; [PostgresURL] and
// [SQLiteURL] give its URL instead, for code that opens its own pool or a
// child process. A package whose tests use PostgreSQL runs them through
// [Main]:
//
//	func TestMain(m *testing.M) { tdstest.Main(m) }
//
// PostgreSQL is looked for once per test binary, in this order:
//
//  1. TDS_TEST_DATABASE_URL: a server (PostgreSQL 13 or later, for DROP
//     DATABASE ... WITH (FORCE)) where the URL's user may CREATE and DROP
//     DATABASE. A URL that does not work fails the tests.
//  2. A PostgreSQL container (testcontainers-go) when a Docker engine
//     answers. TDS_TEST_POSTGRES_IMAGE overrides the image (default
//     postgres:15-alpine).
//  3. Local binaries: initdb and pg_ctl on PATH or under
//     /usr/lib/postgresql/*/bin. A throwaway server is started in a
//     temporary directory, as the postgres OS user when the tests run as
//     root.
//
// A way that is found but fails (Docker aside, which falls through to local
// binaries) fails the tests. When none is found, tests that ask for
// PostgreSQL are skipped, unless the CI environment variable is non-empty:
// then they fail, so that a green CI run cannot hide untested code. Which
// server was used is printed to stderr once. The server is migrated once
// into a template database, and each test gets a clone of it (CREATE
// DATABASE ... TEMPLATE), which takes milliseconds.
//
// # Webhooks, workers and Syncers
//
// [Send] posts one webhook through a Handler, signed with a shared key
// ([WebhookKey]), Zoho's HMAC ([ZohoSignature]) or Standard Webhooks
// ([StandardWebhooks]), and returns the decoded [Answer]; through your own
// router, [Prefix] names where it mounts the Handler, and a 404 that the
// Handler did not answer fails the test. [Drain] runs a
// Worker until no job is left to run and returns a [Report] of what became
// of each job. [SyncerConformance] checks a Syncer: a redelivered job changes
// nothing, an older version never overwrites a newer one, a delete is
// applied, a rolled-back job leaves nothing behind, and writes go through
// the job's transaction only.
//
// # A fake Zoho
//
// [NewZoho] starts a fake of Zoho's token endpoint and Books/Inventory API
// for a test; [Zoho.API] is the tdsreconcile.ZohoAPI that reaches it:
//
//	zoho := tdstest.NewZoho(t)
//	zoho.Put("items", map[string]any{"item_id": "4600", "name": "Pump",
//		"last_modified_time": "2026-11-02T10:00:00+0100"})
//	rc, err := tdsreconcile.New(db, proc, zoho.API()) // proc: your *tds.Processor
//
// A run then finds the item missing locally and queues it, and [Drain]
// applies it. [Zoho.Fail], [Zoho.SetDown] and [Zoho.ExpireTokens] inject
// rate limits, outages and revoked tokens; [Zoho.Stats] counts the calls.
// The fake follows Zoho's documentation, and assumptions where it is
// silent (docs/zoho-api.md in the tds repository lists which).
//
// # Dependencies
//
// tdstest is a package of the tds module, not a module of its own. Go
// compiles only the packages a program imports, so a program that imports
// tds and not tdstest builds neither testcontainers-go nor any of its
// dependencies (TestImportingTDSBuildsNoContainers checks this with go
// list -deps). A module of its own would add a second version to keep in
// step with tds for no gain in what a program builds, and tds' own tests,
// which use tdstest, would need a replace directive to test unreleased
// code. testcontainers-go does appear in the go.mod of tds, so a module
// that requires tds lists it in its module graph (go.sum), but downloads
// and compiles it only when one of its packages imports tdstest.
package tdstest
