package tdstest_test

import "testing"

// The package example's integration test, run on the PostgreSQL tdstest
// finds (the example's startPostgres needs a Docker engine).
func TestExampleIntegration(t *testing.T) {
	t.Parallel()
	testPriceSync(t)
}
