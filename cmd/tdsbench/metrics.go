package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tdscore/tds"
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

// withMetrics returns, when on, the option recording tds's metrics on a
// fresh registry, which a goroutine gathers every scrapeEvery as a scraper
// would, until stop is called.
func withMetrics(on bool) (opts []tds.Option, stop func()) {
	if !on {
		return nil, func() {}
	}
	reg := prometheus.NewRegistry()
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
	return []tds.Option{tds.WithMetrics(reg)}, func() {
		close(done)
		wg.Wait()
	}
}

// metricsSuffix names a row's metrics mode when it is on.
func metricsSuffix(on bool) string {
	if on {
		return ", metrics on"
	}
	return ""
}
