// Package dbtest hands each test an isolated database on a real PostgreSQL
// server or in a SQLite file.
//
// A package that uses PostgresURL must run its tests through Main:
//
//	func TestMain(m *testing.M) { dbtest.Main(m) }
//
// PostgreSQL is looked for once per test binary, in this order:
//
//  1. TDS_TEST_DATABASE_URL: a server (PostgreSQL 13 or later, for DROP DATABASE ... WITH (FORCE))
//     where the URL's user may CREATE and DROP DATABASE. A URL that does not work fails the tests.
//  2. A PostgreSQL container (testcontainers-go) when a Docker engine answers.
//     TDS_TEST_POSTGRES_IMAGE overrides the image (default postgres:15-alpine).
//  3. Local binaries: initdb and pg_ctl on PATH or under /usr/lib/postgresql/*/bin.
//     A throwaway server is started in a temporary directory, as the postgres
//     OS user when the tests run as root.
//
// A way that is found but fails (Docker aside, which falls through to local
// binaries) fails the tests. When none is found, tests that ask for PostgreSQL are skipped, unless the CI
// environment variable is non-empty: then they fail, so that a green CI run
// cannot hide untested code. Which server was used is printed to stderr once.
//
// This package must not import the root package tds: the root package's tests import it.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun/driver/pgdriver"
	"go.uber.org/goleak"
)

// mainCalled records that the test binary runs through Main, which is what
// stops the server; without it a started server would outlive the tests.
var mainCalled atomic.Bool

// Main runs the tests of a package (call from TestMain: `func TestMain(m *testing.M) { dbtest.Main(m) }`)
// and stops any PostgreSQL server the harness started, then looks for
// goroutines the tests leaked (goleak), then calls os.Exit with m.Run's code.
// A failure to stop the server and a leaked goroutine are printed and turn a
// passing run into a failing one.
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "dbtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	// After shutdown, so that the admin pool's goroutines are gone. goleak
	// retries for a while, so goroutines that are ending do not count. No
	// goroutine is ignored: pgdriver, modernc sqlite and the local server
	// leave none behind once every pool is closed. The container path was
	// not run when this was written; should testcontainers-go leave one
	// (its reaper connection ends in TerminateContainer), ignore exactly
	// that function here and say why.
	if err := goleak.Find(); err != nil {
		fmt.Fprintf(os.Stderr, "dbtest: goroutines leaked by the tests: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// PostgresURL returns a postgres:// URL (usable by pgdriver: postgres://user[:pw]@host:port/db?sslmode=disable)
// of a fresh database that belongs to this test only and is dropped at t.Cleanup.
//
// The database is cloned (CREATE DATABASE ... TEMPLATE) from a template that prepare migrates
// once per test binary. There is one such template per binary, built by the first call with a
// non-nil prepare, so every caller in one test binary must pass the same prepare (a different
// function is reported as a test failure). Prepare gets the template's URL and must close
// every connection it opened before returning: PostgreSQL refuses to clone a database that
// has sessions. When prepare is nil the clone is empty (cloned from template0).
//
// When no PostgreSQL can be found it calls t.Skip, except when the CI environment
// variable is non-empty: then t.Fatal.
func PostgresURL(t testing.TB, prepare func(ctx context.Context, url string) error) string {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("dbtest: PostgresURL needs `func TestMain(m *testing.M) { dbtest.Main(m) }` in this package, so that the server is stopped")
	}
	s, err := getServer()
	if errors.Is(err, errNoServer) {
		msg := fmt.Sprintf("dbtest: %v; set TDS_TEST_DATABASE_URL, start a Docker engine, or install PostgreSQL (initdb and pg_ctl)", err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " (failing rather than skipping because CI is set)")
		}
		t.Skip(msg)
	}
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}

	ctx := t.Context()
	source := "template0"
	if prepare != nil {
		if source, err = s.template(ctx, prepare); err != nil {
			t.Fatalf("dbtest: %v", err)
		}
	}
	name := fmt.Sprintf("%s_%d", s.prefix, s.seq.Add(1))
	if err := s.clone(ctx, name, source); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	t.Cleanup(func() {
		// The test's context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.drop(ctx, name); err != nil {
			t.Errorf("dbtest: %v", err)
		}
	})
	return s.dbURL(name)
}

// SQLiteURL returns "sqlite:" + a path to a database file in t.TempDir().
// The file does not exist yet; t.TempDir removes it after the test.
func SQLiteURL(t testing.TB) string {
	t.Helper()
	return "sqlite:" + filepath.Join(t.TempDir(), "test.db")
}

// errNoServer means that no way to get a PostgreSQL server was found:
// a reason to skip, unlike a server that was found but failed.
var errNoServer = errors.New("no PostgreSQL server found")

// server is the PostgreSQL server of this test binary.
type server struct {
	how      string  // what was used, for the log line
	adminURL string  // URL of the database the admin connection uses
	admin    *sql.DB // creates and drops the databases
	external bool    // not ours: drop what we created instead of stopping it
	stop     func() error

	prefix string       // of every database name this binary creates
	seq    atomic.Int64 // numbers the per-test databases
	// cloneMu serialises CREATE DATABASE: PostgreSQL refuses to copy a template
	// that another session (such as a concurrent clone) is using.
	cloneMu sync.Mutex

	tplOnce sync.Once
	tplFn   uintptr // code pointer of the prepare that built the template
	tplName string
	tplErr  error
}

var (
	findOnce sync.Once
	theSrv   *server
	findErr  error
)

// getServer finds or starts the server on first use and logs which one it is.
func getServer() (*server, error) {
	findOnce.Do(func() {
		start := time.Now()
		theSrv, findErr = find()
		switch {
		case findErr == nil:
			fmt.Fprintf(os.Stderr, "dbtest: using %s (ready in %s)\n", theSrv.how, time.Since(start).Round(time.Millisecond))
		case errors.Is(findErr, errNoServer):
			fmt.Fprintf(os.Stderr, "dbtest: using no PostgreSQL: %v\n", findErr)
		default:
			fmt.Fprintf(os.Stderr, "dbtest: PostgreSQL failed: %v\n", findErr)
		}
	})
	return theSrv, findErr
}

// find tries each way to get a server in the documented order.
func find() (*server, error) {
	if u := os.Getenv("TDS_TEST_DATABASE_URL"); u != "" {
		// An explicit URL that does not work is an error, never a reason to look elsewhere.
		s, err := newServer(u, "TDS_TEST_DATABASE_URL ("+redact(u)+")", nil)
		if err != nil {
			return nil, fmt.Errorf("TDS_TEST_DATABASE_URL: %w", err)
		}
		s.external = true
		return s, nil
	}

	var errs []error
	engine, dockerErr := dockerEngine()
	if engine {
		s, err := startContainer()
		if err == nil {
			return s, nil
		}
		// Docker is there but the container did not come up: local binaries may still do.
		errs = append(errs, fmt.Errorf("docker: %w", err))
	}

	s, err := startLocal()
	if err == nil {
		if !engine {
			s.how += "; no Docker engine (" + firstLine(dockerErr) + ")"
		}
		return s, nil
	}
	if !errors.Is(err, errNoServer) || len(errs) > 0 {
		return nil, errors.Join(append(errs, err)...)
	}
	return nil, fmt.Errorf("no Docker engine (%s); %w", firstLine(dockerErr), err)
}

// newServer opens the admin connection to adminURL and checks that it works.
func newServer(adminURL, how string, stop func() error) (*server, error) {
	db, err := openDB(adminURL)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("connecting to %s: %w", redact(adminURL), err)
	}
	return &server{
		how:      how,
		adminURL: adminURL,
		admin:    db,
		stop:     stop,
		prefix:   fmt.Sprintf("tds_t_%d_%s", os.Getpid(), randHex(3)),
	}, nil
}

// openDB opens a pool on a pgdriver URL; pgdriver panics on a malformed one.
func openDB(dsn string) (db *sql.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bad URL %s: %v", redact(dsn), r)
		}
	}()
	return sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn))), nil
}

// template builds the binary's template database on first use and returns its name.
func (s *server) template(ctx context.Context, prepare func(ctx context.Context, url string) error) (string, error) {
	fn := reflect.ValueOf(prepare).Pointer()
	s.tplOnce.Do(func() {
		s.tplFn = fn
		s.tplName = s.prefix + "_tpl"
		if err := s.clone(ctx, s.tplName, "template0"); err != nil {
			s.tplErr = err
			return
		}
		if err := prepare(ctx, s.dbURL(s.tplName)); err != nil {
			s.tplErr = fmt.Errorf("preparing the template database: %w", err)
			dropCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = s.drop(dropCtx, s.tplName)
		}
	})
	if s.tplErr != nil {
		return "", s.tplErr
	}
	if fn != s.tplFn {
		return "", errors.New("PostgresURL got a different prepare func than the one that built this test binary's template; all callers in one binary must pass the same one")
	}
	return s.tplName, nil
}

// clone creates database name as a copy of source.
func (s *server) clone(ctx context.Context, name, source string) error {
	s.cloneMu.Lock()
	defer s.cloneMu.Unlock()
	_, err := s.admin.ExecContext(ctx, "CREATE DATABASE "+quoteIdent(name)+" TEMPLATE "+quoteIdent(source))
	if err != nil {
		err = fmt.Errorf("creating database %s from %s: %w", name, source, err)
		if strings.Contains(err.Error(), "being accessed by other users") {
			err = fmt.Errorf("%w (did prepare close every connection it opened?)", err)
		}
	}
	return err
}

// drop removes database name, ending any session still connected to it.
func (s *server) drop(ctx context.Context, name string) error {
	if _, err := s.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(name)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("dropping database %s: %w", name, err)
	}
	return nil
}

// dbURL is the admin URL pointing at database name.
func (s *server) dbURL(name string) string {
	u, err := url.Parse(s.adminURL)
	if err != nil { // the admin URL has already been used to connect
		panic(fmt.Sprintf("dbtest: admin URL: %v", err))
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

// shutdown stops the server after the tests, or drops the template from a server that is not ours.
func shutdown() error {
	// Run the once so that no server can start after this point.
	findOnce.Do(func() { findErr = errors.New("tests have finished") })
	s := theSrv
	if s == nil {
		return nil
	}
	var errs []error
	if s.external && s.tplName != "" && s.tplErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		errs = append(errs, s.drop(ctx, s.tplName))
		cancel()
	}
	errs = append(errs, s.admin.Close())
	if s.stop != nil {
		errs = append(errs, s.stop())
	}
	return errors.Join(errs...)
}

func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// redact hides the password of a URL for logs and errors.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func firstLine(err error) string {
	if err == nil {
		return "<nil>"
	}
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}

// randHex keeps the database names of two runs with the same pid apart
// on a shared server.
func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}
