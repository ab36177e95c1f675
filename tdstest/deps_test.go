package tdstest_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// listDeps returns the packages a build of pkgs compiles (go list -deps).
func listDeps(t *testing.T, pkgs ...string) []string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no go command on PATH: %v", err)
		}
		t.Skipf("no go command on PATH: %v", err)
	}
	cmd := exec.Command(gobin, append([]string{"list", "-deps"}, pkgs...)...)
	cmd.Dir = ".." // the module's root
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("go list -deps %v: %v\n%s", pkgs, err, ee.Stderr)
	}
	require.NoError(t, err)
	return strings.Fields(string(out))
}

// containerPackages are the packages of testcontainers-go and of the Docker
// client it brings.
func containerPackages(deps []string) []string {
	var found []string
	for _, p := range deps {
		if strings.Contains(p, "testcontainers") || strings.Contains(p, "docker") || strings.Contains(p, "moby") {
			found = append(found, p)
		}
	}
	return found
}

// A program that imports tds, and not tdstest, builds none of
// testcontainers-go: tdstest can live in the main module.
func TestImportingTDSBuildsNoContainers(t *testing.T) {
	t.Parallel()
	deps := listDeps(t, "github.com/tdscore/tds", "github.com/tdscore/tds/examples/server")
	require.Contains(t, deps, "github.com/tdscore/tds")
	require.Empty(t, containerPackages(deps), "a program that imports only tds builds these")

	// The check sees them where they are.
	kit := containerPackages(listDeps(t, "github.com/tdscore/tds/tdstest"))
	require.Contains(t, kit, "github.com/testcontainers/testcontainers-go")
}

// The root package is the webhook product alone: a program that imports
// only tds builds no Prometheus, no YAML, no browser driver and no
// containers; the optional packages bring theirs.
func TestRootBuildsNoOptionalDependency(t *testing.T) {
	t.Parallel()
	heavy := func(deps []string) []string {
		var found []string
		for _, p := range deps {
			for _, h := range []string{"prometheus", "yaml", "chromedp", "testcontainers"} {
				if strings.Contains(p, h) {
					found = append(found, p)
					break
				}
			}
		}
		return found
	}
	require.Empty(t, heavy(listDeps(t, "github.com/tdscore/tds")))
	// The check sees them where they are.
	require.Contains(t, heavy(listDeps(t, "github.com/tdscore/tds/tdsprom")), "github.com/prometheus/client_golang/prometheus")
}

// otelPackages are the OpenTelemetry packages among deps.
func otelPackages(deps []string) map[string]bool {
	found := map[string]bool{}
	for _, p := range deps {
		if strings.HasPrefix(p, "go.opentelemetry.io/") {
			found[p] = true
		}
	}
	return found
}

// Tracing is package tdsotel's: the root brings no OpenTelemetry package
// of its own. (bun's PostgreSQL driver, which the root opens databases
// with, imports the trace API and a semantic-conventions package; those
// are the only ones allowed.)
func TestRootBuildsNoOpenTelemetry(t *testing.T) {
	t.Parallel()
	driver := otelPackages(listDeps(t, "github.com/uptrace/bun/driver/pgdriver"))
	for p := range otelPackages(listDeps(t, "github.com/tdscore/tds")) {
		require.True(t, driver[p], "the root builds %s, which bun's driver does not bring", p)
	}
	// The check sees them where they are.
	otelDeps := otelPackages(listDeps(t, "github.com/tdscore/tds/tdsotel"))
	require.True(t, otelDeps["go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"])
	require.False(t, driver["go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"])
}
