package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdstest"
)

// TestImage builds the container image with scripts/image and buildah,
// and runs the server from it against PostgreSQL: a webhook is answered
// 200 and reaches its mirror row, the image's healthcheck command passes,
// and SIGTERM ends the server with exit 0. It also checks that the image's
// user can write the default SQLite file in /data.
//
// buildah runs without a daemon (vfs storage, chroot isolation, the host's
// network), in a storage root of the test's own. Without buildah the test
// is skipped, unless CI is set: then it fails.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a container image")
	}
	if _, err := exec.LookPath("buildah"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("buildah is not installed, and CI is set (Debian: apt-get install buildah; .ci/run installs it)")
		}
		t.Skip("buildah is not installed (Debian: apt-get install buildah)")
	}
	if os.Geteuid() != 0 {
		t.Skip("buildah with vfs storage and chroot isolation runs as root here")
	}
	ctx := context.Background()
	root := t.TempDir()
	buildah := func(args ...string) *exec.Cmd {
		return exec.Command("buildah", append([]string{"--storage-driver", "vfs",
			"--root", filepath.Join(root, "storage"), "--runroot", filepath.Join(root, "run")}, args...)...)
	}
	output := func(cmd *exec.Cmd) string {
		t.Helper()
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s: %s", strings.Join(cmd.Args, " "), out)
		return strings.TrimSpace(string(out))
	}

	const version, image = "v0.0.0-imagetest", "tds-server:imagetest"
	started := time.Now()
	build := exec.Command(filepath.Join("..", "..", "scripts", "image"), image)
	build.Env = append(os.Environ(), "ENGINE=buildah", "BUILDAH_ROOT="+root, "VERSION="+version)
	output(build)
	t.Logf("scripts/image built %s with buildah in %s", image, time.Since(started).Round(100*time.Millisecond))
	t.Logf("image: %s", output(buildah("images", "--format", "{{.Name}}:{{.Tag}} {{.Size}}", image)))
	// docs/deploy.md's figure stays true, within half a megabyte.
	size, ok := strings.CutSuffix(output(buildah("images", "--format", "{{.Size}}", image)), " MB")
	require.True(t, ok, "buildah's size %q is not in MB", size)
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "deploy.md"))
	require.NoError(t, err)
	m := regexp.MustCompile(`The image is ([0-9.]+) MB as buildah counts it`).FindSubmatch(doc)
	require.NotNil(t, m, "docs/deploy.md says how large the image is")
	built, err := strconv.ParseFloat(size, 64)
	require.NoError(t, err)
	documented, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	require.InDelta(t, documented, built, 0.5, "docs/deploy.md says the image is %s MB; it is %s MB", m[1], size)

	// Two containers of the image: the server's, and one for the other
	// commands (a buildah run ending kills what else runs in its
	// container).
	ctr, tools := output(buildah("from", "--pull-never", image)), output(buildah("from", "--pull-never", image))
	t.Cleanup(func() { _ = buildah("rm", ctr, tools).Run() })
	runIn := func(ctr string, env []string, args ...string) *exec.Cmd {
		a := []string{"run", "--isolation", "chroot", "--network", "host"}
		for _, kv := range env {
			a = append(a, "--env", kv)
		}
		return buildah(append(append(a, ctr, "--"), args...)...)
	}

	require.Regexp(t, `^tds server `+version+` \(go1\.`, output(runIn(tools, nil, "/server", "-version")), "the version stamped by scripts/image")
	// The image's default database, as the image's user: /data is writable.
	require.Contains(t, output(runIn(tools, nil, "/server", "migrate")), "msg=migrated database=sqlite:/data/tds.db")

	dbURL := tdstest.PostgresURL(t, tdstest.Unmigrated())
	const key = "image-test-webhook-key"
	cmd := runIn(ctr, []string{"TDS_DATABASE_URL=" + dbURL, "TDS_WEBHOOK_KEYS=" + key, "TDS_ADMIN_TOKEN=image-test-admin-token",
		"TDS_ADDR=127.0.0.1:0", "TDS_WORKERS=2"}, "/server")
	s, addr := startServer(t, cmd)
	require.NotContains(t, s.output(), "export TDS_", "keys and token given: nothing generated")

	body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "envelope", "product.json"))
	require.NoError(t, err)
	status, answer := post(t, "http://"+addr+"/webhooks/products", body, "X-Webhook-Key", key)
	require.Equal(t, 200, status, answer)

	db, err := tds.Open(ctx, dbURL)
	require.NoError(t, err)
	defer db.Close()
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM products WHERE deleted_at IS NULL").Scan(&n))
		return n == 1
	}, 60*time.Second, 50*time.Millisecond, "the product reaches its mirror row")

	// The image's health check, run in the image, against the server.
	output(runIn(tools, nil, "/server", "healthcheck", "http://"+addr+"/health/ready"))

	// SIGTERM to the server, as an engine stopping the container sends it
	// to its first process (buildah run itself would answer SIGTERM with
	// SIGKILL, not pass it on).
	pid := descendant(t, cmd.Process.Pid, "server")
	require.NoError(t, syscall.Kill(pid, syscall.SIGTERM))
	select {
	case err := <-s.exited:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("exit code %d after SIGTERM\n%s", exit.ExitCode(), s.output())
		}
		require.NoError(t, err)
	case <-time.After(60 * time.Second):
		t.Fatalf("server did not exit within 60s of SIGTERM\n%s", s.output())
	}
	require.Contains(t, s.output(), "msg=stopped")
	t.Logf("TestImage took %s in all", time.Since(started).Round(100*time.Millisecond))
}

// descendant finds the process named comm among pid's descendants, from
// /proc.
func descendant(t *testing.T, pid int, comm string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	parent, name := map[int]int{}, map[int]string{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone since
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		fields := strings.Fields(string(b[close+1:]))
		if open < 0 || close < open || len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		parent[p], name[p] = ppid, string(b[open+1:close])
	}
	for p, n := range name {
		if n != comm {
			continue
		}
		for a := parent[p]; a > 1; a = parent[a] {
			if a == pid {
				return p
			}
		}
	}
	t.Fatalf("no process %q under %d", comm, pid)
	return 0
}
