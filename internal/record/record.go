// Package record holds the small rules that tds and its packages apply
// alike: how a record's version time is read, how long an identity part
// may be, how a time is stored, and the name a process holds leases by.
package record

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// ZohoTimeLayout is the layout of Zoho's last_modified_time field.
const ZohoTimeLayout = "2006-01-02T15:04:05-0700"

// MaxIdentityBytes bounds an event's source, event type, entity type,
// entity id and delivery id, and a worker's id.
const MaxIdentityBytes = 200

// ParseTime reads a record's version: a JSON string in Zoho's layout or
// RFC 3339.
func ParseTime(v json.RawMessage) (time.Time, error) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return time.Time{}, fmt.Errorf("must be a string in the layout %s", ZohoTimeLayout)
	}
	for _, layout := range []string{ZohoTimeLayout, time.RFC3339Nano} {
		if t, err := time.Parse(layout, strings.TrimSpace(s)); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not in the layout %s", s, ZohoTimeLayout)
}

// IsNull tells a JSON null.
func IsNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// CheckKeyPart checks a part of an idempotency key or a lease owner's
// name, such as a source or a worker id.
func CheckKeyPart(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("must not be empty")
	}
	if len(s) > MaxIdentityBytes {
		return fmt.Errorf("must be at most %d bytes", MaxIdentityBytes)
	}
	return nil
}

// DBTime is how tds writes a time: UTC at microsecond precision, which
// both PostgreSQL and SQLite store exactly, so a value read back compares
// equal.
func DBTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// UTCPtr is *t in UTC, or nil.
func UTCPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// ProcessID names this process for the leases it holds: host, pid and a
// random suffix, unique among running processes.
func ProcessID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "worker"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b))
}
