package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"
)

// sqlStats adds up the time spent per kind of statement (its first words).
type sqlStats struct {
	mu  sync.Mutex
	dur map[string]time.Duration
	n   map[string]int
}

func (s *sqlStats) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }

func (s *sqlStats) AfterQuery(_ context.Context, ev *bun.QueryEvent) {
	q := strings.Join(strings.Fields(ev.Query), " ")
	if len(q) > 60 {
		q = q[:60]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dur[q] += time.Since(ev.StartTime)
	s.n[q]++
}

func (s *sqlStats) print(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.dur))
	for k := range s.dur {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return s.dur[keys[i]] > s.dur[keys[j]] })
	for _, k := range keys[:min(12, len(keys))] {
		fmt.Fprintf(w, "%10s %7d %8s/op  %s\n", s.dur[k].Round(time.Millisecond), s.n[k], (s.dur[k] / time.Duration(s.n[k])).Round(time.Microsecond), k)
	}
}
