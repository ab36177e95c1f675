package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// knownEnv is every variable the server reads.
func knownEnv() map[string]bool {
	m := map[string]bool{}
	for _, st := range table {
		m[st.env] = true
	}
	return m
}

// TestComposeFile: compose.yaml parses (no engine here runs `docker
// compose config`), runs PostgreSQL 15 on a volume and the server with
// health checks and a restart policy, and sets only settings that exist.
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "compose.yaml"))
	require.NoError(t, err)
	type healthcheck struct {
		Test        []string `yaml:"test"`
		Interval    string   `yaml:"interval"`
		Timeout     string   `yaml:"timeout"`
		Retries     int      `yaml:"retries"`
		StartPeriod string   `yaml:"start_period"`
	}
	// Every key the file uses: KnownFields refuses any other (a typo).
	var compose struct {
		Name     string `yaml:"name"`
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Build       string            `yaml:"build"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			Restart     string            `yaml:"restart"`
			DependsOn   map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
			Ports           []string    `yaml:"ports"`
			Healthcheck     healthcheck `yaml:"healthcheck"`
			StopGracePeriod string      `yaml:"stop_grace_period"`
			ReadOnly        bool        `yaml:"read_only"`
			CapDrop         []string    `yaml:"cap_drop"`
			SecurityOpt     []string    `yaml:"security_opt"`
			Tmpfs           []string    `yaml:"tmpfs"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&compose))

	pg, server := compose.Services["postgres"], compose.Services["server"]
	require.Equal(t, "postgres:15", pg.Image)
	require.Equal(t, []string{"pgdata:/var/lib/postgresql/data"}, pg.Volumes)
	require.Contains(t, compose.Volumes, "pgdata")
	require.NotEmpty(t, pg.Healthcheck.Test)
	require.Equal(t, "service_healthy", server.DependsOn["postgres"].Condition)
	require.Equal(t, []string{"CMD", "/server", "healthcheck"}, server.Healthcheck.Test)
	require.Equal(t, ".", server.Build)
	for _, s := range []string{"postgres", "server"} {
		require.Equal(t, "unless-stopped", compose.Services[s].Restart, s)
	}
	require.Equal(t, "40s", server.StopGracePeriod, "above the server's 30 s shutdown")
	known := knownEnv()
	for name := range server.Environment {
		require.True(t, known[name], "compose.yaml sets %s, which the server does not read", name)
	}
	require.Contains(t, server.Environment["TDS_DATABASE_URL"], "@postgres:5432/")
	// Hardened by default: published on the loopback only (a proxy on the
	// host exposes it), read-only root, no capabilities, no setuid gains.
	require.Equal(t, []string{"127.0.0.1:8001:8001"}, server.Ports)
	require.True(t, server.ReadOnly, "read_only")
	require.Equal(t, []string{"ALL"}, server.CapDrop)
	require.Contains(t, server.SecurityOpt, "no-new-privileges:true")
}

// TestDockerignore: the build context leaves out what must not reach the
// builder: the repository's history, local databases, environment files
// and test output.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", ".dockerignore"))
	require.NoError(t, err)
	var patterns []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			require.False(t, strings.HasPrefix(line, "!"), "no exception expected: %s", line)
			patterns = append(patterns, line)
		}
	}
	// ignored follows the engines' rules for the patterns used here: a
	// leading **/ matches in any directory.
	ignored := func(path string) bool {
		for _, p := range patterns {
			candidates := []string{path}
			if rest, ok := strings.CutPrefix(p, "**/"); ok {
				p = rest
				parts := strings.Split(path, "/")
				for i := range parts {
					candidates = append(candidates, strings.Join(parts[i:], "/"))
				}
			}
			for _, c := range candidates {
				if ok, err := filepath.Match(p, c); err == nil && ok {
					return true
				}
				// A matched directory takes what is under it.
				for dir := c; strings.Contains(dir, "/"); {
					dir = dir[:strings.LastIndex(dir, "/")]
					if ok, _ := filepath.Match(p, dir); ok {
						return true
					}
				}
			}
		}
		return false
	}
	for _, path := range []string{".git", ".git/config", "tds.db", "tds.db-wal", "tds.db-shm", "tds.db-journal",
		"examples/server/tds.db", "data/x.db", ".env", ".env.local", "examples/server/.env", "server.test",
		"cover.out", "cpu.prof", "tds-secrets.env", "data/tds-secrets.env"} {
		require.True(t, ignored(path), ".dockerignore does not leave out %s", path)
	}
	for _, path := range []string{"go.mod", "go.sum", "examples/server/main.go", "internal/store/store.go",
		"migrations/postgres/0001_core.up.sql", "Dockerfile"} {
		require.False(t, ignored(path), ".dockerignore leaves out %s, which the build needs", path)
	}
}

// TestDeployHardeningDoc: the nginx example forwards the scheme (or the
// dashboard's cookie is never Secure) and the doc advises HSTS, keeps the
// console off the public name, and says how to pin the base images; the
// Dockerfile says so too.
func TestDeployHardeningDoc(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "deploy.md"))
	require.NoError(t, err)
	nginx := regexp.MustCompile("(?s)```\n(server \\{.*?)```").FindSubmatch(doc)
	require.NotNil(t, nginx, "docs/deploy.md has an nginx server block")
	require.Contains(t, string(nginx[1]), "proxy_set_header X-Forwarded-Proto $scheme;")
	require.Contains(t, string(nginx[1]), "Strict-Transport-Security")
	require.Regexp(t, "Keep the console \\(`/ui/`", string(doc))
	require.Contains(t, string(doc), "@sha256:")
	dockerfile, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	require.NoError(t, err)
	require.Contains(t, string(dockerfile), "@sha256:", "the Dockerfile says how to pin its base image")
}

// TestDocsCarryNoUsableCredentials: no key or token a reader could paste
// from the README or docs/ passes the server's checks: examples carry
// placeholders the server refuses (shorter than tds.MinSecretBytes) or
// commands that generate one.
func TestDocsCarryNoUsableCredentials(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	require.NoError(t, err)
	files = append(files, filepath.Join("..", "..", "README.md"), filepath.Join("..", "..", "compose.yaml"))
	// A value after a credential variable, header or bearer scheme.
	value := regexp.MustCompile(`(?:TDS_(?:WEBHOOK_KEYS|ADMIN_TOKEN|METRICS_TOKEN|ZOHO_SECRET|STANDARD_WEBHOOKS_SECRET)["']?\s*[=:]\s*["']?|X-Webhook-Key:\s*|Bearer\s+)([^\s"'\x60,;)]+)`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range value.FindAllStringSubmatch(string(b), -1) {
			v := m[1]
			if strings.HasPrefix(v, "$") || strings.Contains(v, "…") || strings.Contains(v, "<") {
				continue // a variable, a command's output or an elision
			}
			require.Less(t, len(v), 16, "%s: %q passes the server's checks; use a placeholder or a command that generates one", f, m[0])
		}
	}
}

// TestDeployDoc: docs/deploy.md shows compose.yaml as it is, each of its
// YAML examples parses, the Deployment probes /health/live and
// /health/ready, and every TDS_ variable it names exists.
func TestDeployDoc(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "deploy.md"))
	require.NoError(t, err)
	compose, err := os.ReadFile(filepath.Join("..", "..", "compose.yaml"))
	require.NoError(t, err)
	require.Contains(t, string(doc), "```yaml\n"+string(compose)+"```\n", "docs/deploy.md shows compose.yaml as it is")

	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1)
	require.GreaterOrEqual(t, len(blocks), 3)
	var probes []string
	for _, b := range blocks {
		dec := yaml.NewDecoder(bytes.NewReader(b[1]))
		for {
			var d struct {
				Kind string `yaml:"kind"`
				Spec struct {
					Template struct {
						Spec struct {
							Containers []struct {
								Liveness  *probe `yaml:"livenessProbe"`
								Readiness *probe `yaml:"readinessProbe"`
							} `yaml:"containers"`
						} `yaml:"spec"`
					} `yaml:"template"`
				} `yaml:"spec"`
			}
			err := dec.Decode(&d)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, "a YAML example of docs/deploy.md:\n%s", b[1])
			if d.Kind == "Deployment" {
				c := d.Spec.Template.Spec.Containers[0]
				probes = append(probes, c.Liveness.HTTPGet.Path, c.Readiness.HTTPGet.Path)
			}
		}
	}
	require.Equal(t, []string{"/health/live", "/health/ready"}, probes)

	known := knownEnv()
	for _, name := range regexp.MustCompile(`TDS_[A-Z_]+`).FindAllString(string(doc), -1) {
		if strings.HasSuffix(name, "_") {
			continue // a family, such as TDS_ZOHO_*
		}
		require.True(t, known[name], "docs/deploy.md names %s, which the server does not read", name)
	}
}

// probe is a Kubernetes HTTP probe.
type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
	} `yaml:"httpGet"`
}
