package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/nodetest"
	"github.com/p2pjobs/p2pnode/node/overlay"
	"github.com/p2pjobs/p2pnode/node/schedule"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

// TestFloodDiscoveryEndToEnd: real nodes on loopback; the client finds
// entry workers through the authority, gets every bid through a flooded
// solicitation, and runs the series on workers found that way.
func TestFloodDiscoveryEndToEnd(t *testing.T) {
	const hop, base = 100 * time.Millisecond, 500 * time.Millisecond
	auth := nodetest.Start(t, []string{node.RoleAuthority}, nil)
	a := []string{nodetest.Addr(auth)}
	var workers []*node.Node
	for range 5 {
		workers = append(workers, nodetest.Start(t, []string{node.RoleWorker}, a,
			node.WithOverlayOptions(overlay.WithWait(hop, base))))
	}
	cl := nodetest.Start(t, []string{node.RoleClient}, a, node.WithClientOptions(
		client.WithDiscovery(client.DiscoveryFlood), client.WithFlood(1, 4, hop, base)))
	nodetest.WaitFor(t, 15*time.Second, "every worker with 2 neighbours", func() bool {
		for _, w := range workers {
			if len(w.Overlay.Neighbours()) < 2 {
				return false
			}
		}
		return true
	})
	s := &client.Series{ID: "flood-e2e", Executor: "wasm", Module: wasm.Pi, Strategy: schedule.Balanced, Retries: 2,
		Resources: &pb.Resources{MemoryBytes: 64 << 20, TimeoutMs: 30000}}
	for i := range 6 {
		s.Jobs = append(s.Jobs, client.Job{ID: fmt.Sprintf("j%d", i), Args: []string{"-seed", fmt.Sprint(i + 1), "-samples", "20000"}, Outputs: []string{"result.json"}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := cl.Client.Run(ctx, s, client.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	routes := client.Routes(rep.Offers)
	if routes["flood"] < 4 || len(routes) != 1 {
		t.Errorf("offers by route %v, want at least 4 through the one entry's flood, nothing else", routes)
	}
	if rep.Failed() != 0 {
		for _, o := range rep.Outcomes {
			t.Logf("%s on %s: %v", o.ID, o.Worker, o.Err)
		}
		t.Errorf("%d jobs failed", rep.Failed())
	}
}
