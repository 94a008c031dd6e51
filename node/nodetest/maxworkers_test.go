package nodetest_test

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/schedule"
	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

// TestMaxWorkersCapsTheAward: a series that may use one worker, while two
// bid, runs every job, all on one worker.
func TestMaxWorkersCapsTheAward(t *testing.T) {
	_, _, cl := network(t, 2)
	s := piSeries(8)
	s.Module, s.Strategy, s.MaxWorkers = wasm.Trivial, schedule.Fastest, 1
	for i := range s.Jobs {
		s.Jobs[i].Outputs = nil
	}
	rep := run(t, cl, s, client.Hooks{})
	used := map[peer.ID]bool{}
	for _, o := range rep.Outcomes {
		if o.Err != nil {
			t.Errorf("%s: %v", o.ID, o.Err)
		}
		used[o.Worker] = true
	}
	if len(used) != 1 {
		t.Fatalf("jobs ran on %d workers, want 1", len(used))
	}
}
