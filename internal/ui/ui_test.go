package ui

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTemplatesParse(t *testing.T) {
	r, err := NewRenderer()
	require.NoError(t, err)
	for _, name := range []string{"login", "error", "overview", "events", "event", "deadletters", "confirm", "alerts", "runs", "run"} {
		require.Contains(t, r.pages, name)
	}
	w := httptest.NewRecorder()
	require.NoError(t, r.Render(w, 200, "login", &Page{Title: "Sign in", Base: "./", Error: "<b>no</b>"}))
	body := w.Body.String()
	require.Contains(t, body, "&lt;b&gt;no&lt;/b&gt;")
	require.NotContains(t, body, "style=")
	require.Equal(t, ContentSecurityPolicy, w.Header().Get("Content-Security-Policy"))
}

func TestSessions(t *testing.T) {
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	s := NewSessions([]string{"token-one-0123456789", "token-two-0123456789"})
	sess, value, ok := s.Issue(now)
	require.True(t, ok)
	got, ok := s.Parse(value, now.Add(SessionTTL-time.Second))
	require.True(t, ok)
	require.Equal(t, sess.ID, got.ID)
	require.True(t, got.CheckCSRF(sess.CSRF()))
	require.False(t, got.CheckCSRF(""))
	_, ok = s.Parse(value, now.Add(SessionTTL))
	require.False(t, ok, "expired after 12 h")

	// Signed with the first token, accepted while any configured token
	// is; refused once the signing token is removed.
	rotated := NewSessions([]string{"token-new-0123456789", "token-one-0123456789"})
	_, ok = rotated.Parse(value, now)
	require.True(t, ok)
	_, ok = NewSessions([]string{"token-two-0123456789"}).Parse(value, now)
	require.False(t, ok)

	// Any change to the cookie breaks its signature.
	body, mac, _ := strings.Cut(value, ".")
	tampered := []byte(body)
	tampered[0] ^= 1
	_, ok = s.Parse(string(tampered)+"."+mac, now)
	require.False(t, ok)
	_, ok = s.Parse("garbage", now)
	require.False(t, ok)
	_, _, ok = NewSessions(nil).Issue(now)
	require.False(t, ok, "no admin token, no session")
}

func TestChart(t *testing.T) {
	c := NewChart("t", []float64{0, 5, 10}, func(i int, v float64) string { return "" }, Count)
	require.False(t, c.Empty)
	require.Equal(t, "10", c.Max)
	require.Len(t, c.Bars, 3)
	require.Equal(t, 120.0, c.Bars[2].H)
	require.Equal(t, 60.0, c.Bars[1].H)
	require.Zero(t, c.Bars[0].H)
	require.True(t, NewChart("t", []float64{0, 0}, func(int, float64) string { return "" }, Count).Empty)
}
