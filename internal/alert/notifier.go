package alert

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Notifier delivers alerts somewhere. Notify sends alerts as one message
// and returns nil once the receiver accepted it; an error means the message
// may not have arrived and may be retried whole. It may be called
// concurrently, and must return when ctx is done.
type Notifier interface {
	Notify(ctx context.Context, alerts []Alert) error
}

// NotifierFunc adapts a function to [Notifier].
type NotifierFunc func(ctx context.Context, alerts []Alert) error

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, alerts []Alert) error { return f(ctx, alerts) }

var _ Notifier = NotifierFunc(nil)

// userAgent is sent with every notification.
const userAgent = "tds-alert/1"

// post sends body as JSON to url with the extra headers and returns an
// error naming the receiver (what) unless the answer is 2xx.
func post(ctx context.Context, client *http.Client, what, url string, body []byte, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("alert: %s: %w", what, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("alert: %s: %w", what, err)
	}
	defer resp.Body.Close()
	// A short read lets the connection be reused; the text helps the log.
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("alert: %s: receiver answered %d: %s", what, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return nil
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
