package tds

import (
	"fmt"

	"github.com/tdscore/tds/internal/canonical"
)

// CanonicalJSON returns raw re-encoded so that equal JSON values give equal
// bytes whatever their key order and white space: object keys sorted, no
// insignificant white space, strings in one escaping. Numbers keep their
// literal text (1.0 and 1 stay different), so no precision is lost.
func CanonicalJSON(raw []byte) ([]byte, error) {
	c, _, err := canonical.Canonicalize(raw)
	if err != nil {
		return nil, fmt.Errorf("tds: %w", err)
	}
	return c, nil
}

// ContentHash returns the hex SHA-256 of the canonical JSON of raw: the
// content hash stored with every inbox event.
func ContentHash(raw []byte) (string, error) {
	c, err := CanonicalJSON(raw)
	if err != nil {
		return "", err
	}
	return canonical.Hash(c), nil
}
