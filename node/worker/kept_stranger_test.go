package worker

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/node/exec"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// TestKeptResultsAreTheClientsOwn: a stranger that sends the very request
// another client sent (same series, job, content, even that client's bid
// ID) does not collect that client's kept result: it is refused (the bid
// is not its award) and nothing is run or handed over. Real libp2p hosts
// on loopback.
func TestKeptResultsAreTheClientsOwn(t *testing.T) {
	newHost := func() (host.Host, crypto.PrivKey) {
		key, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Close() })
		return h, key
	}
	wh, wkey := newHost()
	owner, _ := newHost()
	stranger, _ := newHost()
	e := &countingExecutor{}
	s, err := New(wh, wkey, []exec.Executor{e}, nil, WithCapacity(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sb, err := s.MakeBid(owner.ID(), &pb.BidRequest{SeriesId: "s", JobCount: 1, Executor: "wasm"})
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := protocols.VerifyBid(sb)
	req := &pb.JobRequest{Seq: 1, SeriesId: "s", JobId: "j", Executor: "wasm", ModuleHash: make([]byte, 32),
		Args: []string{"secret"}, BidId: b.BidId, Price: b.PricePerJob}
	send := func(from host.Host) *pb.JobResult {
		t.Helper()
		if err := from.Connect(ctx, peer.AddrInfo{ID: wh.ID(), Addrs: wh.Addrs()}); err != nil {
			t.Fatal(err)
		}
		st, err := from.NewStream(ctx, wh.ID(), protocols.Job)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		_ = st.SetDeadline(time.Now().Add(10 * time.Second))
		if err := protocols.NewWriter(st, protocols.MaxJobMsg).Write(&pb.JobStreamMsg{Msg: &pb.JobStreamMsg_Job{Job: req}}); err != nil {
			t.Fatal(err)
		}
		_ = st.CloseWrite()
		var m pb.JobStreamReply
		if err := protocols.NewReader(st, protocols.MaxJobMsg).Read(&m); err != nil {
			t.Fatal(err)
		}
		if m.GetResult() == nil {
			t.Fatalf("reply %v", &m)
		}
		return m.GetResult()
	}
	if r := send(owner); r.Error != nil || string(r.Stdout) != "secret" {
		t.Fatalf("owner's run: %v", r)
	}
	r := send(stranger)
	if r.Error == nil || bytes.Contains(r.Stdout, []byte("secret")) || r.Receipt != nil {
		t.Fatalf("stranger got %v", r)
	}
	if n := e.runs.Load(); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}
}
