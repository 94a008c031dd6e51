package nodetest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/nodetest"
	"github.com/p2pjobs/p2pnode/node/schedule"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

func piSeries(n int) *client.Series {
	s := &client.Series{ID: "pi-test", Executor: "wasm", Module: wasm.Pi, Strategy: schedule.Balanced, Retries: 2,
		Resources: &pb.Resources{MemoryBytes: 64 << 20, TimeoutMs: 30000}}
	for i := range n {
		s.Jobs = append(s.Jobs, client.Job{ID: fmt.Sprintf("job-%02d", i+1),
			Args: []string{"-seed", fmt.Sprint(i + 1), "-samples", "200000"}, Outputs: []string{"result.json"}})
	}
	return s
}

// TestSeriesEndToEnd farms a sweep of the pi module over two workers found
// through an authority, all real hosts on loopback.
func TestSeriesEndToEnd(t *testing.T) {
	auth := nodetest.Start(t, []string{node.RoleAuthority}, nil)
	a := []string{nodetest.Addr(auth)}
	w1 := nodetest.Start(t, []string{node.RoleWorker}, a)
	w2 := nodetest.Start(t, []string{node.RoleWorker}, a)
	cl := nodetest.Start(t, []string{node.RoleClient}, a)
	nodetest.WaitFor(t, 10*time.Second, "2 registrations", func() bool { return auth.Authority.Workers() == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := cl.Client.Run(ctx, piSeries(12), client.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() != 0 {
		for _, o := range rep.Outcomes {
			t.Logf("%s: %v", o.ID, o.Err)
		}
		t.Fatalf("%d jobs failed", rep.Failed())
	}
	by := map[peer.ID]int{}
	for _, o := range rep.Outcomes {
		by[o.Worker]++
		var out struct {
			Seed int     `json:"seed"`
			Pi   float64 `json:"pi"`
		}
		if err := json.Unmarshal(o.Result.Stdout, &out); err != nil {
			t.Fatalf("%s stdout %q: %v", o.ID, o.Result.Stdout, err)
		}
		if math.Abs(out.Pi-math.Pi) > 0.05 || len(o.Result.Outputs) != 1 || o.Result.Outputs[0].Name != "result.json" {
			t.Errorf("%s: pi %v, outputs %d", o.ID, out.Pi, len(o.Result.Outputs))
		}
	}
	if by[w1.Host.ID()] == 0 || by[w2.Host.ID()] == 0 {
		t.Errorf("jobs not spread over both workers: %v", by)
	}
}
