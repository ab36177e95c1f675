package notify

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain fails the run when a test leaves a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSignalCoalescesAndRoutesByKey(t *testing.T) {
	var h Hub
	a, cancelA := h.Subscribe("a")
	b, cancelB := h.Subscribe("b")
	defer cancelB()
	h.Signal("a")
	h.Signal("a") // coalesced, must not block
	<-a
	select {
	case <-a:
		t.Fatal("second signal was not coalesced")
	case <-b:
		t.Fatal("signal of a reached b")
	default:
	}
	cancelA()
	cancelA()
	h.Signal("a")
	require.Empty(t, h.subs["a"])
}
