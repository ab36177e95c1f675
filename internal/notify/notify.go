// Package notify is an in-process wake-up signal: enqueuers signal a key
// (the database they wrote to), idle workers subscribed to that key wake up.
// Signals are level-triggered and coalesced: a subscriber that is busy when
// several signals arrive sees one pending wake-up, never a blocked sender.
package notify

import "sync"

// Hub routes signals to subscribers by key. The zero value is ready to use.
type Hub struct {
	mu   sync.Mutex
	subs map[any]map[chan struct{}]struct{}
}

// Default is the hub of the process.
var Default Hub

// Subscribe returns a channel that receives a value after each Signal of
// key (coalesced), and a function that ends the subscription.
func (h *Hub) Subscribe(key any) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = make(map[any]map[chan struct{}]struct{})
	}
	if h.subs[key] == nil {
		h.subs[key] = make(map[chan struct{}]struct{})
	}
	h.subs[key][ch] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			delete(h.subs[key], ch)
			if len(h.subs[key]) == 0 {
				delete(h.subs, key)
			}
		})
	}
}

// Signal wakes every subscriber of key without blocking.
func (h *Hub) Signal(key any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[key] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
