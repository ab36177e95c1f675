package httpx

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// maxRefusalEntries bounds the addresses a Refusals remembers.
const maxRefusalEntries = 10000

// Refusals counts the refused requests of each client address in a
// token bucket: n tokens, refilled at n per period. It starts no
// goroutine: idle entries are dropped when the map is full.
type Refusals struct {
	n      float64
	period time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[netip.Prefix]*refusalEntry
	sweptAt time.Time // the last sweep of idle entries
}

type refusalEntry struct {
	tokens   float64   // refusals left, as of at
	at       time.Time // when tokens was computed
	loggedAt time.Time // the last log line
	unlogged int       // refusals since the last log line
}

// NewRefusals returns nil, which limits nothing, when n is 0.
func NewRefusals(n int, period time.Duration, now func() time.Time) *Refusals {
	if n == 0 {
		return nil
	}
	return &Refusals{n: float64(n), period: period, now: now, entries: make(map[netip.Prefix]*refusalEntry), sweptAt: now()}
}

// refusalKey is what an address is counted by: itself, or its /64 for
// IPv6, which one client usually holds whole.
func refusalKey(ip string) netip.Prefix {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Prefix{}
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// refill brings e's tokens up to now; the caller holds l.mu.
func (l *Refusals) refill(e *refusalEntry, now time.Time) {
	if d := now.Sub(e.at); d > 0 {
		e.tokens = math.Min(l.n, e.tokens+l.n*d.Seconds()/l.period.Seconds())
		e.at = now
	}
}

// Limited tells whether ip has no refusal left, and if so how long until
// it has one.
func (l *Refusals) Limited(ip string) (time.Duration, bool) {
	if l == nil {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[refusalKey(ip)]
	if !ok {
		return 0, false
	}
	now := l.now()
	l.refill(e, now)
	if e.tokens >= 1 {
		return 0, false
	}
	return time.Duration((1 - e.tokens) * float64(l.period) / l.n), true
}

// Refuse counts one refusal of ip, and tells whether to log it and how
// many refusals the line stands for.
func (l *Refusals) Refuse(ip string) (logIt bool, count int) {
	if l == nil {
		return true, 1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	key := refusalKey(ip)
	e, ok := l.entries[key]
	if !ok {
		l.makeRoom(now)
		e = &refusalEntry{tokens: l.n, at: now}
		l.entries[key] = e
	}
	l.refill(e, now)
	e.tokens = math.Max(0, e.tokens-1)
	e.unlogged++
	if !e.loggedAt.IsZero() && now.Sub(e.loggedAt) < l.period {
		return false, 0
	}
	count, e.unlogged, e.loggedAt = e.unlogged, 0, now
	return true, count
}

// makeRoom drops the idle entries, whose bucket is full again and whose
// log period is over, once a period or when the map is full; if every
// entry is busy, it drops some anyway: a flood from that many addresses is
// beyond what one process's bookkeeping can stop. The caller holds l.mu.
func (l *Refusals) makeRoom(now time.Time) {
	if len(l.entries) < maxRefusalEntries && now.Sub(l.sweptAt) < l.period {
		return
	}
	l.sweptAt = now
	for k, e := range l.entries {
		l.refill(e, now)
		if e.tokens >= l.n && now.Sub(e.loggedAt) >= l.period {
			delete(l.entries, k)
		}
	}
	for k := range l.entries {
		if len(l.entries) < maxRefusalEntries*9/10 {
			break
		}
		delete(l.entries, k)
	}
}
