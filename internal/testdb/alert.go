package testdb

import (
	"fmt"
	"io"
	"strings"

	"github.com/tdscore/tds/internal/alert"
)

// OnlyRule is a rules document enabling rule alone, with fields (YAML
// flow mapping entries such as "threshold: 2", or ""); every other
// built-in rule is disabled.
func OnlyRule(rule, fields string) io.Reader {
	var b strings.Builder
	b.WriteString("rules:\n")
	for _, r := range alert.DefaultRules() {
		if r.Name == rule {
			if fields != "" {
				fields = ", " + fields
			}
			fmt.Fprintf(&b, "  - {name: %s, enabled: true%s}\n", r.Name, fields)
		} else {
			fmt.Fprintf(&b, "  - {name: %s, enabled: false}\n", r.Name)
		}
	}
	return strings.NewReader(b.String())
}
