package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdstest"
)

func noEnv(string) string { return "" }

// TestSettingsTableMatchesDocs: every setting of the table is a row of
// the settings table in docs/server.md with the same flag, variable and
// default, and every row of that table is a setting.
func TestSettingsTableMatchesDocs(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "docs", "server.md"))
	require.NoError(t, err)
	defer f.Close()
	row := regexp.MustCompile("^\\| `-([a-z-]+)` \\| `(TDS_[A-Z_]+)` \\|([^|]*)\\|")
	docs := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := row.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		_, dup := docs[m[1]]
		require.False(t, dup, "docs/server.md lists -%s twice", m[1])
		docs[m[1]] = m[2] + " " + strings.Trim(strings.TrimSpace(m[3]), "`")
	}
	require.NoError(t, sc.Err())

	code := map[string]string{}
	for _, st := range table {
		code[st.flag] = st.env + " " + st.def
	}
	for flag, want := range code {
		got, ok := docs[flag]
		require.True(t, ok, "-%s (%s) is missing from the settings table of docs/server.md", flag, want)
		require.Equal(t, want, got, "-%s: the variable and default in docs/server.md differ from settings.go", flag)
	}
	for flag := range docs {
		_, ok := code[flag]
		require.True(t, ok, "docs/server.md lists -%s, which the server does not have", flag)
	}
}

// TestSettingsTable: flags and variables are unique, every variable is
// TDS_ and the flag's name, every default parses, and -h lists them all.
func TestSettingsTable(t *testing.T) {
	flags, envs := map[string]bool{}, map[string]bool{}
	var help bytes.Buffer
	_, err := parseSettings([]string{"-h"}, noEnv, &help)
	require.ErrorIs(t, err, flag.ErrHelp)
	for _, st := range table {
		require.False(t, flags[st.flag], st.flag)
		require.False(t, envs[st.env], st.env)
		flags[st.flag], envs[st.env] = true, true
		want := "TDS_" + strings.ToUpper(strings.ReplaceAll(st.flag, "-", "_"))
		if st.flag == "database" || st.flag == "listen-database" {
			want += "_URL" // the database URLs, as the issue and the ecosystem name them
		}
		require.Equal(t, want, st.env, "the variable is named after the flag")
		require.NoError(t, st.set(&settings{}, st.def), "the default of -%s", st.flag)
		require.NotEmpty(t, st.doc)
		require.Regexp(t, `(?m)^  -`+regexp.QuoteMeta(st.flag)+` +`+st.env+` `, help.String())
	}
}

// TestSettingsErrors: each invalid value is named by the flag or the
// variable it came from, every one at once, and the server exits 2.
func TestSettingsErrors(t *testing.T) {
	env := map[string]string{"TDS_WORKERS": "x", "TDS_MAX_CONNS": "0", "TDS_LOG_FORMAT": "xml", "TDS_LOG_LEVEL": "loud",
		"TDS_RECONCILE_INTERVAL": "often", "TDS_ZOHO_DC": "mars", "TDS_ALERT_EVAL_INTERVAL": "0s"}
	_, err := parseSettings([]string{"-zoho-rate", "many", "-zoho-product", "crm"}, func(k string) string { return env[k] }, io.Discard)
	require.Error(t, err)
	for _, want := range []string{
		`TDS_WORKERS: "x" is not a number`,
		`TDS_MAX_CONNS: must be >= 1, got 0`,
		`TDS_LOG_FORMAT: "xml" is not one of text, json`,
		`TDS_LOG_LEVEL: "loud" is not one of debug, info, warn, error`,
		`TDS_RECONCILE_INTERVAL: "often" is not a duration`,
		`TDS_ZOHO_DC: "mars" is not one of com, eu`,
		`TDS_ALERT_EVAL_INTERVAL: must be > 0, got 0s`,
		`-zoho-rate: "many" is not a number`,
		`-zoho-product: "crm" is not one of books, inventory`,
	} {
		require.ErrorContains(t, err, want)
	}

	// A flag wins over its variable, an invalid variable included.
	s, err := parseSettings([]string{"-workers", "3"}, func(k string) string { return map[string]string{"TDS_WORKERS": "x"}[k] }, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 3, s.workers)

	var stdout, stderr bytes.Buffer
	require.Equal(t, 2, run(nil, func(k string) string { return env[k] }, &stdout, &stderr))
	require.Contains(t, stderr.String(), "server: TDS_WORKERS: \"x\" is not a number\nserver: TDS_MAX_CONNS:")
	require.Empty(t, stdout.String(), "nothing generated or printed before the settings are valid")
	stderr.Reset()
	require.Equal(t, 2, run([]string{"serve", "extra"}, noEnv, &stdout, &stderr))
	require.Contains(t, stderr.String(), "unexpected arguments: extra")
	stderr.Reset()
	require.Equal(t, 2, run([]string{"bogus"}, noEnv, &stdout, &stderr))
	require.Contains(t, stderr.String(), `unknown command "bogus"`)
	require.Equal(t, 0, run([]string{"-h"}, noEnv, &stdout, io.Discard))

	// An admin token that is also a webhook key (the first or a later one).
	for _, args := range [][]string{
		{"-webhook-keys", "key-one-0123456789abcdef", "-admin-token", "key-one-0123456789abcdef"},
		{"-webhook-keys", "key-one-0123456789abcdef,key-two-0123456789abcdef", "-admin-token", "adm-0123456789abcdef, key-two-0123456789abcdef"},
	} {
		_, err = parseSettings(args, noEnv, io.Discard)
		require.ErrorContains(t, err, "-admin-token (TDS_ADMIN_TOKEN): an admin token must differ from every webhook key")
	}
	// A metrics token that is also a webhook key or an admin token.
	_, err = parseSettings([]string{"-webhook-keys", "key-one-0123456789abcdef", "-metrics-token", "met-0123456789abcdef,key-one-0123456789abcdef"}, noEnv, io.Discard)
	require.ErrorContains(t, err, "-metrics-token (TDS_METRICS_TOKEN): a metrics token must differ from every webhook key and admin token")
	_, err = parseSettings([]string{"-admin-token", "adm-0123456789abcdef", "-metrics-token", "adm-0123456789abcdef"}, noEnv, io.Discard)
	require.ErrorContains(t, err, "-metrics-token (TDS_METRICS_TOKEN): a metrics token must differ from every webhook key and admin token")
}

// TestVersionAndLogging: -version prints the version; TDS_LOG_FORMAT=json
// logs JSON objects at TDS_LOG_LEVEL and above.
func TestVersionAndLogging(t *testing.T) {
	var stdout bytes.Buffer
	require.Equal(t, 0, run([]string{"-version"}, noEnv, &stdout, io.Discard))
	require.Regexp(t, `^tds server \S+ \(go1\.`, stdout.String())

	s, err := parseSettings(nil, func(k string) string {
		return map[string]string{"TDS_LOG_FORMAT": "json", "TDS_LOG_LEVEL": "warn"}[k]
	}, io.Discard)
	require.NoError(t, err)
	var logs bytes.Buffer
	log := s.logger(&logs)
	log.Info("hidden")
	log.Warn("shown", "n", 1)
	var line map[string]any
	require.NoError(t, json.Unmarshal(logs.Bytes(), &line), logs.String())
	require.Equal(t, "shown", line["msg"])
	require.Equal(t, "WARN", line["level"])

	s, err = parseSettings(nil, noEnv, io.Discard)
	require.NoError(t, err)
	require.Equal(t, slog.LevelInfo, s.logLevel)
	logs.Reset()
	s.logger(&logs).Info("plain")
	require.Contains(t, logs.String(), "level=INFO msg=plain")
}

// TestHealthcheckCommand: exit 0 when the URL answers 200, 1 otherwise;
// without a URL, /health/ready on the -addr port of 127.0.0.1.
func TestHealthcheckCommand(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health/ready" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		fmt.Fprint(w, `{"status":"x"}`)
	}))
	defer srv.Close()
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)

	var stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"healthcheck", srv.URL + "/health/ready"}, noEnv, io.Discard, &stderr), stderr.String())
	require.Equal(t, 0, run([]string{"healthcheck", "-addr", ":" + port}, noEnv, io.Discard, &stderr), stderr.String())
	require.Equal(t, 0, run([]string{"healthcheck"}, func(k string) string {
		return map[string]string{"TDS_ADDR": "0.0.0.0:" + port}[k]
	}, io.Discard, &stderr), stderr.String())
	status = http.StatusServiceUnavailable
	require.Equal(t, 1, run([]string{"healthcheck", "-addr", ":" + port}, noEnv, io.Discard, &stderr))
	require.Contains(t, stderr.String(), "503")
	require.Equal(t, 1, run([]string{"healthcheck", srv.URL + "/nothing"}, noEnv, io.Discard, &stderr))
}

// TestMigrateCommand: `server migrate` creates the schema and the mirror
// tables, on each database, and a second run changes nothing.
func TestMigrateCommand(t *testing.T) {
	for _, url := range map[string]string{"postgres": tdstest.PostgresURL(t, tdstest.Unmigrated()), "sqlite": "sqlite:" + filepath.Join(t.TempDir(), "tds.db")} {
		for range 2 {
			var stderr bytes.Buffer
			require.Equal(t, 0, run([]string{"migrate", "-database", url}, noEnv, io.Discard, &stderr), stderr.String())
			require.Contains(t, stderr.String(), "msg=migrated")
		}
		db, err := tds.Open(t.Context(), url)
		require.NoError(t, err)
		var n int
		require.NoError(t, db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM products").Scan(&n))
		h, err := tds.NewHandler(db, tds.WithWebhookKeys("migrate-test-webhook-key"))
		require.NoError(t, err)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/health/ready", nil))
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		require.NoError(t, h.Close())
		require.NoError(t, db.Close())
	}
}

// TestSettingsMaxDeletes: -reconcile-max-deletes / TDS_RECONCILE_MAX_DELETES
// is empty by default (the library's 1 %, at least 10), a number >= 0
// otherwise (0 holds every delete), the flag winning over the variable.
func TestSettingsMaxDeletes(t *testing.T) {
	t.Parallel()
	s, err := parseSettings(nil, noEnv, io.Discard)
	require.NoError(t, err)
	require.Nil(t, s.zoho.maxDeletes, "empty: the library's default")

	env := func(v string) func(string) string {
		return func(k string) string { return map[string]string{"TDS_RECONCILE_MAX_DELETES": v}[k] }
	}
	s, err = parseSettings(nil, env("25"), io.Discard)
	require.NoError(t, err)
	require.Equal(t, 25, *s.zoho.maxDeletes)
	s, err = parseSettings([]string{"-reconcile-max-deletes", "0"}, env("25"), io.Discard)
	require.NoError(t, err)
	require.Equal(t, 0, *s.zoho.maxDeletes, "the flag wins; 0 holds every delete")

	_, err = parseSettings(nil, env("-3"), io.Discard)
	require.ErrorContains(t, err, "TDS_RECONCILE_MAX_DELETES: must be >= 0, got -3")
	_, err = parseSettings([]string{"-reconcile-max-deletes", "lots"}, noEnv, io.Discard)
	require.ErrorContains(t, err, `-reconcile-max-deletes: "lots" is not a number`)
}
