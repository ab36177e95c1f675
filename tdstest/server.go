package tdstest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun/driver/pgdriver"
)

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
	tplName string // the migrated template, built on first use
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
			fmt.Fprintf(os.Stderr, "tdstest: using %s (ready in %s)\n", theSrv.how, time.Since(start).Round(time.Millisecond))
		case errors.Is(findErr, errNoServer):
			fmt.Fprintf(os.Stderr, "tdstest: using no PostgreSQL: %v\n", findErr)
		default:
			fmt.Fprintf(os.Stderr, "tdstest: PostgreSQL failed: %v\n", findErr)
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

// template builds the binary's migrated template database on first use
// and returns its name.
func (s *server) template(ctx context.Context) (string, error) {
	s.tplOnce.Do(func() {
		s.tplName = s.prefix + "_tpl"
		if err := s.clone(ctx, s.tplName, "template0"); err != nil {
			s.tplErr = err
			return
		}
		if err := migrateURL(ctx, s.dbURL(s.tplName)); err != nil {
			s.tplErr = fmt.Errorf("migrating the template database: %w", err)
			dropCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = s.drop(dropCtx, s.tplName)
		}
	})
	return s.tplName, s.tplErr
}

// clone creates database name as a copy of source.
func (s *server) clone(ctx context.Context, name, source string) error {
	s.cloneMu.Lock()
	defer s.cloneMu.Unlock()
	_, err := s.admin.ExecContext(ctx, "CREATE DATABASE "+quoteIdent(name)+" TEMPLATE "+quoteIdent(source))
	if err != nil {
		err = fmt.Errorf("creating database %s from %s: %w", name, source, err)
		if strings.Contains(err.Error(), "being accessed by other users") {
			err = fmt.Errorf("%w (is a connection to the template still open?)", err)
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
		panic(fmt.Sprintf("tdstest: admin URL: %v", err))
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
	errs := []error{stopBouncer()}
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
