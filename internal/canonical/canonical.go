// Package canonical re-encodes JSON so that equal values give equal bytes,
// and hashes the result: the content hash stored with every inbox event.
//
// The canonical form is persisted (through the hash), so it must never
// change: object keys sorted, no insignificant white space, strings in
// encoding/json's escaping without HTML escapes, numbers as their literal
// text.
//
// Only JSON that every database stores alike is accepted: valid UTF-8, no
// key repeated within an object, numbers of at most [MaxNumberDigits]
// digits with an exponent within ±[MaxExponent] (PostgreSQL's numeric, and
// so JSONB, refuses larger ones; SQLite keeps the text), nested at most
// [MaxDepth] deep.
package canonical

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds on a JSON number.
const (
	// MaxNumberDigits is the most digits a number's mantissa may have.
	MaxNumberDigits = 100
	// MaxExponent bounds the absolute value of a number's exponent.
	MaxExponent = 1000
	// MaxDepth is the deepest nesting of objects and arrays accepted. Deep
	// values cost encoding/json quadratic time (0.6 s for 9,000 levels in
	// 45 kB) and PostgreSQL's JSONB parser its stack.
	MaxDepth = 128
)

// Canonicalize returns raw in canonical form and reports whether a string or
// key of the value holds a NUL character, which PostgreSQL cannot store.
// raw must hold exactly one JSON value, within the bounds of the package
// doc. Its errors describe the input and may be shown to its sender.
func Canonicalize(raw []byte) (canon []byte, nul bool, err error) {
	if !utf8.Valid(raw) {
		return nil, false, errors.New("canonical JSON: invalid UTF-8")
	}
	// First, in one cheap pass, what Decode silently lets through (a
	// repeated key keeps its last value) or what would cost too much or
	// be refused by a database.
	if err := check(raw); err != nil {
		return nil, false, fmt.Errorf("canonical JSON: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false, fmt.Errorf("canonical JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false, errors.New("canonical JSON: data after the top-level value")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, false, fmt.Errorf("canonical JSON: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), hasNUL(v), nil
}

// frame is an open object or array of checkTokens's walk.
type frame struct {
	object    bool
	expectKey bool
	keys      map[string]struct{}
}

// check refuses repeated keys, out-of-bounds numbers and nesting deeper
// than MaxDepth, with the fast scanner or, for what it does not handle,
// the exact walk over tokens. Syntax errors it meets are returned; the
// decode that follows checks the rest.
func check(raw []byte) error {
	if err := scanValue(raw, nil); !errors.Is(err, errScan) {
		return err
	}
	return checkTokens(raw)
}

// checkTokens is check by encoding/json's tokens, without recursion:
// exact, and slow (a few allocations per token).
func checkTokens(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var stack []*frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.expectKey {
			if k, ok := tok.(string); ok {
				if _, dup := top.keys[k]; dup {
					return fmt.Errorf("key %q appears twice in one object", truncate(k))
				}
				top.keys[k] = struct{}{}
				top.expectKey = false
				continue
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top != nil && top.object {
					top.expectKey = true
				}
				if len(stack) == MaxDepth {
					return fmt.Errorf("nested deeper than %d levels", MaxDepth)
				}
				f := &frame{object: t == '{', expectKey: t == '{'}
				if f.object {
					f.keys = map[string]struct{}{}
				}
				stack = append(stack, f)
			default:
				if len(stack) == 0 {
					return errors.New("unbalanced brackets")
				}
				stack = stack[:len(stack)-1]
			}
			continue
		case json.Number:
			if err := CheckNumber(string(t)); err != nil {
				return err
			}
		}
		if top != nil && top.object {
			top.expectKey = true
		}
	}
}

// CheckNumber refuses a JSON number literal with more than MaxNumberDigits
// digits or an exponent beyond ±MaxExponent. n must be a valid literal.
func CheckNumber(n string) error {
	mant, exp, hasExp := strings.Cut(strings.ToLower(n), "e")
	digits := 0
	for _, c := range mant {
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	if digits > MaxNumberDigits {
		return fmt.Errorf("number %s has %d digits, more than %d", truncate(n), digits, MaxNumberDigits)
	}
	if hasExp {
		e, err := strconv.Atoi(strings.TrimPrefix(exp, "+"))
		if err != nil || e > MaxExponent || e < -MaxExponent {
			return fmt.Errorf("number %s has an exponent beyond ±%d", truncate(n), MaxExponent)
		}
	}
	return nil
}

// CheckObjectKeys refuses a JSON object whose top-level keys repeat or
// differ only in case, which encoding/json (matching struct fields
// without regard to case) would resolve silently: {"entity_id":"1",
// "Entity_ID":"2"}. raw that is not an object passes: its own parser
// reports that.
func CheckObjectKeys(raw []byte) error {
	var seen map[string]string
	var found error
	err := scanValue(raw, func(k string) error {
		if seen == nil {
			seen = make(map[string]string, 8)
		}
		fold := foldKey(k)
		if prev, ok := seen[fold]; ok {
			found = fmt.Errorf("keys %q and %q differ only in case", truncate(prev), truncate(k))
			return found
		}
		seen[fold] = k
		return nil
	})
	switch {
	case err == nil:
		return nil
	case found != nil && errors.Is(err, found):
		return found
	}
	// A repeated key, or something below the top level: the exact walk
	// says which, in its own words.
	return checkObjectKeysTokens(raw)
}

// checkObjectKeysTokens is CheckObjectKeys by encoding/json's tokens.
func checkObjectKeysTokens(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		k, _ := tok.(string)
		fold := foldKey(k)
		if prev, ok := seen[fold]; ok {
			if prev == k {
				return fmt.Errorf("key %q appears twice", truncate(k))
			}
			return fmt.Errorf("keys %q and %q differ only in case", truncate(prev), truncate(k))
		}
		seen[fold] = k
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

// foldKey maps k to one representative of the keys equal to it under
// Unicode simple case folding (strings.EqualFold, which encoding/json uses
// to match field names): each rune becomes the smallest of its fold orbit.
func foldKey(k string) string {
	var b strings.Builder
	for _, r := range k {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(m)
	}
	return b.String()
}

// truncate keeps error messages short whatever the input.
func truncate(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	for i := max; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return s[:max] + "…"
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
