package nodetest_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/nodetest"
	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

// TestNodesLeaveNoGoroutines: every goroutine a node starts has an owner
// and an end. A whole network that ran a series and was closed leaves the
// goroutine count where it was (libp2p's process-wide goroutines are
// started by a first network before the baseline is taken).
func TestNodesLeaveNoGoroutines(t *testing.T) {
	runNetwork := func(t *testing.T) {
		auth := nodetest.Start(t, []string{node.RoleAuthority}, nil)
		a := []string{nodetest.Addr(auth)}
		ws := []*node.Node{nodetest.Start(t, []string{node.RoleWorker}, a), nodetest.Start(t, []string{node.RoleWorker}, a)}
		cl := nodetest.Start(t, []string{node.RoleClient}, a)
		nodetest.WaitFor(t, 10*time.Second, "registrations", func() bool { return auth.Authority.Workers() == 2 })
		s := piSeries(6)
		s.Module = wasm.Trivial
		for i := range s.Jobs {
			s.Jobs[i].Outputs = nil // the trivial module writes none
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if rep, err := cl.Client.Run(ctx, s, client.Hooks{}); err != nil || rep.Failed() != 0 {
			t.Fatalf("series: %v", err)
		}
		for _, n := range append([]*node.Node{cl}, append(ws, auth)...) {
			if err := n.Close(); err != nil && !strings.Contains(err.Error(), "closed") {
				t.Logf("close: %v", err)
			}
		}
	}
	t.Run("warm-up", runNetwork)
	base := runtime.NumGoroutine()
	t.Run("measured", runNetwork)
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after closing the network, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}
