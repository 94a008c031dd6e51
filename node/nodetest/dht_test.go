package nodetest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/nodetest"
	"github.com/p2pjobs/p2pnode/node/schedule"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

// trivialJobs is n jobs of the trivial module (balanced strategy), for tests where the jobs'
// content does not matter.
func trivialJobs(id string, n int) *client.Series {
	s := &client.Series{ID: id, Executor: "wasm", Module: wasm.Trivial, Strategy: schedule.Balanced, Retries: 2,
		Resources: &pb.Resources{MemoryBytes: 16 << 20, TimeoutMs: 10000}}
	for i := range n {
		s.Jobs = append(s.Jobs, client.Job{ID: fmt.Sprintf("j%d", i)})
	}
	return s
}

// TestDHTFallback: "clients can find workers when no authority answers".
// On loopback (a private network) workers serve the DHT and advertise
// there. One client talked to the workers through the authority before it
// went away; another joined after the workers and only bootstrapped from
// the authority. With the authority closed, both find every worker through
// the DHT (route "dht") and run a series on them.
func TestDHTFallback(t *testing.T) {
	const workers = 3
	auth := nodetest.Start(t, []string{node.RoleAuthority}, nil)
	a := []string{nodetest.Addr(auth)}
	early := nodetest.Start(t, []string{node.RoleClient}, a) // before any worker: its bootstrap finds none
	for range workers {
		nodetest.Start(t, []string{node.RoleWorker}, a)
	}
	nodetest.WaitFor(t, 10*time.Second, "registrations", func() bool { return auth.Authority.Workers() == workers })
	late := nodetest.Start(t, []string{node.RoleClient}, a)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := early.Client.Run(ctx, trivialJobs("via-authority", 6), client.Hooks{})
	if err != nil || rep.Failed() != 0 {
		t.Fatalf("series through the authority: %v", err)
	}
	if r := client.Routes(rep.Offers); r["authority"] != workers {
		t.Fatalf("offers by route %v, want %d through the authority", r, workers)
	}
	// What the fallback needs: DHT servers other than the authority in each
	// client's routing table (met through bids and jobs, or named by the
	// authority during bootstrap).
	for name, cl := range map[string]*node.Node{"early": early, "late": late} {
		nodetest.WaitFor(t, 10*time.Second, name+" client's routing table holds the workers", func() bool {
			return cl.DHT.RoutingTable().Size() >= workers
		})
	}

	if err := auth.Close(); err != nil {
		t.Logf("closing the authority: %v", err)
	}
	for name, cl := range map[string]*node.Node{"early": early, "late": late} {
		start := time.Now()
		cands, err := cl.Client.Discover(ctx, client.Filter{Executor: "wasm"})
		if len(cands) != workers {
			t.Fatalf("%s client: discovery with the authority gone found %d workers, want %d (err %v)", name, len(cands), workers, err)
		}
		for _, c := range cands {
			if c.Route != "dht" {
				t.Errorf("%s client: worker %s found by route %q, want dht", name, c.ID, c.Route)
			}
		}
		t.Logf("%s client: %d workers through the DHT in %v", name, len(cands), time.Since(start).Round(time.Millisecond))
		rep, err := cl.Client.Run(ctx, trivialJobs("via-dht-"+name, 12), client.Hooks{})
		if err != nil {
			t.Fatalf("%s client: series with the authority gone: %v", name, err)
		}
		if r := client.Routes(rep.Offers); r["dht"] != workers || len(r) != 1 {
			t.Errorf("%s client: offers by route %v, want %d through the DHT", name, r, workers)
		}
		if rep.Failed() != 0 {
			for _, o := range rep.Outcomes {
				t.Logf("%s: %v", o.ID, o.Err)
			}
			t.Fatalf("%s client: %d of 12 jobs failed", name, rep.Failed())
		}
	}
}
