package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"time"
)

// SessionTTL is how long a sign-in lasts.
const SessionTTL = 12 * time.Hour

// CookieName is the session cookie's name.
const CookieName = "tds_session"

// Sessions signs and checks session cookies. A session is a random id and
// an expiry, signed with HMAC-SHA-256 under a key derived from the
// deployment's random secret (kept in the database, the caller's part)
// and an admin token: any process of the deployment with the same tokens
// accepts it, removing a token from the configuration ends the sessions it
// signed, and a cookie tells nothing about a token to one without the
// secret (no offline guessing). Signing out is recorded by id in the
// database (the caller's part).
type Sessions struct {
	keys [][]byte // keys[0] signs; every key verifies
}

// Session is a signed-in browser.
type Session struct {
	// ID is random, hex; it names the session in the revocation list.
	ID      string
	Expires time.Time
	key     []byte
}

// SecretBytes is the length of a deployment's session secret.
const SecretBytes = 32

// NewSessions derives a signing key from secret, the deployment's random
// session secret, and each admin token.
func NewSessions(secret []byte, tokens []string) *Sessions {
	s := &Sessions{}
	for _, t := range tokens {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("tds dashboard session key v2"))
		m.Write([]byte{0})
		m.Write([]byte(t))
		s.keys = append(s.keys, m.Sum(nil))
	}
	return s
}

// Issue returns a new session signed with the first key and its cookie
// value; ok is false when there is no key.
func (s *Sessions) Issue(now time.Time) (Session, string, bool) {
	if len(s.keys) == 0 {
		return Session{}, "", false
	}
	var raw [24]byte
	_, _ = rand.Read(raw[:16]) // never fails (crypto/rand)
	exp := now.Add(SessionTTL).Truncate(time.Second)
	binary.BigEndian.PutUint64(raw[16:], uint64(exp.Unix()))
	body := base64.RawURLEncoding.EncodeToString(raw[:])
	value := body + "." + base64.RawURLEncoding.EncodeToString(sign(s.keys[0], "session", body))
	return Session{ID: hex.EncodeToString(raw[:16]), Expires: exp, key: s.keys[0]}, value, true
}

// Parse checks a cookie value's signature and expiry.
func (s *Sessions) Parse(value string, now time.Time) (Session, bool) {
	body, mac64, ok := strings.Cut(value, ".")
	if !ok {
		return Session{}, false
	}
	mac, err := base64.RawURLEncoding.DecodeString(mac64)
	if err != nil {
		return Session{}, false
	}
	var key []byte
	for _, k := range s.keys { // every key is tried: the time does not tell which matched
		if hmac.Equal(mac, sign(k, "session", body)) && key == nil {
			key = k
		}
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if key == nil || err != nil || len(raw) != 24 {
		return Session{}, false
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(raw[16:])), 0)
	if !now.Before(exp) {
		return Session{}, false
	}
	return Session{ID: hex.EncodeToString(raw[:16]), Expires: exp, key: key}, true
}

// CSRF is the session's token for its forms: derived from the session, so
// it needs no storage, and useless without the cookie.
func (s Session) CSRF() string {
	return base64.RawURLEncoding.EncodeToString(sign(s.key, "csrf", s.ID))
}

// CheckCSRF tells whether token is the session's.
func (s Session) CheckCSRF(token string) bool {
	got, err := base64.RawURLEncoding.DecodeString(token)
	return err == nil && len(s.key) > 0 && hmac.Equal(got, sign(s.key, "csrf", s.ID))
}

// sign is the HMAC of purpose and msg under key.
func sign(key []byte, purpose, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(msg))
	return m.Sum(nil)
}
