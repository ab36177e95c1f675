package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestReadmeSampleLog: the start-up line the README's quickstart shows
// has the fields, in the order, of the line the server prints, so that a
// reader compares like with like.
func TestReadmeSampleLog(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	sample := regexp.MustCompile(`(?m)^time=\S+ level=INFO msg=listening .*$`).FindString(string(readme))
	require.NotEmpty(t, sample, "the README's sample listening line")

	log, cancel, exit := startInProcess(t, "-addr", "127.0.0.1:0", "-database", "sqlite:"+filepath.Join(t.TempDir(), "tds.db"),
		"-webhook-keys", "readme-log-webhook-key", "-admin-token", "readme-log-admin-token")
	listening := regexp.MustCompile(`(?m)^time=\S+ level=INFO msg=listening .*$`)
	var line string
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	deadline := time.After(60 * time.Second)
	for line == "" {
		select {
		case <-poll.C:
			line = listening.FindString(log.String())
		case <-deadline:
			t.Fatalf("no listening line within 60s:\n%s", log.String())
		}
	}
	cancel()
	require.Equal(t, 0, <-exit, log.String())

	keys := func(line string) string {
		var k []string
		for _, m := range regexp.MustCompile(`(?:^| )([a-z_]+)=`).FindAllStringSubmatch(line, -1) {
			k = append(k, m[1])
		}
		return strings.Join(k, " ")
	}
	require.Equal(t, keys(line), keys(sample), "README's sample:\n%s\nthe server's line:\n%s", sample, line)
}
