// Package prometheus holds no code: its test checks the Prometheus rules
// shipped in this folder with promtool.
package prometheus

import (
	"os"
	"os/exec"
	"testing"
)

// TestRules runs promtool's checker and the rules' unit tests. Without
// promtool on PATH it skips, but fails when CI is set, so a green CI run
// has checked the rules (.ci/run installs Debian's prometheus package).
func TestRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not on PATH and CI is set: install Debian's prometheus package")
		}
		t.Skip("promtool is not on PATH")
	}
	for _, args := range [][]string{
		{"check", "rules", "tds-alerts.yml"},
		{"test", "rules", "tds-alerts_test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
