package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds/tdstest"
)

func TestMain(m *testing.M) {
	// The fake Zoho of the reconcile scenario is this binary too.
	if n, err := strconv.Atoi(os.Getenv(fakeZohoEnv)); err == nil {
		os.Exit(serveFakeZoho(n))
	}
	// So are the worker processes of the processes scenario.
	if url := os.Getenv(childEnv); url != "" {
		if err := childWorker(url); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	tdstest.Main(m)
}

// The benchmark tool runs every scenario in its short mode on both
// databases, so it keeps compiling and working. No figure is asserted.
func TestShortRun(t *testing.T) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		t.Run(dialect, func(t *testing.T) {
			url := tdstest.SQLiteURL(t, tdstest.Unmigrated())
			if dialect == "postgres" {
				url = tdstest.PostgresURL(t, tdstest.Unmigrated())
			}
			var out bytes.Buffer
			require.NoError(t, run(context.Background(), []string{"-short", "-database", url}, &out))
			for _, row := range []string{
				"| ingest: baseline", "| ingest: tds Handler over HTTP", "| ingest: ratio",
				"| peak RSS", "| burn-down: no-op Syncer", "| burn-down: MirrorSyncer (batched upserts)",
				"| latency at 100 events/s", "| backlog: ratio", "| reconcile: full sweep",
			} {
				require.Contains(t, out.String(), row)
			}
			t.Log("\n" + out.String())
		})
	}
}

// TestShortRunMetrics: -metrics both runs ingest and burn-down with
// metrics off, then on, and prints their ratios.
func TestShortRunMetrics(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-short", "-database", tdstest.SQLiteURL(t, tdstest.Unmigrated()),
		"-scenarios", "ingest,burndown", "-work", "noop", "-metrics", "both"}, &out))
	for _, row := range []string{
		"| ingest: tds Handler over HTTP |", "| ingest: tds Handler over HTTP, metrics on |", "| ingest: metrics on / off |",
		"| burn-down: no-op Syncer |", "| burn-down: no-op Syncer, metrics on |", "| burn-down: no-op Syncer: metrics on / off |",
	} {
		require.Contains(t, out.String(), row)
	}
	require.Error(t, run(context.Background(), []string{"-short", "-metrics", "maybe"}, &out))
	t.Log("\n" + out.String())
}

// TestShortRunTrace: -trace runs ingest and burn-down traced, under the
// same row names, and says so in the header.
func TestShortRunTrace(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-short", "-database", tdstest.SQLiteURL(t, tdstest.Unmigrated()),
		"-scenarios", "ingest,burndown", "-work", "noop", "-trace"}, &out))
	for _, row := range []string{"tracing on (-trace)", "| ingest: tds Handler over HTTP |", "| burn-down: no-op Syncer |"} {
		require.Contains(t, out.String(), row)
	}
	t.Log("\n" + out.String())
}

// TestShortRunProcesses: the processes scenario runs worker processes on
// one PostgreSQL, directly and, poll-only, through PgBouncer in
// transaction mode; and the latency scenario runs poll-only.
func TestShortRunProcesses(t *testing.T) {
	for _, via := range []string{"postgres", "pgbouncer"} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			opts := []tdstest.DBOption{tdstest.Unmigrated()}
			args := []string{"-short", "-scenarios", "processes", "-processes", "1,2"}
			if via == "pgbouncer" {
				opts = append(opts, tdstest.ThroughPgBouncer())
				args = append(args, "-poll-only", "-scenarios", "processes,latency")
			}
			var out bytes.Buffer
			require.NoError(t, run(context.Background(), append(args, "-database", tdstest.PostgresURL(t, opts...)), &out))
			require.Contains(t, out.String(), "| burn-down: no-op Syncer, 1 processes |")
			require.Contains(t, out.String(), "| burn-down: no-op Syncer, 2 processes |")
			if via == "pgbouncer" {
				require.Contains(t, out.String(), "poll-only, every 100ms")
			}
			t.Log("\n" + out.String())
		})
	}
}
