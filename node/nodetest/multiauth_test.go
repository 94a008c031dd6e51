package nodetest_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/nodetest"
)

func knows(n *node.Node, id peer.ID) bool {
	return slices.ContainsFunc(n.KnownAuthorities(), func(a peer.AddrInfo) bool { return a.ID == id })
}

// TestAuthorityFailover: two authorities; the worker and the client
// bootstrap from A only and learn B (the worker from A's settings, the
// client from identify: B serves the registry). A goes away; the worker's
// registration, the client's discovery and the series carry on through B.
func TestAuthorityFailover(t *testing.T) {
	b := nodetest.Start(t, []string{node.RoleAuthority}, nil)
	a := nodetest.StartWith(t, func(c *node.Config) {
		c.Roles = []string{node.RoleAuthority}
		c.Bootstrap = []string{nodetest.Addr(b)} // authorities know each other: pushed to workers in settings
	})
	boot := []string{nodetest.Addr(a)}
	w := nodetest.Start(t, []string{node.RoleWorker}, boot)
	cl := nodetest.Start(t, []string{node.RoleClient}, boot)

	nodetest.WaitFor(t, 10*time.Second, "worker registered with A and B", func() bool {
		return a.Authority.Workers() == 1 && b.Authority.Workers() == 1
	})
	if !knows(w, b.Host.ID()) {
		t.Errorf("worker does not list B among its authorities: %v", w.KnownAuthorities())
	}
	learn := time.Now()
	nodetest.WaitFor(t, 15*time.Second, "client learns of B", func() bool { return knows(cl, b.Host.ID()) })
	t.Logf("client learned of B in %v", time.Since(learn).Round(time.Millisecond))
	for _, as := range w.Status().Authorities {
		if as.Registered == nil || !*as.Registered {
			t.Errorf("worker status: not registered with %s (%s)", as.ID, as.Source)
		}
	}

	if err := a.Close(); err != nil {
		t.Logf("closing A: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cands, err := cl.Client.Discover(ctx, client.Filter{Executor: "wasm"})
	if len(cands) != 1 || cands[0].ID != w.Host.ID() || cands[0].Route != "authority" {
		t.Fatalf("discovery with A gone: %v (err %v), want the worker through B", cands, err)
	}
	rep, err := cl.Client.Run(ctx, piSeries(4), client.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() != 0 {
		for _, o := range rep.Outcomes {
			t.Logf("%s: %v", o.ID, o.Err)
		}
		t.Fatalf("%d of 4 jobs failed with A gone", rep.Failed())
	}
	// The worker keeps its registration with B alive (heartbeat 1 s, TTL 3 s).
	nodetest.WaitFor(t, 5*time.Second, "B still has the worker", func() bool { return b.Authority.Workers() == 1 })
}
