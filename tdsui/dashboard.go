package tdsui

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/dberr"
	"github.com/tdscore/tds/internal/httpx"
	"github.com/tdscore/tds/internal/ui"
)

// The operator dashboard, under /ui/: server-rendered pages that call the
// same methods as the JSON admin API. Signing in with an admin token
// gives a signed session cookie (internal/ui); every POST carries the
// session's CSRF token. Links are relative, so the pages work under any
// mount prefix.

// maxFormBytes bounds a dashboard form.
const maxFormBytes = 64 << 10

// dashboard serves the /ui/ pages of a Handler.
type dashboard struct {
	h        *Handler
	pages    *ui.Renderer
	assets   http.Handler
	tokens   []string // the admin tokens, which key the sessions with the secret
	keysMu   sync.Mutex
	keys     *ui.Sessions // nil until first read from the database (sessions)
	on       bool         // an admin token is configured
	overview overviewCache
}

// newDashboard returns h's dashboard, whose sessions are signed with keys
// derived from the deployment's session secret and the admin tokens.
func newDashboard(h *Handler, tokens []string) (*dashboard, error) {
	pages, err := ui.NewRenderer()
	if err != nil {
		return nil, err
	}
	return &dashboard{h: h, pages: pages, assets: ui.Assets(), tokens: tokens, on: len(tokens) > 0}, nil
}

// sessions returns the session signer, reading the deployment's random
// secret from the database the first time, or storing a new one if the
// database has none (whichever process stores first wins; the others
// read its secret). The secret never changes, so it is read once.
func (d *dashboard) sessions(ctx context.Context) (*ui.Sessions, error) {
	d.keysMu.Lock()
	defer d.keysMu.Unlock()
	if d.keys != nil {
		return d.keys, nil
	}
	candidate := make([]byte, ui.SecretBytes)
	_, _ = rand.Read(candidate) // never fails (crypto/rand)
	secret, err := d.h.st.SessionKey(ctx, d.h.db, candidate, d.h.now())
	if err != nil {
		return nil, dbErr("reading the dashboard's session key", err)
	}
	if len(secret) < ui.SecretBytes {
		return nil, fmt.Errorf("tdsui: the dashboard's session key in tds_ui_keys is %d bytes: want %d", len(secret), ui.SecretBytes)
	}
	d.keys = ui.NewSessions(secret, d.tokens)
	return d.keys, nil
}

// overviewMaxAge is how old the overview's queue counts and charts may
// be: they count the last hour's jobs (tens of milliseconds with many
// thousands), which every load of the page, by every operator, should not
// pay for again. The page says when they were read.
const overviewMaxAge = 10 * time.Second

// overviewCache holds the overview's last counts. Its lock is held while
// they are read, so one request reads them and the others wait for it.
type overviewCache struct {
	mu      sync.Mutex
	at      time.Time
	stats   *tds.QueueStats
	minutes []tds.ThroughputMinute
}

// get returns counts at most overviewMaxAge old, reading them if needed.
func (c *overviewCache) get(ctx context.Context, q *tds.Queue) (*tds.QueueStats, []tds.ThroughputMinute, time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stats != nil && time.Since(c.at) < overviewMaxAge {
		return c.stats, c.minutes, c.at, nil
	}
	at := time.Now()
	// The two reads are independent: side by side, on two connections
	// where the pool has them, a refresh costs the slower one.
	var (
		stats           *tds.QueueStats
		minutes         []tds.ThroughputMinute
		statsErr, tpErr error
		wg              sync.WaitGroup
	)
	wg.Go(func() { stats, statsErr = q.Stats(ctx) })
	minutes, tpErr = q.Throughput(ctx)
	wg.Wait()
	if err := errors.Join(statsErr, tpErr); err != nil {
		return nil, nil, at, err
	}
	c.stats, c.minutes, c.at = stats, minutes, at
	return stats, minutes, at, nil
}

// base is the relative path from r's page to the dashboard's root, so
// that links need not know the prefix the Handler is mounted under.
func base(r *http.Request) string {
	rest := strings.TrimPrefix(r.URL.Path, "/ui/")
	if n := strings.Count(rest, "/"); n > 0 {
		return strings.Repeat("../", n)
	}
	return "./"
}

// secure tells whether the browser reached us over TLS: directly, or as
// a trusted proxy says.
func (d *dashboard) secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if !strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		return false
	}
	return httpx.FromTrustedProxy(r, d.h.trusted)
}

// session reads and checks the request's session cookie: its signature,
// its expiry, and that it was not signed out.
func (d *dashboard) session(r *http.Request) (ui.Session, bool, error) {
	c, err := r.Cookie(ui.CookieName)
	if err != nil {
		return ui.Session{}, false, nil
	}
	sessions, err := d.sessions(r.Context())
	if err != nil {
		return ui.Session{}, false, err
	}
	s, ok := sessions.Parse(c.Value, d.h.now())
	if !ok {
		return ui.Session{}, false, nil
	}
	revoked, err := d.h.st.SessionRevoked(r.Context(), d.h.db, s.ID)
	if err != nil {
		return ui.Session{}, false, dbErr("reading the dashboard's sessions", err)
	}
	return s, !revoked, nil
}

// pageFunc serves a signed-in request.
type pageFunc func(w http.ResponseWriter, r *http.Request, p *ui.Page, s ui.Session)

// get guards a page: a browser without a session goes to the sign-in.
func (d *dashboard) get(next pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok, err := d.session(r)
		p := &ui.Page{Base: base(r)}
		if err != nil {
			d.fail(w, r, p, err)
			return
		}
		if !ok {
			seeOther(w, p.Base+"login")
			return
		}
		p.CSRF = s.CSRF()
		p.Notice = notice(r.URL.Query())
		next(w, r, p, s)
	}
}

// post guards a form: a session and its CSRF token are required.
func (d *dashboard) post(next pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := &ui.Page{Base: base(r), Title: "Refused"}
		s, ok, err := d.session(r)
		if err != nil {
			d.fail(w, r, p, err)
			return
		}
		if !ok {
			p.Error = "You are signed out: sign in again."
			d.render(w, r, http.StatusUnauthorized, "error", p)
			return
		}
		p.CSRF = s.CSRF()
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			p.Error = "The form could not be read."
			d.render(w, r, http.StatusBadRequest, "error", p)
			return
		}
		if !s.CheckCSRF(r.PostForm.Get("csrf")) {
			p.Error = "Refused: the form's CSRF token is missing or wrong. Reload the page and try again."
			d.render(w, r, http.StatusForbidden, "error", p)
			return
		}
		next(w, withActor(r, slog.String("client_ip", httpx.ClientIP(r, d.h.trusted)), slog.String("session", s.ID)), p, s)
	}
}

func (d *dashboard) render(w http.ResponseWriter, r *http.Request, status int, name string, p *ui.Page) {
	if err := d.pages.Render(w, status, name, p); err != nil {
		d.h.logger.LogAttrs(r.Context(), slog.LevelError, "tds: dashboard page failed",
			slog.String("path", r.URL.Path), slog.Any("error", err))
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}

// fail renders an error of the core in words: 404, 503 or, logged, 500.
func (d *dashboard) fail(w http.ResponseWriter, r *http.Request, p *ui.Page, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, tds.ErrNotFound):
		status, p.Title, p.Error = http.StatusNotFound, "Not found", httpx.PublicError(err)+"."
	case errors.Is(err, tds.ErrDatabaseUnavailable):
		status, p.Title, p.Error = http.StatusServiceUnavailable, "Database unavailable",
			"The database is unavailable: try again in a moment."
	default:
		d.h.logger.LogAttrs(r.Context(), slog.LevelError, "tds: dashboard request failed",
			slog.String("path", r.URL.Path), slog.Any("error", err))
		p.Title, p.Error = "Error", "Something went wrong: the server's log says what."
	}
	d.render(w, r, status, "error", p)
}

// refuse renders a request the dashboard will not carry out, in words.
func (d *dashboard) refuse(w http.ResponseWriter, r *http.Request, p *ui.Page, status int, title, msg string) {
	p.Title, p.Error = title, msg
	d.render(w, r, status, "error", p)
}

// seeOther redirects to a relative URL as it is: http.Redirect would
// resolve it against the path the mount prefix was stripped from.
func seeOther(w http.ResponseWriter, to string) {
	w.Header().Set("Location", to)
	w.WriteHeader(http.StatusSeeOther)
}

// done redirects after a change to a page saying what was done, by code:
// no free text travels in the URL.
func done(w http.ResponseWriter, to, code string, n int64) {
	seeOther(w, fmt.Sprintf("%s?done=%s&n=%d", to, code, n))
}

// notice is the words of a done code.
func notice(q url.Values) string {
	n := q.Get("n")
	switch q.Get("done") {
	case "retried":
		return "Dead letter " + n + " is queued again."
	case "retried-many":
		return n + " dead letters are queued again."
	case "discarded":
		return "Dead letter " + n + " is discarded."
	case "acked":
		return "Alert " + n + " is acknowledged."
	case "silenced":
		return "Alert " + n + " is silenced."
	case "started":
		return "Run " + n + " has started."
	case "confirmed":
		return n + " held deletes are applied; the run tells what was skipped."
	}
	return ""
}

func (d *dashboard) serveLoginForm(w http.ResponseWriter, r *http.Request) {
	p := &ui.Page{Title: "Sign in", Base: base(r)}
	if !d.on {
		p.Error = "The dashboard is off: the server has no admin token (WithAdminToken)."
	}
	d.render(w, r, http.StatusOK, "login", p)
}

// serveLogin exchanges the admin token for a session cookie. Failures are
// counted against the client address ([WithSignInLimit]) and told to the
// Alerter, which counts them with the refused webhooks. The limit is
// checked after the token, so that others' failures from a shared address
// never keep out an operator with the right token; a wrong token from a
// limited address is answered 429 and counted again.
func (d *dashboard) serveLogin(w http.ResponseWriter, r *http.Request) {
	p := &ui.Page{Title: "Sign in", Base: base(r)}
	ip := httpx.ClientIP(r, d.h.trusted)
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	token := ""
	if err := r.ParseForm(); err == nil {
		token = strings.TrimSpace(r.PostForm.Get("token"))
	}
	valid := validAdminToken(d.h.admins, token)
	if _, limited := d.h.signIns.Limited(ip); limited && !valid {
		d.h.signIns.Refuse(ip)
		p.Error = "Too many failed sign-ins from this address: wait a minute."
		d.render(w, r, http.StatusTooManyRequests, "login", p)
		return
	}
	if !valid {
		if a := d.h.alerter; a != nil {
			a.Refused()
		}
		d.h.signIns.Refuse(ip)
		d.h.logger.LogAttrs(r.Context(), slog.LevelWarn, "tds: dashboard sign-in refused", slog.String("client_ip", ip))
		p.Error = "That is not an admin token."
		d.render(w, r, http.StatusUnauthorized, "login", p)
		return
	}
	sessions, err := d.sessions(r.Context())
	if err != nil {
		d.fail(w, r, p, err)
		return
	}
	s, value, _ := sessions.Issue(d.h.now())
	// No Path: the browser scopes the cookie to the directory of this
	// URL, the dashboard's root under whatever prefix it is mounted.
	http.SetCookie(w, &http.Cookie{Name: ui.CookieName, Value: value, Expires: s.Expires,
		MaxAge: int(ui.SessionTTL / time.Second), HttpOnly: true, Secure: d.secure(r), SameSite: http.SameSiteStrictMode})
	d.h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: dashboard signed in", slog.String("client_ip", ip))
	seeOther(w, "./")
}

// serveLogout records the session as signed out, so that its cookie is
// refused by every process even if the browser kept a copy.
func (d *dashboard) serveLogout(w http.ResponseWriter, r *http.Request, p *ui.Page, s ui.Session) {
	if err := d.h.st.RevokeSession(r.Context(), d.h.db, s.ID, s.Expires, d.h.now()); err != nil {
		d.fail(w, r, p, dbErr("signing out", err))
		return
	}
	http.SetCookie(w, &http.Cookie{Name: ui.CookieName, Value: "", MaxAge: -1, HttpOnly: true,
		Secure: d.secure(r), SameSite: http.SameSiteStrictMode})
	seeOther(w, p.Base+"login")
}

// overviewData is the overview page.
type overviewData struct {
	Now                 time.Time
	At                  time.Time // when Stats and the charts were read
	Stats               *tds.QueueStats
	ByStatus            []ui.KV
	Throughput, Latency ui.Chart
	overviewAlerts      // dashboard_alerts.go
	overviewReconcile   // dashboard_reconcile.go
}

func (d *dashboard) serveOverview(w http.ResponseWriter, r *http.Request, p *ui.Page, _ ui.Session) {
	ctx := r.Context()
	stats, minutes, readAt, err := d.overview.get(ctx, d.h.queue)
	if err != nil {
		d.fail(w, r, p, err)
		return
	}
	data := &overviewData{Now: d.h.now(), Stats: stats, At: readAt}
	for _, st := range tds.Statuses {
		data.ByStatus = append(data.ByStatus, ui.KV{Key: string(st), Value: stats.ByStatus[st]})
	}
	counts, lat := make([]float64, len(minutes)), make([]float64, len(minutes))
	for i, m := range minutes {
		counts[i], lat[i] = float64(m.Completed), m.LatencyAvgSeconds
	}
	at := func(i int) string { return minutes[i].Start.Format("15:04 UTC") }
	tick := func(i int) string { return minutes[i].Start.Format("15:04") }
	data.Throughput = ui.NewChart("Jobs completed per minute", counts,
		func(i int, v float64) string { return fmt.Sprintf("%s: %.0f completed", at(i), v) }, ui.Count, tick)
	data.Latency = ui.NewChart("End-to-end latency (average)", lat,
		func(i int, v float64) string {
			return fmt.Sprintf("%s: average %s, max %s", at(i), seconds(v), seconds(minutes[i].LatencyMaxSeconds))
		}, seconds, tick)
	if err := d.firingAlerts(ctx, &data.overviewAlerts); err != nil {
		d.fail(w, r, p, err)
		return
	}
	if err := d.lastRun(ctx, &data.overviewReconcile); err != nil {
		d.fail(w, r, p, err)
		return
	}
	p.Title, p.Nav, p.Data = "Overview", "overview", data
	d.render(w, r, http.StatusOK, "overview", p)
}

// seconds says a latency in words.
func seconds(v float64) string {
	return time.Duration(math.Round(v*1000) * float64(time.Millisecond)).String()
}

// dashboardPageSize is how many rows a list page shows.
const dashboardPageSize = 50

// pageQuery is q with the dashboard's page size unless it names one.
func pageQuery(q url.Values) url.Values {
	if q.Get("limit") == "" {
		q.Set("limit", strconv.Itoa(dashboardPageSize))
	}
	return q
}

// nextQuery is q for the page after lastID.
func nextQuery(q url.Values, lastID int64) string {
	n := url.Values{}
	for k, v := range q {
		if k != "done" && k != "n" {
			n[k] = v
		}
	}
	n.Set("before_id", strconv.FormatInt(lastID, 10))
	return n.Encode()
}

type eventsData struct {
	Q        url.Values
	Statuses []tds.EventStatus
	Events   []tds.InboxEvent
	Next     string
}

func (d *dashboard) serveEvents(w http.ResponseWriter, r *http.Request, p *ui.Page, _ ui.Session) {
	q := pageQuery(r.URL.Query())
	p.Title, p.Nav = "Events", "events"
	data := &eventsData{Q: q, Statuses: tds.EventStatuses}
	p.Data = data
	f, err := eventFilterOf(q)
	if err != nil {
		p.Error = "The filter is not valid: " + err.Error() + "."
		d.render(w, r, http.StatusBadRequest, "events", p)
		return
	}
	if data.Events, err = d.h.inbox.List(r.Context(), f); err != nil {
		d.fail(w, r, p, err)
		return
	}
	if len(data.Events) == f.Limit {
		data.Next = nextQuery(q, data.Events[len(data.Events)-1].ID)
	}
	d.render(w, r, http.StatusOK, "events", p)
}

func (d *dashboard) serveEvent(w http.ResponseWriter, r *http.Request, p *ui.Page, _ ui.Session) {
	p.Nav = "events"
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		d.fail(w, r, p, fmt.Errorf("%w: no event %q", tds.ErrNotFound, r.PathValue("id")))
		return
	}
	ev, err := d.h.eventDetail(r.Context(), id)
	if err != nil {
		d.fail(w, r, p, err)
		return
	}
	p.Title, p.Data = fmt.Sprintf("Event %d", id), newEventPage(ev)
	d.render(w, r, http.StatusOK, "event", p)
}

// eventPage is an event's page: the API's answer, the times that apply
// to the event's status, and its job's attempts told in order.
type eventPage struct {
	*eventResponse
	Times   []timeFact
	History []historyLine
}

// timeFact is one time of an event, named for what happened then.
type timeFact struct {
	Label string
	At    *time.Time
}

// historyLine is one step of a job's story: an attempt that failed (with
// its error), an operator's retry, or how the job stands or ended.
type historyLine struct {
	Text  string
	At    *time.Time
	Class string // the badge: failed, succeeded, waiting, ...
}

// newEventPage says what happened to the event, and when, from its status:
// a dead letter has a dead-lettered time, not a "processed" one.
func newEventPage(resp *eventResponse) *eventPage {
	ev, job := resp.Event, resp.Job
	pg := &eventPage{eventResponse: resp}
	add := func(label string, at *time.Time) {
		if at != nil {
			pg.Times = append(pg.Times, timeFact{label, at})
		}
	}
	add("Received", &ev.ReceivedAt)
	if ev.Status == tds.EventStatusInvalid {
		add("Refused by validation", ev.ValidatedAt)
	}
	add("Queued", ev.QueuedAt)
	switch ev.Status {
	case tds.EventStatusSynced:
		add("Synced", ev.ProcessedAt)
	case tds.EventStatusSuperseded:
		add("Superseded", ev.ProcessedAt)
	case tds.EventStatusDiscarded:
		add("Discarded", ev.ProcessedAt)
	case tds.EventStatusDeadLetter:
		add("Dead-lettered", ev.ProcessedAt)
	case tds.EventStatusClosed:
		add("Closed", ev.ProcessedAt)
	case tds.EventStatusWaiting:
		if job != nil && job.Status != tds.StatusProcessing {
			add("Next attempt", &job.NextRetryAt)
		}
	}
	if job != nil {
		pg.History = jobHistory(job, resp.Attempts)
	}
	return pg
}

// jobHistory tells a job's attempts in order, each failure with its own
// attempt's error, then how the job stands. A dead letter retried by an
// operator starts its attempts again from 1: the retry is said where the
// numbers start again.
func jobHistory(job *tds.Job, attempts []tds.Attempt) []historyLine {
	var out []historyLine
	last := 0
	requeued := historyLine{Text: "queued again from the dead letters", Class: "pending"}
	for _, a := range attempts {
		if a.Attempt <= last {
			out = append(out, requeued)
		}
		last = a.Attempt
		text := fmt.Sprintf("attempt %d failed: %s", a.Attempt, a.Error)
		if a.ErrorCode != nil {
			text = fmt.Sprintf("attempt %d failed (%s): %s", a.Attempt, *a.ErrorCode, a.Error)
		}
		out = append(out, historyLine{Text: text, At: &a.FailedAt, Class: "failed"})
	}
	// An attempt that is not one of the failures (a success, a run in
	// progress, the next one due) numbered no higher than the last
	// failure belongs to a new round. A job in retry is due its next
	// attempt, a dead letter and a discarded one have none.
	discarded := job.Outcome != nil && *job.Outcome == tds.OutcomeDiscarded
	switch job.Status {
	case tds.StatusCompleted, tds.StatusProcessing, tds.StatusPending:
		if !discarded && len(attempts) > 0 && job.Attempt <= last {
			out = append(out, requeued)
		}
	}
	switch job.Status {
	case tds.StatusCompleted:
		outcome := tds.OutcomeSynced
		if job.Outcome != nil {
			outcome = *job.Outcome
		}
		switch outcome {
		case tds.OutcomeDiscarded:
			out = append(out, historyLine{Text: "discarded by an operator: " + deref(job.OutcomeDetail), At: job.CompletedAt, Class: "discarded"})
		default:
			text := fmt.Sprintf("attempt %d succeeded: %s", job.Attempt, outcome)
			if job.OutcomeDetail != nil {
				text += " (" + *job.OutcomeDetail + ")"
			}
			out = append(out, historyLine{Text: text, At: job.CompletedAt, Class: "succeeded"})
		}
	case tds.StatusDeadLetter:
		out = append(out, historyLine{Text: fmt.Sprintf("dead-lettered after attempt %d of %d", job.Attempt, job.MaxAttempts),
			At: &job.UpdatedAt, Class: "dead_letter"})
	case tds.StatusProcessing:
		out = append(out, historyLine{Text: fmt.Sprintf("attempt %d running", job.Attempt), Class: "pending"})
	default: // pending, retry
		out = append(out, historyLine{Text: fmt.Sprintf("attempt %d of %d due", job.Attempt+1, job.MaxAttempts),
			At: &job.NextRetryAt, Class: "pending"})
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

type deadLettersData struct {
	Q        url.Values
	Filtered bool
	Jobs     []tds.Job
	Next     string
	// Codes are the error codes of the dead letters there, the filter's
	// choices; Code is the one asked for, listed even when none has it.
	Codes []tds.ErrorCodeCount
	Code  string
}

func (d *dashboard) serveDeadLetters(w http.ResponseWriter, r *http.Request, p *ui.Page, _ ui.Session) {
	q := pageQuery(r.URL.Query())
	p.Title, p.Nav = "Dead letters", "dead"
	data := &deadLettersData{Q: q}
	p.Data = data
	f, err := deadLetterFilterOf(q)
	if err != nil {
		p.Error = "The filter is not valid: " + err.Error() + "."
		d.render(w, r, http.StatusBadRequest, "deadletters", p)
		return
	}
	data.Filtered = f.EntityType != "" || f.ErrorCode != "" || !f.Since.IsZero() || !f.Until.IsZero()
	if data.Jobs, err = d.h.queue.ListDeadLetters(r.Context(), f); err != nil {
		d.fail(w, r, p, err)
		return
	}
	if data.Codes, err = d.h.queue.DeadLetterErrorCodes(r.Context()); err != nil {
		d.fail(w, r, p, err)
		return
	}
	data.Code = f.ErrorCode
	if f.ErrorCode != "" && !slices.ContainsFunc(data.Codes, func(c tds.ErrorCodeCount) bool { return c.Code == f.ErrorCode }) {
		data.Codes = append(data.Codes, tds.ErrorCodeCount{Code: f.ErrorCode})
	}
	if len(data.Jobs) == f.Limit {
		data.Next = nextQuery(q, data.Jobs[len(data.Jobs)-1].ID)
	}
	d.render(w, r, http.StatusOK, "deadletters", p)
}

func (d *dashboard) serveRetryOne(w http.ResponseWriter, r *http.Request, p *ui.Page, _ ui.Session) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err == nil {
		_, err = d.h.queue.RetryDeadLetter(r.Context(), id)
	}
	if err != nil {
		d.fail(w, r, p, err)
		return
	}
	d.h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: dead letter retried", slog.Int64("job_id", id), actor(r))
	done(w, p.Base+"dead-letters", "retried", id)
}

// serveRetrySelected retries the ticked dead letters one by one; one
// retried meanwhile (no longer a dead letter) is skipped.
func (d *dashboard) serveRetrySelected(w http.ResponseWriter, r *http.Request, p *ui.Page, _ ui.Session) {
	ids := r.PostForm["id"]
	if len(ids) == 0 {
		d.refuse(w, r, p, http.StatusBadRequest, "Nothing retried", "Select at least one dead letter.")
		return
	}
	var n int64
	for _, s := range ids {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			continue
		}
		_, err = d.h.queue.RetryDeadLetter(r.Context(), id)
		switch {
		case errors.Is(err, tds.ErrNotFound):
		case err != nil:
			d.fail(w, r, p, err)
			return
		default:
			n++
		}
	}
	d.h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: dead letters retried", slog.Int64("count", n), actor(r))
	done(w, p.Base+"dead-letters", "retried-many", n)
}

// confirmData is the confirmation of a retry by filter.
type confirmData struct {
	EntityType, ErrorCode, Since, Until string
	Filtered                            bool
	Count                               int64
}

// serveRetryFilter first shows how many dead letters the filter selects
// (the API's dry run) and asks to confirm; the confirmed form retries.
func (d *dashboard) serveRetryFilter(w http.ResponseWriter, r *http.Request, p *ui.Page, _ ui.Session) {
	form := r.PostForm
	c := &confirmData{EntityType: form.Get("entity_type"), ErrorCode: form.Get("error_code"),
		Since: form.Get("since"), Until: form.Get("until")}
	q := queryParams{v: form}
	f := tds.DeadLetterFilter{EntityType: q.text("entity_type"), ErrorCode: q.text("error_code"), Since: q.time("since"), Until: q.time("until")}
	if q.err != nil {
		d.refuse(w, r, p, http.StatusBadRequest, "Nothing retried", "The filter is not valid: "+q.err.Error()+".")
		return
	}
	c.Filtered = c.EntityType != "" || c.ErrorCode != "" || c.Since != "" || c.Until != ""
	confirmed := form.Get("confirm") == "yes"
	n, err := d.h.queue.RetryDeadLetters(r.Context(), f, !confirmed)
	if err != nil {
		d.fail(w, r, p, err)
		return
	}
	if confirmed {
		d.h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: dead letters retried", slog.Int64("count", n), actor(r))
		done(w, p.Base+"dead-letters", "retried-many", n)
		return
	}
	c.Count = n
	p.Title, p.Nav, p.Data = "Retry dead letters", "dead", c
	d.render(w, r, http.StatusOK, "confirm", p)
}

func (d *dashboard) serveDiscard(w http.ResponseWriter, r *http.Request, p *ui.Page, _ ui.Session) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		d.fail(w, r, p, fmt.Errorf("%w: dead letter %q", tds.ErrNotFound, r.PathValue("id")))
		return
	}
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	if reason == "" {
		d.refuse(w, r, p, http.StatusBadRequest, "Not discarded", "A reason is required to discard a dead letter.")
		return
	}
	if err := d.h.queue.DiscardDeadLetter(r.Context(), id, reason); err != nil {
		d.fail(w, r, p, err)
		return
	}
	d.h.logger.LogAttrs(r.Context(), slog.LevelInfo, "tds: dead letter discarded",
		slog.Int64("job_id", id), slog.String("reason", reason), actor(r))
	done(w, p.Base+"dead-letters", "discarded", id)
}

// dbErr wraps an error of the database with what tdsui was doing; an
// error of an unreachable database matches [tds.ErrDatabaseUnavailable].
func dbErr(doing string, err error) error {
	if dberr.IsUnavailable(err) {
		return fmt.Errorf("tdsui: %s: %w: %w", doing, tds.ErrDatabaseUnavailable, err)
	}
	return fmt.Errorf("tdsui: %s: %w", doing, err)
}
