package zoho

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The refresh-token flow is written by hand rather than with
// golang.org/x/oauth2: its Transport always sends "Authorization: Bearer",
// while Zoho documents "Zoho-oauthtoken", and it cannot enforce Zoho's limits
// on refreshes (a refresh storm gets the client blocked), answer a 401 with a
// single forced refresh, or treat Zoho's HTTP 200 {"error":…} answers as
// failures.

const (
	// refreshEarly renews a token this long before it expires.
	refreshEarly = 5 * time.Minute
	// refreshLimit refreshes at most are sent in any refreshWindow.
	refreshLimit  = 10
	refreshWindow = 10 * time.Minute
	// defaultTokenTTL is assumed when the answer carries no expires_in.
	defaultTokenTTL = time.Hour
	// maxTokenBody caps a token answer.
	maxTokenBody = 64 << 10
)

// ErrRefreshLimit is returned when a token refresh is needed but 10
// refreshes were already sent in the last 10 minutes; no request is made.
var ErrRefreshLimit = errors.New("zoho: token refresh limit reached (10 in 10 minutes)")

// refreshCall is one in-flight refresh that concurrent callers share.
type refreshCall struct {
	done chan struct{}
	err  error
}

type tokenAnswer struct {
	AccessToken      string          `json:"access_token"`
	ExpiresIn        json.Number     `json:"expires_in"`
	APIDomain        string          `json:"api_domain"`
	TokenType        string          `json:"token_type"`
	Error            json.RawMessage `json:"error"`
	ErrorDescription string          `json:"error_description"`
}

// accessToken returns a token valid for at least refreshEarly, refreshing
// when needed. With stale set (the token an API call was refused with), it
// refreshes unless another caller already replaced that token.
func (c *Client) accessToken(ctx context.Context, stale string) (string, error) {
	for {
		c.mu.Lock()
		if call := c.inflight; call != nil {
			c.mu.Unlock()
			select {
			case <-call.done:
			case <-ctx.Done():
				return "", ctx.Err()
			}
			// A refresh ended by its leader's context says nothing about
			// ours: try again (and perhaps lead).
			if call.err != nil && !isContextErr(call.err) {
				return "", call.err
			}
			if err := ctx.Err(); err != nil {
				return "", err
			}
			continue
		}
		now := c.cfg.Now()
		if c.token != "" && c.token != stale && now.Add(refreshEarly).Before(c.expiry) {
			tok := c.token
			c.mu.Unlock()
			return tok, nil
		}
		if stale != "" && c.token != "" && c.token != stale {
			// Someone refreshed after our call was refused; the new token may
			// be shorter-lived than refreshEarly but it is fresh.
			tok := c.token
			c.mu.Unlock()
			return tok, nil
		}
		// Drop refreshes older than the window, then check the budget.
		kept := c.refreshes[:0]
		for _, t := range c.refreshes {
			if now.Sub(t) < refreshWindow {
				kept = append(kept, t)
			}
		}
		c.refreshes = kept
		if len(c.refreshes) >= refreshLimit {
			c.mu.Unlock()
			return "", ErrRefreshLimit
		}
		c.refreshes = append(c.refreshes, now)
		call := &refreshCall{done: make(chan struct{})}
		c.inflight = call
		c.mu.Unlock()

		ans, err := c.refresh(ctx)

		c.mu.Lock()
		if err == nil {
			c.token = ans.AccessToken
			c.expiry = c.cfg.Now().Add(ans.ttl())
			if d, ok := c.apiDomainOf(ans.APIDomain); ok {
				c.apiDomain = d
			}
		}
		call.err = err
		c.inflight = nil
		tok := c.token
		close(call.done)
		c.mu.Unlock()
		if h := c.cfg.Hooks.Refresh; h != nil {
			h(err)
		}
		if err != nil {
			return "", err
		}
		return tok, nil
	}
}

// ttl reads expires_in (seconds). Zoho's answers have carried it as a
// number; a missing or odd value falls back to an hour.
func (a tokenAnswer) ttl() time.Duration {
	if n, err := a.ExpiresIn.Int64(); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return defaultTokenTTL
}

// apiDomainOf accepts the token's api_domain only when it is one of the
// data centres' API hosts over https, or the configured APIURL: the access
// token goes there, so an answer tampered with (or a fake accounts host)
// must not send it over plain http or to another host.
func (c *Client) apiDomainOf(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	base, err := parseBase(s)
	if err != nil {
		return "", false
	}
	return base, isAPIHost(base) || base == c.cfg.APIURL
}

// refresh sends one refresh request. Its errors never carry the
// credentials or the token.
func (c *Client) refresh(ctx context.Context) (tokenAnswer, error) {
	form := url.Values{
		"refresh_token": {c.cfg.RefreshToken},
		"client_id":     {c.cfg.ClientID},
		"client_secret": {c.cfg.ClientSecret},
		"grant_type":    {"refresh_token"},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.accounts+"/oauth/v2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return tokenAnswer{}, fmt.Errorf("zoho: refreshing token: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return tokenAnswer{}, fmt.Errorf("zoho: refreshing token: %w", c.scrubErr(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody))
	if err != nil {
		return tokenAnswer{}, fmt.Errorf("zoho: refreshing token: reading answer: %w", c.scrubErr(err))
	}
	var ans tokenAnswer
	jsonErr := json.Unmarshal(body, &ans)
	switch {
	case len(ans.Error) > 0 && string(ans.Error) != "null" && string(ans.Error) != `""`:
		// Zoho answers some failures with HTTP 200 and {"error":"invalid_code"}.
		msg := strings.Trim(string(ans.Error), `"`)
		if ans.ErrorDescription != "" {
			msg += ": " + ans.ErrorDescription
		}
		return tokenAnswer{}, fmt.Errorf("zoho: refreshing token: HTTP %d: %s", resp.StatusCode, c.scrub(truncate(msg)))
	case resp.StatusCode != http.StatusOK:
		return tokenAnswer{}, fmt.Errorf("zoho: refreshing token: HTTP %d", resp.StatusCode)
	case jsonErr != nil:
		return tokenAnswer{}, errors.New("zoho: refreshing token: answer is not JSON")
	case ans.AccessToken == "":
		return tokenAnswer{}, errors.New("zoho: refreshing token: answer has no access_token")
	}
	return ans, nil
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
