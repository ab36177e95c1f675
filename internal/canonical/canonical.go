// Package canonical re-encodes JSON so that equal values give equal bytes,
// and hashes the result: the content hash stored with every inbox event.
//
// The canonical form is persisted (through the hash), so it must never
// change: object keys sorted, no insignificant white space, strings in
// encoding/json's escaping without HTML escapes, numbers as their literal
// text.
package canonical

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

// Canonicalize returns raw in canonical form and reports whether a string or
// key of the value holds a NUL character, which PostgreSQL cannot store.
// raw must hold exactly one JSON value.
func Canonicalize(raw []byte) (canon []byte, nul bool, err error) {
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

// Hash is the content hash of JSON that is canonical already: the hex
// SHA-256 of its bytes.
func Hash(canon []byte) string {
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:])
}
