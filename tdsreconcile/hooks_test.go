package tdsreconcile

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tdscore/tds/internal/testdb"
)

// hookLog records what the hooks were called with.
type hookLog struct {
	mu        sync.Mutex
	ended     []SyncRun
	found     []string
	repaired  []string
	responses []string
	refreshes []error
}

func (l *hookLog) hooks() Hooks {
	add := func(list *[]string, s string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		*list = append(*list, s)
	}
	return Hooks{
		RunEnded: func(run SyncRun) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.ended = append(l.ended, run)
		},
		DriftFound:    func(typ string, kind DriftKind) { add(&l.found, typ+" "+string(kind)) },
		DriftRepaired: func(typ string, kind DriftKind) { add(&l.repaired, typ+" "+string(kind)) },
		APIResponse: func(endpoint string, status int, elapsed time.Duration) {
			if elapsed < 0 {
				status = -1
			}
			add(&l.responses, fmt.Sprintf("%s %d", endpoint, status))
		},
		TokenRefresh: func(err error) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.refreshes = append(l.refreshes, err)
		},
	}
}

// TestHooks: every hook of every WithHooks is called: the API's answers
// (a 429 retried included) and the token refresh, each drift item found
// and repaired, and the run as ended.
func TestHooks(t *testing.T) {
	testdb.EachDB(t, func(t *testing.T, tdb *testdb.DB) {
		ctx := context.Background()
		e := newReconcileEnv(t, tdb)
		a, b := &hookLog{}, &hookLog{}
		rc := e.newReconciler(t, WithHooks(a.hooks()), WithHooks(Hooks{}), WithHooks(b.hooks()))
		e.putProducts(t, 2, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Minute, false)
		e.fake.Fail(1, http.StatusTooManyRequests, "")

		run, err := rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly})
		require.NoError(t, err)
		require.Equal(t, RunCompleted, run.Status, run.Error)
		for _, l := range []*hookLog{a, b} {
			l.mu.Lock()
			require.Equal(t, []SyncRun{*run}, l.ended, "the run as ended, as GetRun gives it")
			require.NotNil(t, l.ended[0].FinishedAt)
			require.Equal(t, Full, l.ended[0].Mode)
			require.Equal(t, []string{"product missing_local", "product missing_local"}, l.found)
			require.Equal(t, []string{"product missing_local", "product missing_local"}, l.repaired)
			require.Equal(t, []string{"GET /items 429", "GET /items 200", "GET /items/{id} 200", "GET /items/{id} 200"}, l.responses)
			require.Equal(t, []error{nil}, l.refreshes)
			l.mu.Unlock()
		}

		// A dry run finds, repairs nothing, and ends.
		e.startMirror(t)
		e.drain(t)
		e.fake.Put("items", apiRecord("product", "pro-new", time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), 0))
		dry, err := rc.Run(ctx, Request{Mode: Full, EntityTypes: productsOnly, DryRun: true})
		require.NoError(t, err)
		a.mu.Lock()
		defer a.mu.Unlock()
		require.Len(t, a.ended, 2)
		require.True(t, a.ended[1].DryRun)
		require.Equal(t, dry.ID, a.ended[1].ID)
		require.Len(t, a.found, 3)
		require.Len(t, a.repaired, 2)
	})
}
