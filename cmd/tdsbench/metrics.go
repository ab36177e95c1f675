package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"

	"github.com/tdscore/tds"
	"github.com/tdscore/tds/tdsprom"
)

// scrapeEvery is how often a run with metrics on gathers them, more often
// than Prometheus's default of 15 s.
const scrapeEvery = time.Second

// metricsModes are the runs -metrics asks for: off, on, or both (off then
// on, to compare).
func metricsModes(m string) ([]bool, error) {
	switch m {
	case "off":
		return []bool{false}, nil
	case "on":
		return []bool{true}, nil
	case "both":
		return []bool{false, true}, nil
	}
	return nil, fmt.Errorf("-metrics must be off, on or both, got %q", m)
}

// metricsOptions are the options recording tds's metrics (package tdsprom)
// through the Handler's and the Worker's observers.
type metricsOptions struct {
	handler, worker []tds.Option
}

// withMetrics returns, when on, the options recording tds's metrics on a
// fresh registry, with the database-derived metrics of db, which a
// goroutine gathers every scrapeEvery as a scraper would, until stop is
// called.
func withMetrics(on bool, db *bun.DB) (opts metricsOptions, stop func(), err error) {
	if !on {
		return opts, func() {}, nil
	}
	reg := prometheus.NewRegistry()
	m, err := tdsprom.New(reg)
	if err != nil {
		return opts, nil, err
	}
	if err := m.WatchDatabase(db); err != nil {
		return opts, nil, err
	}
	opts.handler = []tds.Option{tds.WithWebhookObserver(m.ObserveWebhook), tds.WithBatchObserver(m.ObserveBatch)}
	opts.worker = []tds.Option{tds.WithObserver(m.ObserveJob)}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(scrapeEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_, _ = reg.Gather()
			}
		}
	})
	return opts, func() {
		close(done)
		wg.Wait()
	}, nil
}

// metricsSuffix names a row's metrics mode when it is on.
func metricsSuffix(on bool) string {
	if on {
		return ", metrics on"
	}
	return ""
}
