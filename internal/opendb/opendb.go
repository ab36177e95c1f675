// Package opendb turns a database URL into a *bun.DB: PostgreSQL through
// pgdriver and pgdialect, SQLite through modernc.org/sqlite and
// sqlitedialect.
//
// pgdriver panics on a URL it cannot parse, and url.Parse's errors repeat
// the whole URL, password included. So a URL is checked here first, every
// error is built from a redacted form of it, and a panic that still
// escapes pgdriver becomes an error.
package opendb

import (
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/pgdriver"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Open returns a *bun.DB for rawURL with its pool configured; it does not
// connect. PostgreSQL gets a pool of 32 connections. SQLite gets one
// connection, WAL, foreign keys, synchronous=FULL, IMMEDIATE transactions
// and busyTimeout; a SQLite file that does not exist yet is created with
// mode 0600 (see createPrivate). Errors start with "tds: opening" and never contain the
// URL's password.
func Open(rawURL string, busyTimeout time.Duration) (*bun.DB, error) {
	switch {
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		sqldb, err := openPostgres(rawURL)
		if err != nil {
			return nil, fmt.Errorf("tds: opening %q: %w", Redact(rawURL), err)
		}
		sqldb.SetMaxOpenConns(32)
		sqldb.SetMaxIdleConns(32)
		sqldb.SetConnMaxIdleTime(5 * time.Minute)
		return bun.NewDB(sqldb, pgdialect.New()), nil
	case strings.HasPrefix(rawURL, "sqlite:"), strings.HasPrefix(rawURL, "file:"):
		dsn, err := sqliteDSN(rawURL, busyTimeout)
		if err != nil {
			return nil, fmt.Errorf("tds: opening %q: %w", rawURL, err)
		}
		if err := createPrivate(dsn); err != nil {
			return nil, fmt.Errorf("tds: opening %q: %w", rawURL, err)
		}
		sqldb, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, fmt.Errorf("tds: opening SQLite: %w", err)
		}
		sqldb.SetMaxOpenConns(1)
		sqldb.SetMaxIdleConns(1)
		sqldb.SetConnMaxLifetime(0)
		return bun.NewDB(sqldb, sqlitedialect.New()), nil
	case strings.HasPrefix(rawURL, "postgres:"), strings.HasPrefix(rawURL, "postgresql:"):
		return nil, fmt.Errorf("tds: opening %q: want postgres://user:password@host:port/dbname (with the two slashes)", Redact(rawURL))
	default:
		return nil, fmt.Errorf("tds: opening %q: want a postgres://, sqlite: or file: URL", Redact(rawURL))
	}
}

// sslModes are the sslmode values pgdriver accepts.
var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// durationParams are the query parameters pgdriver reads as durations.
var durationParams = []string{"timeout", "dial_timeout", "connect_timeout", "read_timeout", "write_timeout"}

// openPostgres checks a postgres:// URL, then hands it to pgdriver. Its
// errors name what is wrong and quote nothing from the user part.
func openPostgres(rawURL string) (*sql.DB, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, parseError(err)
	}
	if u.Fragment != "" || strings.Contains(rawURL, "#") {
		return nil, errors.New("the URL holds a #: percent-encode it (%23) in the password")
	}
	var password string
	if u.User != nil {
		if u.User.Username() == "" {
			return nil, errors.New("the user name is empty: want postgres://user:password@host:port/dbname")
		}
		password, _ = u.User.Password()
	}
	if u.Port() == "" && strings.HasSuffix(u.Host, ":") {
		return nil, errors.New("the port after the colon is empty")
	}
	if p := u.Port(); p != "" {
		// url.Parse let only digits through.
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %s is out of range (1-65535)", p)
		}
	} else if u.Host != "" {
		// pgdriver appends the default port only to a host without a
		// colon, which an IPv6 address always has.
		u.Host = net.JoinHostPort(u.Hostname(), "5432")
	}
	q := u.Query()
	for _, mode := range q["sslmode"] {
		if mode != "" && !slices.Contains(sslModes, mode) { // pgdriver reads "" as prefer
			return nil, fmt.Errorf("sslmode %q is not supported (want one of %s)", mode, strings.Join(sslModes, ", "))
		}
	}
	for _, name := range durationParams {
		for _, v := range q[name] {
			if _, err := strconv.Atoi(v); err == nil {
				continue
			}
			if _, err := time.ParseDuration(v); err != nil {
				return nil, fmt.Errorf("%s %q is not a duration (want seconds, or a Go duration such as 10s)", name, v)
			}
		}
	}
	return newPostgres(u.String(), password)
}

// newPostgres builds the pool, turning a panic in pgdriver into an error.
func newPostgres(dsn, password string) (db *sql.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg := fmt.Sprint(r)
			if password != "" {
				msg = strings.ReplaceAll(msg, password, "xxxxx")
				msg = strings.ReplaceAll(msg, strings.TrimPrefix(url.UserPassword("", password).String(), ":"), "xxxxx")
			}
			db, err = nil, fmt.Errorf("pgdriver refused the URL: %s", msg)
		}
	}()
	return sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn))), nil
}

// parseError says why url.Parse failed without quoting it: its text holds
// the whole URL, and the piece it complains about may be the password.
func parseError(err error) error {
	var (
		escErr  url.EscapeError
		hostErr url.InvalidHostError
	)
	switch {
	case errors.As(err, &escErr):
		return errors.New("malformed percent-encoding: % must start %XX with two hex digits (write %25 for a % in the password)")
	case errors.As(err, &hostErr):
		return errors.New("invalid character in the host")
	default:
		return errors.New("malformed URL: percent-encode characters such as / ? # @ : % in the user name and password")
	}
}

// createPrivate creates the database file of dsn with mode 0600 when it
// does not exist, so the inbox (payloads, request headers) is readable by
// its owner alone whatever the umask. SQLite gives the -wal and -shm files
// it creates later the mode of the database file. An existing file keeps
// its mode; an in-memory database has no file.
func createPrivate(dsn string) error {
	path, query, _ := strings.Cut(strings.TrimPrefix(dsn, "file:"), "?")
	params, _ := url.ParseQuery(query)
	if path == "" || strings.HasPrefix(path, ":memory:") || params.Get("mode") == "memory" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case errors.Is(err, fs.ErrExist):
		return nil
	case err != nil:
		return fmt.Errorf("creating the SQLite file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil { // exactly 0600, whatever the umask took away
		_ = f.Close()
		return fmt.Errorf("creating the SQLite file: %w", err)
	}
	return f.Close()
}

// sqliteDSN turns sqlite:PATH or file:PATH[?params] into a modernc DSN.
func sqliteDSN(u string, busyTimeout time.Duration) (string, error) {
	path := strings.TrimPrefix(strings.TrimPrefix(u, "sqlite:"), "file:")
	path = strings.TrimPrefix(path, "//")
	var query string
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i+1:]
	}
	if path == "" {
		return "", errors.New("the SQLite URL has no path (want sqlite:PATH, file:PATH or sqlite::memory:)")
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		return "", err
	}
	for _, p := range []string{
		fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()),
		"foreign_keys(1)",
		"journal_mode(WAL)",
		"synchronous(FULL)",
	} {
		params.Add("_pragma", p)
	}
	if params.Get("_txlock") == "" {
		params.Set("_txlock", "immediate")
	}
	return "file:" + path + "?" + params.Encode(), nil
}

// Redact returns rawURL with its password, in the user part or a password
// query parameter, replaced by xxxxx, for errors and logs. It works on URLs
// that url.Parse refuses too, erring towards hiding too much.
func Redact(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && u.Fragment == "" && !strings.Contains(rawURL, "#") &&
		(u.User != nil || !strings.Contains(rawURL, "@")) {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		u.RawQuery = redactQuery(u.RawQuery)
		return u.String()
	}
	prefix, rest := "", rawURL
	if i := strings.Index(rawURL, "://"); i >= 0 {
		prefix, rest = rawURL[:i+3], rawURL[i+3:]
	}
	// Whatever lies between the first colon and the last @ may be password.
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if user, _, ok := strings.Cut(rest[:at], ":"); ok {
			rest = user + ":xxxxx" + rest[at:]
		}
	}
	return prefix + redactQuery(rest)
}

// redactQuery hides the value of every password= parameter in s, whatever
// its case, up to the next &.
func redactQuery(s string) string {
	const key = "password="
	var b strings.Builder
	for {
		i := indexASCIIFold(s, key)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+len(key)])
		b.WriteString("xxxxx")
		s = s[i+len(key):]
		if j := strings.IndexByte(s, '&'); j >= 0 {
			s = s[j:]
		} else {
			s = ""
		}
	}
}

// indexASCIIFold is strings.Index ignoring ASCII case. It works on bytes:
// strings.ToLower would change the length of invalid UTF-8.
func indexASCIIFold(s, lowerKey string) int {
	for i := 0; i+len(lowerKey) <= len(s); i++ {
		j := 0
		for j < len(lowerKey) && lowerASCII(s[i+j]) == lowerKey[j] {
			j++
		}
		if j == len(lowerKey) {
			return i
		}
	}
	return -1
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
