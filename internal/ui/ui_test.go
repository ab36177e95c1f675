package ui

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/http"
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

// testSecret is a deployment's session secret.
var testSecret = bytes.Repeat([]byte{7}, 32)

func TestSessions(t *testing.T) {
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	s := NewSessions(testSecret, []string{"token-one-0123456789", "token-two-0123456789"})
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
	rotated := NewSessions(testSecret, []string{"token-new-0123456789", "token-one-0123456789"})
	_, ok = rotated.Parse(value, now)
	require.True(t, ok)
	_, ok = NewSessions(testSecret, []string{"token-two-0123456789"}).Parse(value, now)
	require.False(t, ok)

	// Any change to the cookie breaks its signature.
	body, mac, _ := strings.Cut(value, ".")
	tampered := []byte(body)
	tampered[0] ^= 1
	_, ok = s.Parse(string(tampered)+"."+mac, now)
	require.False(t, ok)
	_, ok = s.Parse("garbage", now)
	require.False(t, ok)
	_, _, ok = NewSessions(testSecret, nil).Issue(now)
	require.False(t, ok, "no admin token, no session")
}

// A cookie is no offline oracle for the admin token: its signature
// depends on the deployment's random secret, which the token alone does
// not give, so another deployment with the same token refuses it and a
// guess of the token cannot be checked against it.
func TestSessionsNotAnOracle(t *testing.T) {
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	const token = "token-one-0123456789"
	s := NewSessions(testSecret, []string{token})
	_, value, ok := s.Issue(now)
	require.True(t, ok)
	_, ok = NewSessions(bytes.Repeat([]byte{8}, 32), []string{token}).Parse(value, now)
	require.False(t, ok, "another deployment's secret")

	// The guesser's check: the key derived from the token alone.
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("tds dashboard session key v1"))
	body, mac64, _ := strings.Cut(value, ".")
	mac, err := base64.RawURLEncoding.DecodeString(mac64)
	require.NoError(t, err)
	require.False(t, hmac.Equal(mac, sign(m.Sum(nil), "session", body)), "the token alone verifies the cookie")
}

func TestChart(t *testing.T) {
	noLabel := func(int, float64) string { return "" }
	at := func(i int) string { return fmt.Sprintf("t%d", i) }
	c := NewChart("t", []float64{0, 5, 10}, noLabel, Count, at)
	require.False(t, c.Empty)
	require.Equal(t, "10", c.Max)
	require.Len(t, c.Bars, 3)
	require.Equal(t, PlotBottom-plotTop, c.Bars[2].H)
	require.Equal(t, (PlotBottom-plotTop)/2, c.Bars[1].H)
	require.Zero(t, c.Bars[0].H)
	require.Equal(t, PlotLeft, c.Bars[0].X, "the bars start right of the value axis")
	require.True(t, NewChart("t", []float64{0, 0}, noLabel, Count, at).Empty)

	// The value axis says 0, half and the top; the time axis labels the
	// newest bar and every 15th before it.
	var ys []string
	for _, tk := range c.YTicks {
		ys = append(ys, tk.Label)
	}
	require.Equal(t, []string{"0", "5", "10"}, ys)
	require.Equal(t, PlotBottom, c.YTicks[0].Y)
	require.Equal(t, plotTop, c.YTicks[2].Y)
	hour := make([]float64, 60)
	hour[59] = 1
	var xs []string
	for _, tk := range NewChart("t", hour, noLabel, Count, at).XTicks {
		xs = append(xs, tk.Label)
	}
	require.Equal(t, []string{"t14", "t29", "t44", "t59"}, xs)
}

// The assets are served file by file; their directory is not listed.
func TestAssetsNoListing(t *testing.T) {
	h := http.StripPrefix("/ui/assets/", Assets())
	for _, path := range []string{"/ui/assets/", "/ui/assets/./", "/ui/assets//"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		require.Equal(t, http.StatusNotFound, w.Code, path)
		require.NotContains(t, w.Body.String(), "<a href", path)
	}
	names, err := fs.ReadDir(assetFS, "assets")
	require.NoError(t, err)
	require.NotEmpty(t, names)
	for _, n := range names {
		if n.IsDir() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/ui/assets/"+n.Name()+"/", nil))
			require.Equal(t, http.StatusNotFound, w.Code, n.Name())
			continue
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/ui/assets/"+n.Name(), nil))
		require.Equal(t, http.StatusOK, w.Code, n.Name())
	}
}
