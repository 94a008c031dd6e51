package client_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/exec"
	"github.com/p2pjobs/p2pnode/node/schedule"
	"github.com/p2pjobs/p2pnode/node/worker"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

// TestHostileWorkerDuplicatesAndInventsResults: a worker that bids like
// any other, then answers each job twice and adds a result for a job it
// was never sent (all with well-formed receipts under its award, to be
// paid for more than it did), gets one result per job sent counted at
// most: its stream is dropped at the first reply it had no job for, and
// the series still ends with every job done once, by the honest worker if
// need be. Real hosts on loopback, real worker services; only the hostile
// worker's job-stream handler is replaced.
func TestHostileWorkerDuplicatesAndInventsResults(t *testing.T) {
	hw, hkey := newKeyHost(t)
	gw, gkey := newKeyHost(t)
	c, ckey := newKeyHost(t)
	wx, err := exec.NewWasm()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wx.Close(context.Background()) })
	hs, err := worker.New(hw, hkey, []exec.Executor{wx}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hs.Close() })
	gs, err := worker.New(gw, gkey, []exec.Executor{wx}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gs.Close() })

	var hmu sync.Mutex
	hostileSent := 0 // results the hostile worker wrote
	hw.SetStreamHandler(protocols.Job, func(st network.Stream) {
		defer st.Reset()
		_ = st.SetDeadline(time.Now().Add(30 * time.Second))
		r := protocols.NewReader(st, protocols.MaxJobMsg)
		w := protocols.NewWriter(st, protocols.MaxJobMsg)
		for {
			var m pb.JobStreamMsg
			if r.Read(&m) != nil {
				return
			}
			if ch := m.GetChunk(); ch != nil {
				if ch.Last && w.Write(&pb.JobStreamReply{Msg: &pb.JobStreamReply_ModuleAck{ModuleAck: &pb.ModuleAck{ModuleHash: ch.ModuleHash}}}) != nil {
					return
				}
				continue
			}
			req := m.GetJob()
			if req == nil {
				continue
			}
			for _, seq := range []uint64{req.Seq, req.Seq, req.Seq + 1000} {
				res := &pb.JobResult{Seq: seq, JobId: req.JobId, Stdout: []byte("forged")}
				rc, err := protocols.SignReceipt(hkey, &pb.Receipt{SeriesId: req.SeriesId, JobId: req.JobId, Worker: []byte(hw.ID()),
					Client: []byte(st.Conn().RemotePeer()), BidId: req.BidId, Price: req.Price, ResultHash: protocols.ResultHash(res)})
				if err != nil {
					return
				}
				res.Receipt = rc
				if w.Write(&pb.JobStreamReply{Msg: &pb.JobStreamReply_Result{Result: res}}) != nil {
					return
				}
				hmu.Lock()
				hostileSent++
				hmu.Unlock()
			}
		}
	})

	cl := client.New(c, ckey, nil, client.WithDiscovery(client.DiscoveryDHT),
		client.WithFinder(staticFinder{{ID: hw.ID(), Addrs: hw.Addrs()}, {ID: gw.ID(), Addrs: gw.Addrs()}}))
	s := &client.Series{ID: "hostile", Executor: "wasm", Module: wasm.Trivial, Strategy: schedule.Balanced, Retries: 2,
		Resources: &pb.Resources{MemoryBytes: 16 << 20, TimeoutMs: 30000}}
	const n = 20
	for i := range n {
		s.Jobs = append(s.Jobs, client.Job{ID: fmt.Sprintf("job-%02d", i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	seen := map[string]int{}
	rep, err := cl.Run(ctx, s, client.Hooks{OnOutcome: func(o client.Outcome) {
		mu.Lock()
		seen[o.ID]++
		mu.Unlock()
	}})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	fromHostile := 0
	for _, o := range rep.Outcomes {
		if o.Err != nil {
			t.Fatalf("%s: %v", o.ID, o.Err)
		}
		if o.Worker == hw.ID() {
			fromHostile++
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, j := range s.Jobs {
		if seen[j.ID] != 1 {
			t.Fatalf("job %s: %d outcomes, want 1", j.ID, seen[j.ID])
		}
	}
	hmu.Lock()
	defer hmu.Unlock()
	if fromHostile > 1 {
		t.Fatalf("%d results taken from the hostile worker; after its first duplicate it must be dropped", fromHostile)
	}
	t.Logf("hostile worker wrote %d results, %d taken; %d jobs", hostileSent, fromHostile, n)
}
