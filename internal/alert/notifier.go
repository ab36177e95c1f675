package alert

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/tdscore/tds/internal/httpx"
)

// Notifier delivers alerts somewhere. Notify sends alerts as one message
// and returns nil once the receiver accepted it; an error means the message
// may not have arrived and may be retried whole. It may be called
// concurrently, and must return when ctx is done. Every attempt of one
// notification carries the same [MessageID] in ctx.
type Notifier interface {
	Notify(ctx context.Context, alerts []Alert) error
}

// messageIDKey is the context key of a notification's id.
type messageIDKey struct{}

// WithMessageID returns ctx carrying id, the notification's id: the same
// on every attempt of one notification, so that a receiver can
// de-duplicate retries (the webhook notifier sends it as webhook-id). The
// [Dispatcher] sets it.
func WithMessageID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, messageIDKey{}, id)
}

// MessageID returns the notification id ctx carries, or "" when it has
// none.
func MessageID(ctx context.Context) string {
	id, _ := ctx.Value(messageIDKey{}).(string)
	return id
}

// NewMessageID returns a new random notification id, "msg_" followed by
// base32 text.
func NewMessageID() string { return "msg_" + rand.Text() }

// NotifierFunc adapts a function to [Notifier].
type NotifierFunc func(ctx context.Context, alerts []Alert) error

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, alerts []Alert) error { return f(ctx, alerts) }

var _ Notifier = NotifierFunc(nil)

// userAgent is sent with every notification.
const userAgent = "tds-alert/1"

// post sends body as JSON to rawURL with the extra headers and returns an
// error naming the receiver (what) unless the answer is 2xx. The URL is a
// credential (a Slack webhook's path, a ?token=): errors carry its scheme
// and host only. Redirects are not followed: a 3xx is a failure, so the
// signed message never travels to an address nobody configured.
func post(ctx context.Context, client *http.Client, what, rawURL string, body []byte, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("alert: %s: %w", what, redactErr(err, rawURL))
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := noRedirects(client).Do(req)
	if err != nil {
		return fmt.Errorf("alert: %s: %w", what, redactErr(err, rawURL))
	}
	defer resp.Body.Close()
	// A short read lets the connection be reused; the text helps the log.
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("alert: %s: receiver answered %d (%s): %s", what, resp.StatusCode, RedactURL(rawURL),
			scrubURL(strings.TrimSpace(string(msg)), rawURL))
	}
	return nil
}

// noRedirects returns a copy of client that follows no redirect: the
// 3xx itself is the answer.
func noRedirects(client *http.Client) *http.Client {
	if client == nil {
		client = http.DefaultClient
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// RedactURL returns what of a notifier URL may be logged: its scheme and
// host, followed by "/…" when a path or query was left out, such as
// "https://hooks.slack.com/…". User information never appears; a URL that
// does not parse is "[invalid URL]".
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "[invalid URL]"
	}
	s := u.Scheme + "://" + u.Host
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		s += "/…"
	}
	return s
}

// redactErr returns err without the secret parts of rawURL: a *url.Error
// names the redacted URL, and any other text of it is scrubbed. Context
// errors stay matchable with errors.Is.
func redactErr(err error, rawURL string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = &url.Error{Op: ue.Op, URL: RedactURL(rawURL), Err: ue.Err}
	}
	msg := err.Error()
	if clean := scrubURL(msg, rawURL); clean != msg {
		return httpx.Scrubbed(clean, err)
	}
	return err
}

// minSecretPart is the shortest path segment or query value scrubbed on
// its own; shorter ones ("v1", "1") carry no secret and are too common.
const minSecretPart = 4

// scrubURL replaces in s every secret part of rawURL, as a receiver or a
// transport error may echo it: the URL itself, its path, query and user
// information, and each path segment and query value.
func scrubURL(s, rawURL string) string {
	parts := []string{rawURL}
	if u, err := url.Parse(rawURL); err == nil {
		parts = append(parts, u.EscapedPath(), u.Path, u.RawQuery, u.Opaque, u.Fragment)
		if u.User != nil {
			parts = append(parts, u.User.String(), u.User.Username())
			if p, ok := u.User.Password(); ok {
				parts = append(parts, p)
			}
		}
		parts = append(parts, strings.Split(u.Path, "/")...)
		parts = append(parts, strings.Split(u.EscapedPath(), "/")...)
		for k, vs := range u.Query() {
			parts = append(parts, k+"=")
			parts = append(parts, vs...)
		}
		for _, kv := range strings.Split(u.RawQuery, "&") {
			_, v, _ := strings.Cut(kv, "=")
			parts = append(parts, v)
		}
	} else {
		// Unparsable: drop everything after the scheme's "//".
		if _, rest, ok := strings.Cut(rawURL, "//"); ok {
			parts = append(parts, rest)
		}
	}
	// Longest first, so a part never leaves a piece of a longer one.
	sort.Slice(parts, func(i, j int) bool { return len(parts[i]) > len(parts[j]) })
	for _, p := range parts {
		if len(p) >= minSecretPart && p != "/" {
			s = strings.ReplaceAll(s, p, "…")
		}
	}
	return s
}

// formatValue writes a value briefly: 412, 0.125, 1e+06.
func formatValue(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

// status is the Alertmanager status of an alert: resolved, else firing.
func status(a Alert) string {
	if a.State == StateResolved {
		return StateResolved
	}
	return StateFiring
}
