package canonical

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// errScan reports that the fast scanner met something it does not handle
// (in practice: JSON that is not valid); the caller then asks the
// token-based walk, which is slower and exact.
var errScan = errors.New("canonical: scan")

// scanner checks the bounds of check over raw bytes, with no
// allocation per token: the ingest path runs it on every webhook.
type scanner struct {
	b []byte
	i int
	// top records the keys of the top-level object when set.
	top  func(key string) error
	keys []string // scratch for small objects' keys
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value checks one value at depth (the number of enclosing containers).
func (s *scanner) value(depth int) error {
	s.ws()
	if s.i >= len(s.b) {
		return errScan
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		start := s.i
		for s.i < len(s.b) {
			c := s.b[s.i]
			if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
				s.i++
				continue
			}
			break
		}
		if !validNumber(s.b[start:s.i]) {
			return errScan
		}
		return CheckNumber(string(s.b[start:s.i]))
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
				s.i += len(lit)
				return nil
			}
		}
	}
	return errScan
}

// validNumber reports whether b is a JSON number literal.
func validNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	return i == len(b)
}

// str scans a string at s.i and returns its value; the value is decoded
// only when it holds an escape.
func (s *scanner) str() (string, error) {
	start := s.i
	s.i++
	escaped, ascii := false, true
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c < 0x20:
			return "", errScan // a control character must be escaped
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				return "", errScan
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) || !isHex4(s.b[s.i+2:s.i+6]) {
					return "", errScan
				}
				s.i += 6
			default:
				return "", errScan
			}
			continue
		case c >= utf8.RuneSelf:
			ascii = false
		case c == '"':
			s.i++
			raw := s.b[start:s.i]
			if !ascii && !utf8.Valid(raw) {
				// encoding/json reads invalid bytes as U+FFFD, which
				// can make two keys one: leave it to the exact walk.
				return "", errScan
			}
			if !escaped {
				return string(raw[1 : len(raw)-1]), nil
			}
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				return "", errScan
			}
			return v, nil
		}
		s.i++
	}
	return "", errScan
}

func (s *scanner) object(depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("nested deeper than %d levels", MaxDepth)
	}
	s.i++ // {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	// Small objects compare keys in a slice, large ones in a map.
	mark := len(s.keys)
	defer func() { s.keys = s.keys[:mark] }()
	var seen map[string]struct{}
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return errScan
		}
		k, err := s.str()
		if err != nil {
			return err
		}
		if seen != nil {
			if _, dup := seen[k]; dup {
				return fmt.Errorf("key %q appears twice in one object", truncate(k))
			}
			seen[k] = struct{}{}
		} else {
			for _, prev := range s.keys[mark:] {
				if prev == k {
					return fmt.Errorf("key %q appears twice in one object", truncate(k))
				}
			}
			s.keys = append(s.keys, k)
			if len(s.keys)-mark > 16 {
				seen = make(map[string]struct{}, 32)
				for _, prev := range s.keys[mark:] {
					seen[prev] = struct{}{}
				}
			}
		}
		if depth == 1 && s.top != nil {
			if err := s.top(k); err != nil {
				return err
			}
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return errScan
		}
		s.i++
		if err := s.value(depth); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return errScan
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return errScan
		}
	}
}

func (s *scanner) array(depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("nested deeper than %d levels", MaxDepth)
	}
	s.i++ // [
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		if err := s.value(depth); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return errScan
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return errScan
		}
	}
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// scanValue runs the scanner over raw, which must hold one value and white
// space; errScan means "ask the exact walk".
func scanValue(raw []byte, top func(string) error) error {
	s := &scanner{b: raw, top: top}
	if err := s.value(0); err != nil {
		return err
	}
	s.ws()
	if s.i != len(s.b) {
		return errScan
	}
	return nil
}
