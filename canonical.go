package tds

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// CanonicalJSON returns raw re-encoded so that equal JSON values give equal
// bytes whatever their key order and white space: object keys sorted, no
// insignificant white space, strings in one escaping. Numbers keep their
// literal text (1.0 and 1 stay different), so no precision is lost.
func CanonicalJSON(raw []byte) ([]byte, error) {
	c, _, err := canonicalize(raw)
	return c, err
}

// canonicalize is CanonicalJSON that also reports whether a string or key
// of the value holds a NUL character, which PostgreSQL cannot store.
func canonicalize(raw []byte) (canon []byte, nul bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false, fmt.Errorf("tds: canonical JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false, errors.New("tds: canonical JSON: data after the top-level value")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, false, fmt.Errorf("tds: canonical JSON: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), hasNUL(v), nil
}

func hasNUL(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.ContainsRune(v, 0)
	case []any:
		for _, e := range v {
			if hasNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range v {
			if strings.ContainsRune(k, 0) || hasNUL(e) {
				return true
			}
		}
	}
	return false
}

// ContentHash returns the hex SHA-256 of the canonical JSON of raw: the
// content hash stored with every inbox event.
func ContentHash(raw []byte) (string, error) {
	c, err := CanonicalJSON(raw)
	if err != nil {
		return "", err
	}
	return hashCanonical(c), nil
}

// hashCanonical is the content hash of JSON that is canonical already.
func hashCanonical(canon []byte) string {
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:])
}
