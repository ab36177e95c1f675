// Package groupcommit groups concurrent requests into batches, so that
// callers who arrive together share one transaction and one commit.
//
// There is no background goroutine: up to a set number of callers at a
// time are leaders, each taking the waiting requests as a batch, running it
// and waking its callers. A leader whose own request is done hands the
// leadership to the oldest waiting request, so nobody leads for long and
// every waiter blocks on channels of its own.
package groupcommit

import (
	"context"
	"sync"
)

// request is one Do call waiting for its batch.
type request[T any] struct {
	item  T
	done  chan struct{} // closed when the batch holding it has ended
	lead  chan struct{} // receives the leadership of batches
	taken bool          // by a batch; guarded by Batcher.mu
	gone  bool          // the caller stopped waiting before a batch took it
}

// Batcher groups the items of concurrent Do calls into batches of at most
// size, with at most inflight batches running at once.
type Batcher[T any] struct {
	max      int
	inflight int
	run      func(ctx context.Context, batch []T)

	mu      sync.Mutex
	pending []*request[T]
	leaders int
}

// New returns a Batcher that runs each batch with run, which must give
// every item its outcome (through the item itself) before it returns. run
// gets the leading caller's context; it decides itself whether a batch
// outlives that caller.
func New[T any](size, inflight int, run func(ctx context.Context, batch []T)) *Batcher[T] {
	return &Batcher[T]{max: max(size, 1), inflight: max(inflight, 1), run: run}
}

// Do queues item and returns once a batch holding it has run: nil then,
// whatever the batch did (its outcome is in item). When ctx ends before a
// batch took item, Do returns ctx's error and item never runs; once a batch
// has taken it, Do waits for that batch.
func (b *Batcher[T]) Do(ctx context.Context, item T) error {
	r := &request[T]{item: item, done: make(chan struct{}), lead: make(chan struct{}, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, r)
	if b.leaders < b.inflight {
		b.leaders++
		r.lead <- struct{}{}
	}
	b.mu.Unlock()
	for {
		select {
		case <-r.done:
			return nil
		case <-r.lead:
			b.leadUntilDone(ctx, r)
		case <-ctx.Done():
			b.mu.Lock()
			taken := r.taken
			if !taken {
				r.gone = true
				select {
				case <-r.lead: // promoted meanwhile: pass it on
					b.handOffLocked()
				default:
				}
			}
			b.mu.Unlock()
			if !taken {
				return ctx.Err()
			}
			// A batch holds the item: its outcome is the answer.
			<-r.done
			return nil
		}
	}
}

// leadUntilDone runs batches until r's is done, then hands the leadership
// on, or gives it up when nothing waits.
func (b *Batcher[T]) leadUntilDone(ctx context.Context, r *request[T]) {
	for {
		batch := b.take()
		if len(batch) > 0 {
			items := make([]T, len(batch))
			for i, q := range batch {
				items[i] = q.item
			}
			func() {
				defer func() {
					for _, q := range batch {
						close(q.done)
					}
				}()
				b.run(ctx, items)
			}()
		}
		select {
		case <-r.done:
			b.mu.Lock()
			b.handOffLocked()
			b.mu.Unlock()
			return
		default:
		}
		if len(batch) == 0 {
			// r is in another leader's batch: wait for it there.
			b.mu.Lock()
			b.handOffLocked()
			b.mu.Unlock()
			return
		}
	}
}

// handOffLocked passes a leadership to the oldest request still waiting,
// or retires it.
func (b *Batcher[T]) handOffLocked() {
	for _, w := range b.pending {
		if !w.gone && !w.taken {
			select {
			case w.lead <- struct{}{}:
				return
			default: // w leads already
			}
		}
	}
	b.leaders--
}

// take removes up to max waiting requests from the queue, oldest first.
func (b *Batcher[T]) take() []*request[T] {
	b.mu.Lock()
	defer b.mu.Unlock()
	var batch []*request[T]
	i := 0
	for ; i < len(b.pending) && len(batch) < b.max; i++ {
		r := b.pending[i]
		if r.gone {
			continue
		}
		r.taken = true
		batch = append(batch, r)
	}
	b.pending = append(b.pending[:0], b.pending[i:]...)
	return batch
}
