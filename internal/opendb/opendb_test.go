package opendb

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain fails the run when a test leaves a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRedact(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db?sslmode=disable": "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgres://u@h/db":                             "postgres://u@h/db",
		"postgres://h/db?password=secret&x=1":           "postgres://h/db?password=xxxxx&x=1",
		"postgres://u:pa%ss@h/db":                       "postgres://u:xxxxx@h/db",
		"postgres://u:pa/ss@h/db":                       "postgres://u:xxxxx@h/db",
		"postgres://u:12#34@h/db":                       "postgres://u:xxxxx@h/db",
		"u:secret@localhost/db":                         "u:xxxxx@localhost/db",
		"localhost:5432/db":                             "localhost:5432/db",
		"postgres://h/db?x=1&PASSWORD=sec%ret":          "postgres://h/db?x=1&PASSWORD=xxxxx",
		"postgres://h/db?password=a&password=b":         "postgres://h/db?password=xxxxx&password=xxxxx",
	} {
		require.Equal(t, want, Redact(in), in)
	}
}

// A valid URL reaches pgdriver intact: special characters in the password
// survive the round trip through url.URL, and a host without a port gets
// PostgreSQL's.
func TestOpenPostgresKeepsTheURL(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"postgres://u:" + url.QueryEscape("p@ss/w:rd#%?") + "@localhost/db?sslmode=disable",
		"postgresql://u@[::1]/db?connect_timeout=5&application_name=tds",
		"postgres:///db?host=/var/run/postgresql",
	} {
		db, err := Open(raw, time.Second)
		require.NoError(t, err, raw)
		require.Equal(t, 32, db.Stats().MaxOpenConnections)
		require.NoError(t, db.Close())
	}
}

// FuzzOpenPostgres checks that no password makes Open panic or appear in
// its error. The seeds run as an ordinary test.
func FuzzOpenPostgres(f *testing.F) {
	for _, s := range [][2]string{
		{"secret", ""}, {"pa%ss", ""}, {"pa/ss", ""}, {"p#ss", ""}, {"p@ss", "sslmode=bogus"},
		{"s3cr3t", "connect_timeout=soon"}, {"s3cr3t", "sslrootcert=/nonexistent"}, {"%zz", "%zz"},
		{"p:ss", "sslmode=require&sslcert=/x&sslkey=/y"}, {"hunter22", "password=hunter22"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, password, query string) {
		// The rest of the URL is quoted in errors; a password found there
		// would prove nothing.
		rest := "postgres://user:@localhost:5432/db?" + query
		// Short passwords turn up in the messages' own words by chance
		// (found: "pass" in "password", "xxxx" in the mask, " # @" in the
		// list of characters to encode): only 8 bytes or more tell.
		if len(password) < 8 || strings.Contains(rest, password) || strings.Contains(strconv.Quote(rest), password) {
			t.Skip("too short to tell apart from the rest of the URL")
		}
		raw := "postgres://user:" + password + "@localhost:5432/db?" + query
		var err error
		require.NotPanics(t, func() {
			db, oerr := Open(raw, time.Second)
			if db != nil {
				_ = db.Close()
			}
			err = oerr
		})
		if err != nil {
			// The message's own words ("password", the mask "xxxxx") may
			// hold a short password by chance: look only outside them.
			msg := err.Error()
			for _, w := range []string{"password", "percent-encode", "opening", "postgres", "xxxxx"} {
				msg = strings.ReplaceAll(msg, w, "")
			}
			require.NotContains(t, msg, password)
			require.True(t, strings.HasPrefix(err.Error(), "tds: opening "), err.Error())
		}
	})
}
