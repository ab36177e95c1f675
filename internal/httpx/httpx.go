// Package httpx is the HTTP plumbing tds' public handlers share: the JSON
// answer shape, the mux's 404/405 in that shape, the client address behind
// trusted proxies, and the limiter of refused requests per address.
package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ErrorBody is every error answer.
type ErrorBody struct {
	Success bool   `json:"success"`
	Error   string `json:"error"`
}

// WriteJSON answers v as JSON with status, uncacheable and unsniffable.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers the error shape with status and msg.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, ErrorBody{Success: false, Error: msg})
}

// Unavailable is the error of a 503 answer.
const Unavailable = "database unavailable: retry later"

// WriteUnavailable answers 503 with a Retry-After of retryAfter.
func WriteUnavailable(w http.ResponseWriter, retryAfter time.Duration) {
	SetRetryAfter(w.Header(), retryAfter)
	WriteError(w, http.StatusServiceUnavailable, Unavailable)
}

// SetRetryAfter sets the Retry-After header to d, rounded up to whole
// seconds.
func SetRetryAfter(h http.Header, d time.Duration) {
	secs := int((d + time.Second - 1) / time.Second)
	h.Set("Retry-After", strconv.Itoa(secs))
}

// PublicError is err's message without its package prefix ("tds: ",
// "tdsreconcile: ", ...). Only errors that describe the request itself are
// shown to clients.
func PublicError(err error) string {
	msg := err.Error()
	if pkg, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(pkg, "tds") && !strings.ContainsAny(pkg, " :") {
		return rest
	}
	return msg
}

// ServeMux serves r with mux, its own 404 and 405 answers (Allow header
// kept) rewritten in the JSON error shape.
func ServeMux(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	if _, pattern := mux.Handler(r); pattern == "" {
		w = &muxErrorWriter{ResponseWriter: w}
	}
	mux.ServeHTTP(w, r)
}

// muxErrorWriter replaces the text body of the mux's own 404 and 405
// answers with the JSON error shape.
type muxErrorWriter struct {
	http.ResponseWriter
	replaced bool
}

func (m *muxErrorWriter) WriteHeader(code int) {
	var msg string
	switch code {
	case http.StatusNotFound:
		msg = "not found"
	case http.StatusMethodNotAllowed:
		msg = "method not allowed"
	default:
		m.ResponseWriter.WriteHeader(code)
		return
	}
	m.replaced = true
	m.ResponseWriter.Header().Del("Content-Length")
	WriteError(m.ResponseWriter, code, msg)
}

func (m *muxErrorWriter) Write(b []byte) (int, error) {
	if m.replaced {
		return len(b), nil
	}
	return m.ResponseWriter.Write(b)
}

// ParsePrefixes parses addresses and CIDR prefixes ("10.0.0.0/8"); bad
// reports the first that is neither.
func ParsePrefixes(list []string) (out []netip.Prefix, bad string) {
	for _, p := range list {
		if strings.Contains(p, "/") {
			pp, err := netip.ParsePrefix(p)
			if err != nil {
				return nil, p
			}
			out = append(out, pp.Masked())
			continue
		}
		a, err := netip.ParseAddr(p)
		if err != nil {
			return nil, p
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, ""
}

// ClientIP is the address r came from: the peer, or, when the peer is a
// trusted proxy, the nearest untrusted address of X-Forwarded-For.
func ClientIP(r *http.Request, trusted []netip.Prefix) string {
	addr, ok := peer(r)
	if !ok {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
	if !InPrefixes(trusted, addr) {
		return addr.String()
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		addr = a.Unmap()
		if !InPrefixes(trusted, addr) {
			break
		}
	}
	return addr.String()
}

// FromTrustedProxy tells whether r's peer is one of trusted.
func FromTrustedProxy(r *http.Request, trusted []netip.Prefix) bool {
	addr, ok := peer(r)
	return ok && InPrefixes(trusted, addr)
}

// peer is r's peer address.
func peer(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return addr.Unmap(), true
}

// InPrefixes tells whether a is in one of ps.
func InPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ReadBody reads at most limit bytes of r's body. On failure it returns
// the answer refusing the request: 413 for a larger body, 400 for one that
// could not be read.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, status int, msg string) {
	tooLarge := fmt.Sprintf("body larger than %d bytes", limit)
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, http.StatusRequestEntityTooLarge, tooLarge
		}
		return nil, http.StatusBadRequest, "could not read the body"
	}
	return body, 0, ""
}

// JSONErrText is a JSON decoder's error, short and free of Go type names.
func JSONErrText(err error) string {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Sprintf("%s at offset %d", se.Error(), se.Offset)
	}
	if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return "the body must be a JSON object"
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "unexpected end of input"
	}
	return err.Error()
}

// Scrubbed is err with its text replaced by msg, a copy with the secret
// parts of a URL removed; it still matches context.Canceled and
// context.DeadlineExceeded when err did, and nothing else of err.
func Scrubbed(msg string, err error) error {
	return &scrubbedError{msg: msg, ctx: contextErr(err)}
}

// scrubbedError is an error whose text lost the secret parts of a URL.
type scrubbedError struct {
	msg string
	ctx error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.ctx }

// contextErr is the context error err matches, or nil.
func contextErr(err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return context.DeadlineExceeded
	}
	return nil
}
