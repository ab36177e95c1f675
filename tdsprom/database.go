package tdsprom

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/internal/store"
)

// DatabaseMaxAge is how old the metrics read from the database
// (tds_queue_*, tds_dead_letters, tds_zoho_webhooks_today,
// tds_zoho_api_calls_today, tds_reconcile_paused) may be: they are read at
// most once in this window, however many scrapers ask.
const DatabaseMaxAge = 5 * time.Second

// readTimeout bounds one read of the database metrics.
const readTimeout = 5 * time.Second

// DatabaseOption configures [Metrics.WatchDatabase]. A bad value is
// reported as an error naming the option, every bad one at once. The zero
// DatabaseOption does nothing.
type DatabaseOption struct {
	apply func(*dbSettings) error
}

type dbSettings struct {
	registry *tds.Registry
	now      func() time.Time
	logger   *slog.Logger
}

func optErr(name, format string, args ...any) error {
	return fmt.Errorf("tdsprom: %s: %s", name, fmt.Sprintf(format, args...))
}

// WithRegistry sets the entity types that tds_dead_letters has a series
// for, 0 included: give the Registry the Handler and the Worker use.
// Defaults to [tds.ZohoRegistry].
func WithRegistry(r *tds.Registry) DatabaseOption {
	return DatabaseOption{func(s *dbSettings) error {
		if r == nil {
			return optErr("WithRegistry", "registry is nil")
		}
		s.registry = r
		return nil
	}}
}

// WithClock sets the clock that dates the reads: the day of
// tds_zoho_webhooks_today and tds_zoho_api_calls_today, and the age of
// tds_queue_oldest_pending_age_seconds. Give the clock given to the other
// components.
// Defaults to time.Now.
func WithClock(now func() time.Time) DatabaseOption {
	return DatabaseOption{func(s *dbSettings) error {
		if now == nil {
			return optErr("WithClock", "clock is nil")
		}
		s.now = now
		return nil
	}}
}

// WithLogger sets the logger that receives a failed read.
// Defaults to slog.Default().
func WithLogger(l *slog.Logger) DatabaseOption {
	return DatabaseOption{func(s *dbSettings) error {
		if l == nil {
			return optErr("WithLogger", "logger is nil")
		}
		s.logger = l
		return nil
	}}
}

// WatchDatabase registers the metrics read from db (tds_queue_jobs,
// tds_queue_oldest_pending_age_seconds, tds_queue_blocked_jobs,
// tds_dead_letters, tds_zoho_webhooks_today, tds_zoho_api_calls_today,
// tds_reconcile_paused) on the registerer of m. They are read at most
// every [DatabaseMaxAge]: concurrent scrapes wait for one read and share
// it. They are registered once per registerer: a later call, from this
// Metrics or another of the same registerer, changes nothing.
func (m *Metrics) WatchDatabase(db *bun.DB, opts ...DatabaseOption) error {
	if db == nil {
		return errors.New("tdsprom: WatchDatabase: db is nil")
	}
	st, err := store.For(db)
	if err != nil {
		return fmt.Errorf("tdsprom: WatchDatabase: %w", err)
	}
	s := &dbSettings{now: time.Now, logger: slog.Default()}
	var errs []error
	for _, o := range opts {
		if o.apply == nil {
			continue
		}
		if err := o.apply(s); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if s.registry == nil {
		s.registry = tds.ZohoRegistry()
	}
	err = m.reg.Register(newDBCollector(db, st, s))
	if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok || err == nil {
		return nil
	}
	return fmt.Errorf("tdsprom: WatchDatabase: registering the database metrics: %w", err)
}

// dbCollector exports the metrics read from the database. Collect reads
// them at most every maxAge: concurrent scrapes wait for one read and
// share it, and a failed read is kept for the window too, so that a
// struggling database is not asked again by every scraper.
type dbCollector struct {
	db     *bun.DB
	st     store.Store
	set    *dbSettings
	wall   func() time.Time // the wall clock of the cache; tests move it
	maxAge time.Duration

	mu     sync.Mutex // held during a read: scrapes arriving then wait for it
	counts *store.MetricCounts
	at     time.Time
	loaded bool
}

var (
	descQueueJobs = prometheus.NewDesc("tds_queue_jobs",
		"Unfinished jobs in the queue, by status and priority; 0 for each registered type's priority.",
		[]string{"status", "priority"}, nil)
	descOldestPending = prometheus.NewDesc("tds_queue_oldest_pending_age_seconds",
		"Age of the oldest job waiting in the queue (pending or retry); 0 when none waits.", nil, nil)
	descBlocked = prometheus.NewDesc("tds_queue_blocked_jobs",
		"Jobs blocked behind an earlier job of their entity.", nil, nil)
	descDeadLetters = prometheus.NewDesc("tds_dead_letters",
		"Dead letters waiting for an operator, by entity type.", []string{"entity_type"}, nil)
	descZohoToday = prometheus.NewDesc("tds_zoho_webhooks_today",
		"Events received today (UTC) from the zoho source, against Zoho's 1,000 webhooks a day.", nil, nil)
	descZohoCallsToday = prometheus.NewDesc("tds_zoho_api_calls_today",
		"Zoho API calls made today (UTC) by reconciliation for the zoho source, against its daily budget.", nil, nil)
	descReconcilePaused = prometheus.NewDesc("tds_reconcile_paused",
		"1 while a reconciliation run of the zoho source is paused at the daily budget, else 0.", nil, nil)
)

// unfinished are the job statuses tds_queue_jobs counts.
var unfinished = []string{string(tds.StatusPending), string(tds.StatusProcessing), string(tds.StatusRetry),
	string(tds.StatusDeadLetter)}

func newDBCollector(db *bun.DB, st store.Store, s *dbSettings) *dbCollector {
	return &dbCollector{db: db, st: st, set: s, wall: time.Now, maxAge: DatabaseMaxAge}
}

// Describe implements [prometheus.Collector].
func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueJobs, descOldestPending, descBlocked, descDeadLetters, descZohoToday,
		descZohoCallsToday, descReconcilePaused} {
		ch <- d
	}
}

// Collect implements [prometheus.Collector]. When the database cannot be
// read, the database-derived metrics are left out of the scrape (and the
// failure logged), the others are still served.
func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.get()
	if counts == nil {
		return
	}
	// Every unfinished status has a series for every registered type's
	// priority, 0 included: an empty queue is 0, not an absent series
	// that sum() turns into no result at all.
	type statusPriority struct {
		status   string
		priority int
	}
	jobs := make(map[statusPriority]int64)
	for _, t := range c.set.registry.Types() {
		for _, st := range unfinished {
			jobs[statusPriority{st, t.Priority}] = 0
		}
	}
	for _, j := range counts.Jobs {
		jobs[statusPriority{j.Status, j.Priority}] = j.N
	}
	for k, n := range jobs {
		ch <- prometheus.MustNewConstMetric(descQueueJobs, prometheus.GaugeValue, float64(n), k.status, strconv.Itoa(k.priority))
	}
	age := 0.0
	if counts.OldestWaiting != nil {
		age = nonNegative(counts.At.Sub(*counts.OldestWaiting))
	}
	ch <- prometheus.MustNewConstMetric(descOldestPending, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(descBlocked, prometheus.GaugeValue, float64(counts.Blocked))
	// Every registered type has its series, 0 included, so that a drop to
	// none is seen as such.
	dead := make(map[string]int64)
	for _, t := range c.set.registry.Types() {
		dead[t.Name] = 0
	}
	for _, d := range counts.DeadLetters {
		dead[d.EntityType] = d.N
	}
	for et, n := range dead {
		ch <- prometheus.MustNewConstMetric(descDeadLetters, prometheus.GaugeValue, float64(n), et)
	}
	ch <- prometheus.MustNewConstMetric(descZohoToday, prometheus.GaugeValue, float64(counts.SourceSince))
	ch <- prometheus.MustNewConstMetric(descZohoCallsToday, prometheus.GaugeValue, float64(counts.APICallsToday))
	ch <- prometheus.MustNewConstMetric(descReconcilePaused, prometheus.GaugeValue, float64(min(counts.PausedRuns, 1)))
}

// get returns counts no older than maxAge, reading them if needed, or nil
// when the last read failed.
func (c *dbCollector) get() *store.MetricCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded && c.wall().Sub(c.at) < c.maxAge {
		return c.counts
	}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	now := c.set.now().UTC().Truncate(time.Microsecond)
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	counts, err := c.st.MetricCounts(ctx, c.db, tds.DefaultSource, day)
	if err != nil {
		c.set.logger.LogAttrs(ctx, slog.LevelWarn, "tdsprom: reading the database metrics", slog.Any("error", err))
		counts = nil
	} else {
		counts.At = now
	}
	c.counts, c.at, c.loaded = counts, c.wall(), true
	return counts
}
