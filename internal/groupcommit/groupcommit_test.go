package groupcommit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type item struct {
	n      int
	result int
	batch  int
}

// Every caller gets its own outcome, and concurrent callers share batches
// no larger than the limit.
func TestBatcherGroupsConcurrentCalls(t *testing.T) {
	var batches atomic.Int64
	var maxSeen atomic.Int64
	release := make(chan struct{})
	b := New(8, 1, func(_ context.Context, batch []*item) {
		id := int(batches.Add(1))
		if id == 1 {
			<-release // hold the first batch so that the others pile up
		}
		if n := int64(len(batch)); n > maxSeen.Load() {
			maxSeen.Store(n)
		}
		for _, it := range batch {
			it.result, it.batch = it.n*2, id
		}
	})
	const callers = 40
	items := make([]*item, callers)
	var wg sync.WaitGroup
	started := make(chan struct{}, callers)
	for i := range callers {
		items[i] = &item{n: i}
		wg.Go(func() {
			started <- struct{}{}
			require.NoError(t, b.Do(context.Background(), items[i]))
		})
	}
	for range callers {
		<-started
	}
	close(release)
	wg.Wait()
	for i, it := range items {
		require.Equal(t, 2*i, it.result)
		require.NotZero(t, it.batch)
	}
	require.LessOrEqual(t, maxSeen.Load(), int64(8))
	require.Less(t, batches.Load(), int64(callers), "some calls shared a batch")
}

// A caller that gives up before a batch takes its item is told so, and
// its item never runs.
func TestBatcherAbandonedBeforeTaken(t *testing.T) {
	hold := make(chan struct{})
	entered := make(chan struct{})
	var ran sync.Map
	b := New(1, 1, func(_ context.Context, batch []*item) {
		for _, it := range batch {
			ran.Store(it.n, true)
			if it.n == 0 {
				close(entered)
				<-hold
			}
		}
	})
	var wg sync.WaitGroup
	wg.Go(func() { require.NoError(t, b.Do(context.Background(), &item{n: 0})) })
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, b.Do(ctx, &item{n: 1}), context.Canceled)
	close(hold)
	wg.Wait()
	_, ok := ran.Load(1)
	require.False(t, ok)
}
