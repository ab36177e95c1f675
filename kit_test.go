package tds_test

import (
	"testing"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdstest"
)

// init hands tdstest to the tests of package tds (see TestKit in
// helpers_test.go), which cannot import it themselves.
func init() {
	tds.TestKit.Main = func(m *testing.M) { tdstest.Main(m) }
	tds.TestKit.PostgresURL = func(t testing.TB, empty bool) string { return tdstest.PostgresURL(t, kitOptions(empty)...) }
	tds.TestKit.PgBouncerURL = func(t testing.TB, empty bool) string {
		return tdstest.PostgresURL(t, append(kitOptions(empty), tdstest.ThroughPgBouncer())...)
	}
	tds.TestKit.SQLiteURL = func(t testing.TB, empty bool) string { return tdstest.SQLiteURL(t, kitOptions(empty)...) }
}

func kitOptions(empty bool) []tdstest.DBOption {
	if empty {
		return []tdstest.DBOption{tdstest.Unmigrated()}
	}
	return nil
}
