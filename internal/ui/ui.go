// Package ui holds the operator dashboard's machinery: its templates and
// assets (embedded, so the dashboard works offline), the signed session
// cookie and its CSRF token, and the server-rendered SVG charts. The
// handlers live in package tdsui (dashboard.go), where they call the same
// methods as the JSON admin API.
package ui

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// ContentSecurityPolicy is sent with every page: scripts and styles come
// from the embedded files only, never inline.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Page is what every template gets.
type Page struct {
	// Title is the page's title; Nav names the menu entry to highlight.
	Title, Nav string
	// Base is the relative path from the page to the dashboard's root
	// ("./" or "../"), so that links work under any mount prefix.
	Base string
	// CSRF is the session's token for the forms; empty when signed out.
	CSRF string
	// Notice and Error are said at the top of the page.
	Notice, Error string
	// Data is the page's own content.
	Data any
}

// Renderer renders the pages, each its own template set with the layout.
type Renderer struct {
	pages map[string]*template.Template
}

// NewRenderer parses the embedded templates.
func NewRenderer() (*Renderer, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	r := &Renderer{pages: map[string]*template.Template{}}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("tds: parsing the dashboard's template %s: %w", n, err)
		}
		r.pages[base] = t
	}
	return r, nil
}

// Render writes page name with status. It renders into a buffer first so
// that a template error becomes a 500, not half a page.
func (r *Renderer) Render(w http.ResponseWriter, status int, name string, p *Page) error {
	t, ok := r.pages[name]
	if !ok {
		return fmt.Errorf("tds: no dashboard page %q", name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		return fmt.Errorf("tds: rendering the dashboard's page %s: %w", name, err)
	}
	SecurityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, err := io.Copy(w, &buf)
	return err
}

// SecurityHeaders sets the headers of every dashboard answer.
func SecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// Assets serves the embedded CSS and JavaScript; mount it with the path
// up to "assets/" stripped. A directory is not found, never listed.
func Assets() http.Handler {
	sub, _ := fs.Sub(assetFS, "assets")
	files := http.FileServerFS(filesOnly{sub})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	})
}

// filesOnly is an FS whose directories do not exist, so that
// http.FileServerFS answers 404 where it would list one.
type filesOnly struct{ fsys fs.FS }

// Open opens name unless it is a directory.
func (f filesOnly) Open(name string) (fs.File, error) {
	file, err := f.fsys.Open(name)
	if err != nil {
		return nil, err
	}
	if st, err := file.Stat(); err != nil || st.IsDir() {
		_ = file.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return file, nil
}

var funcs = template.FuncMap{
	"when":   when,
	"ago":    ago,
	"pretty": pretty,
	"deref":  deref,
	"sorted": sorted,
	"fmtf":   func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
	// The charts' geometry (chart.go), for the template that draws them.
	"chartWidth":  func() float64 { return ChartWidth },
	"chartHeight": func() float64 { return ChartHeight },
	"plotLeft":    func() float64 { return PlotLeft },
	"plotRight":   func() float64 { return PlotRight },
	"plotBottom":  func() float64 { return PlotBottom },
	"secs": func(f float64) string {
		return (time.Duration(f * float64(time.Second))).Round(time.Millisecond).String()
	},
	"join":          strings.Join,
	"args":          func(v ...any) []any { return v },
	"sortedHeaders": sortedHeaders,
}

// Header is one stored header line.
type Header struct{ Name, Value string }

// sortedHeaders lists stored headers by name, one line per value.
func sortedHeaders(h map[string][]string) []Header {
	var out []Header
	for k, vs := range h {
		for _, v := range vs {
			out = append(out, Header{k, v})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// when renders a time as a <time> element in UTC, which the page's script
// rewrites in the viewer's time zone, keeping UTC on hover. A nil or zero
// time is a dash.
func when(v any) template.HTML {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x != nil {
			t = *x
		}
	}
	if t.IsZero() {
		return "—"
	}
	t = t.UTC()
	return template.HTML(fmt.Sprintf(`<time datetime="%s" title="%s">%s</time>`,
		t.Format(time.RFC3339Nano), t.Format("2006-01-02 15:04:05 UTC"), t.Format("2006-01-02 15:04:05 UTC")))
}

// ago says how long before now t was, in words.
func ago(now time.Time, t *time.Time) string {
	if t == nil {
		return ""
	}
	d := now.Sub(*t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1f h ago", d.Hours())
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

// pretty indents JSON; what is not JSON is shown as it is.
func pretty(raw json.RawMessage) string {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

// deref shows a string pointer, nil as "".
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// KV is one entry of a sorted map.
type KV struct {
	Key   string
	Value int64
}

// sorted lists a count map's entries (keys of a string or integer kind)
// by key, numbers in numeric order.
func sorted(m any) []KV {
	v := reflect.ValueOf(m)
	if v.Kind() != reflect.Map {
		return nil
	}
	out := make([]KV, 0, v.Len())
	numeric := false
	for it := v.MapRange(); it.Next(); {
		k := it.Key()
		var key string
		switch k.Kind() {
		case reflect.String:
			key = k.String()
		case reflect.Int, reflect.Int64, reflect.Int32:
			key, numeric = strconv.FormatInt(k.Int(), 10), true
		default:
			key = fmt.Sprint(k.Interface())
		}
		out = append(out, KV{Key: key, Value: it.Value().Int()})
	}
	sort.Slice(out, func(i, j int) bool {
		if numeric {
			a, _ := strconv.Atoi(out[i].Key)
			b, _ := strconv.Atoi(out[j].Key)
			return a < b
		}
		return out[i].Key < out[j].Key
	})
	return out
}
