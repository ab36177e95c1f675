// Package alertmanager holds no code: its test checks the sample
// Alertmanager configuration shipped in this folder with amtool.
package alertmanager

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tdscore/tds/internal/alert"
)

// TestConfig runs amtool's checker on alertmanager.yml and checks that its
// route names every built-in rule. Without amtool on PATH the check skips,
// but fails when CI is set (.ci/run installs Debian's
// prometheus-alertmanager, which ships amtool).
func TestConfig(t *testing.T) {
	b, err := os.ReadFile("alertmanager.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range alert.DefaultRules() {
		if !strings.Contains(string(b), "|"+r.Name+"|") && !strings.Contains(string(b), `"`+r.Name+"|") &&
			!strings.Contains(string(b), "|"+r.Name+`"`) {
			t.Errorf("alertmanager.yml's route does not name the rule %s", r.Name)
		}
	}
	amtool, err := exec.LookPath("amtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("amtool is not on PATH and CI is set: install Debian's prometheus-alertmanager package")
		}
		t.Skip("amtool is not on PATH")
	}
	out, err := exec.Command(amtool, "check-config", "alertmanager.yml").CombinedOutput()
	if err != nil {
		t.Errorf("amtool check-config: %v\n%s", err, out)
	}
}
