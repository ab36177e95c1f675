package tdsreconcile

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/testdb"
	"github.com/tdscore/tds/tdstest"
)

// offlineZoho is a complete set of Zoho credentials pointing at a closed
// port: New accepts it, and nothing in these tests calls it.
var offlineZoho = ZohoAPI{ClientID: "c", ClientSecret: "s", RefreshToken: "r", OrganizationID: "o",
	AccountsURL: "http://127.0.0.1:1", APIURL: "http://127.0.0.1:1"}

// TestOptionsRefuseBadValues: every option refuses a bad value with an
// error naming it, several at once joined; good values and the zero
// Option are accepted.
func TestOptionsRefuseBadValues(t *testing.T) {
	db := tdstest.SQLite(t)
	proc, err := tds.NewProcessor(db)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proc.Close() })

	for _, tc := range []struct {
		name string
		opts []Option
		want string
	}{
		{"WithSource empty", []Option{WithSource(" ")}, "tdsreconcile: WithSource: must not be empty"},
		{"WithSource long", []Option{WithSource(strings.Repeat("x", 201))}, "tdsreconcile: WithSource: must be at most 200 bytes"},
		{"WithClock", []Option{WithClock(nil)}, "tdsreconcile: WithClock: clock is nil"},
		{"WithLogger", []Option{WithLogger(nil)}, "tdsreconcile: WithLogger: logger is nil"},
		{"WithSchedule", []Option{WithSchedule(-time.Minute, time.Hour)},
			"tdsreconcile: WithSchedule: intervals must be >= 0, got -1m0s and 1h0m0s"},
		{"WithSchedule full", []Option{WithSchedule(time.Minute, -time.Hour)},
			"tdsreconcile: WithSchedule: intervals must be >= 0, got 1m0s and -1h0m0s"},
		{"WithLookback", []Option{WithLookback(-time.Second)}, "tdsreconcile: WithLookback: must be >= 0, got -1s"},
		{"several", []Option{WithClock(nil), WithSource("ok"), WithLookback(-time.Second)},
			"tdsreconcile: WithClock: clock is nil\ntdsreconcile: WithLookback: must be >= 0, got -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := New(db, proc, offlineZoho, tc.opts...)
			require.EqualError(t, err, tc.want)
			require.Nil(t, rc)
		})
	}

	t.Run("nil db and proc", func(t *testing.T) {
		_, err := New(nil, nil, offlineZoho, WithLookback(-time.Second))
		require.EqualError(t, err, "tdsreconcile: New: db is nil\ntdsreconcile: New: proc is nil\n"+
			"tdsreconcile: WithLookback: must be >= 0, got -1s")
	})

	t.Run("good values", func(t *testing.T) {
		rc, err := New(db, proc, offlineZoho, Option{}, WithSource("zoho-eu"), WithClock(time.Now), WithLogger(testdb.QuietLogger),
			WithSchedule(0, 0), WithLookback(0), WithHooks(Hooks{}), WithHooks(Hooks{TokenRefresh: func(error) {}}))
		require.NoError(t, err)
		require.Equal(t, "zoho-eu", rc.Source())
		incremental, full := rc.Schedule()
		require.Zero(t, incremental)
		require.Zero(t, full)
		require.NoError(t, rc.Close())
	})

	t.Run("defaults", func(t *testing.T) {
		rc, err := New(db, proc, offlineZoho)
		require.NoError(t, err)
		require.Equal(t, tds.DefaultSource, rc.Source())
		incremental, full := rc.Schedule()
		require.Equal(t, DefaultInterval, incremental)
		require.Equal(t, DefaultFullInterval, full)
		require.Equal(t, DefaultLookback, rc.set.lookback)
		require.NoError(t, rc.Close())
	})
}
