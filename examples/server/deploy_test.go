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
