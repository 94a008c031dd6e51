package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/node/exec"
	"github.com/p2pjobs/p2pnode/node/schedule"
	"github.com/p2pjobs/p2pnode/node/worker"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

// recPayer records what the client acknowledges and disputes. It stands
// in for ledgersvc.Account on the client's side only: what is asserted
// here is the client's decision (ack, dispute, or neither); the notary's
// ruling on a filed dispute is tested in ledger and node/ledgersvc.
type recPayer struct {
	mu       sync.Mutex
	acked    int
	disputed []*pb.SignedReceipt
}

func (p *recPayer) Balance(context.Context) (uint64, error) { return 1 << 40, nil }
func (p *recPayer) Lock(context.Context, peer.ID, []byte, uint64, time.Time) error {
	return nil
}
func (p *recPayer) Ack(*pb.SignedReceipt) ([]byte, []byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.acked++
	return []byte("h"), []byte("s"), nil
}
func (p *recPayer) Dispute(sr *pb.SignedReceipt) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.disputed = append(p.disputed, sr)
}

// TestAdversaryWorkerReceiptOnFailedJob: a dishonest worker (the real
// worker's bids, a hostile job stream on a real libp2p host) answers each
// job with an error and a signed receipt for it. The client neither used
// nor acknowledged the result, so unless it disputes the receipt, the
// worker files it and is paid after the dispute window for a job it said
// it did not do. The client must dispute every such receipt.
func TestAdversaryWorkerReceiptOnFailedJob(t *testing.T) {
	w, wkey := newKeyHost(t)
	c, ckey := newKeyHost(t)
	var cbuf, wbuf bytes.Buffer
	elog := events.New(&cbuf, c.ID().String(), "client")
	wlog := events.New(&wbuf, w.ID().String(), "worker")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	wx, err := exec.NewWasm()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wx.Close(context.Background()) })
	ws, err := worker.New(w, wkey, []exec.Executor{wx}, wlog, worker.WithSlots(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	w.SetStreamHandler(protocols.Job, func(st network.Stream) {
		defer st.Close()
		r := protocols.NewReader(st, protocols.MaxJobMsg)
		wr := protocols.NewWriter(st, protocols.MaxJobMsg)
		for {
			_ = st.SetDeadline(time.Now().Add(20 * time.Second))
			var m pb.JobStreamMsg
			if err := r.Read(&m); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Logf("hostile worker read: %v", err)
				}
				return
			}
			switch m := m.Msg.(type) {
			case *pb.JobStreamMsg_Chunk:
				if m.Chunk.Last {
					_ = wr.Write(&pb.JobStreamReply{Msg: &pb.JobStreamReply_ModuleAck{ModuleAck: &pb.ModuleAck{ModuleHash: m.Chunk.ModuleHash}}})
				}
			case *pb.JobStreamMsg_Job:
				req := m.Job
				res := &pb.JobResult{Seq: req.Seq, JobId: req.JobId,
					Error: protocols.ToPB(protocols.Errorf(pb.ErrorCode_INTERNAL, "it failed, honest"))}
				rc, err := protocols.SignReceipt(wkey, &pb.Receipt{SeriesId: req.SeriesId, JobId: req.JobId, Worker: []byte(w.ID()),
					Client: []byte(c.ID()), BidId: req.BidId, Price: req.Price, ResultHash: protocols.ResultHash(res),
					FinishedUnixMs: time.Now().UnixMilli()})
				if err != nil {
					t.Error(err)
					return
				}
				res.Receipt = rc
				_ = wr.Write(&pb.JobStreamReply{Msg: &pb.JobStreamReply_Result{Result: res}})
			}
		}
	})

	pay := &recPayer{}
	cl := client.New(c, ckey, elog, client.WithDiscovery(client.DiscoveryDHT),
		client.WithFinder(staticFinder{{ID: w.ID(), Addrs: w.Addrs()}}), client.WithPayer(pay))
	s := &client.Series{ID: "failing", Executor: "wasm", Module: wasm.Trivial, Strategy: schedule.Balanced, Retries: 0,
		Resources: &pb.Resources{MemoryBytes: 16 << 20, TimeoutMs: 30000},
		Jobs:      []client.Job{{ID: "job-0"}, {ID: "job-1"}}}
	_, _ = cl.Run(ctx, s, client.Hooks{}) // the series fails: every job "failed"
	pay.mu.Lock()
	defer pay.mu.Unlock()
	if pay.acked != 0 {
		t.Fatalf("acknowledged %d receipts of failed jobs", pay.acked)
	}
	if len(pay.disputed) == 0 {
		t.Fatalf("no receipt of a failed job disputed: the worker is paid after the dispute window for work it did not deliver")
	}
	for _, sr := range pay.disputed {
		rc, err := protocols.DecodeReceipt(sr)
		if err != nil || peer.ID(rc.Worker) != w.ID() {
			t.Fatalf("disputed a receipt that is not the hostile worker's: %v", err)
		}
	}
}
