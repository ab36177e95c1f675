package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGeneratedSecrets: generated credentials are printed as shell lines
// only to a terminal; to anything else (a container's log) the server
// writes them to a 0600 file beside the SQLite database, never through a
// planted symlink, and prints where; with no file it prints a notice
// without them.
func TestGeneratedSecrets(t *testing.T) {
	lines := []string{"export TDS_WEBHOOK_KEYS=whk_generated-secret-1", "export TDS_ADMIN_TOKEN=adm_generated-secret-2"}

	t.Run("terminal", func(t *testing.T) {
		var out bytes.Buffer
		announceGenerated(&out, lines, t.TempDir(), true)
		for _, l := range lines {
			require.Contains(t, out.String(), l+"\n")
		}
	})
	t.Run("log", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, generatedSecretsFile)
		// A file left with a wider mode by someone else, and a symlink
		// planted in its place, are not written through.
		victim := filepath.Join(t.TempDir(), "victim")
		require.NoError(t, os.WriteFile(victim, []byte("untouched"), 0o644))
		require.NoError(t, os.Symlink(victim, path))
		var out bytes.Buffer
		announceGenerated(&out, lines, dir, false)
		require.NotContains(t, out.String(), "generated-secret")
		require.Contains(t, out.String(), path)
		b, err := os.ReadFile(victim)
		require.NoError(t, err)
		require.Equal(t, "untouched", string(b))
		fi, err := os.Lstat(path)
		require.NoError(t, err)
		require.True(t, fi.Mode().IsRegular())
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
		b, err = os.ReadFile(path)
		require.NoError(t, err)
		for _, l := range lines {
			require.Contains(t, string(b), l+"\n")
		}
	})
	t.Run("no file", func(t *testing.T) {
		var out bytes.Buffer
		announceGenerated(&out, lines, filepath.Join(t.TempDir(), "missing"), false)
		require.NotContains(t, out.String(), "generated-secret")
		require.Contains(t, out.String(), "TDS_WEBHOOK_KEYS")
	})
	t.Run("dir", func(t *testing.T) {
		for url, want := range map[string]string{
			"sqlite:/data/tds.db":             "/data",
			"sqlite:tds.db":                   ".",
			"file:/var/lib/tds/x.db?mode=rwc": "/var/lib/tds",
			"sqlite::memory:":                 ".",
			"postgres://u:p@h/db":             ".",
		} {
			require.Equal(t, want, secretsDir(url), url)
		}
	})
}
