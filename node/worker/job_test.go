package worker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/p2pjobs/p2pnode/node/exec"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// bigExecutor "runs" every job to a result of stdout bytes.
type bigExecutor struct{ stdout int }

func (bigExecutor) Name() string                                        { return "wasm" }
func (bigExecutor) HasModule([32]byte) bool                             { return true }
func (bigExecutor) AddModule(context.Context, []byte) ([32]byte, error) { return [32]byte{}, nil }
func (bigExecutor) Close(context.Context) error                         { return nil }
func (e bigExecutor) Run(context.Context, exec.Job) (exec.Result, error) {
	return exec.Result{Stdout: make([]byte, e.stdout), Duration: time.Millisecond}, nil
}

// payee records the receipts the worker would be paid for.
type payee struct {
	mu       sync.Mutex
	receipts int
}

func (p *payee) Receipt(peer.ID, *pb.SignedReceipt) { p.mu.Lock(); p.receipts++; p.mu.Unlock() }
func (p *payee) AckReceipt(peer.ID, []byte, []byte) {}
func (p *payee) FlushClient(peer.ID)                {}

// pair starts a worker running jobs in e on a mocknet host and returns it
// with a client host linked to it.
func pair(t *testing.T, e exec.Executor, opts ...Option) (*Service, host.Host) {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	wkey, _, _ := crypto.GenerateEd25519Key(nil)
	wh, err := mn.AddPeer(wkey, ma.StringCast("/ip4/10.0.0.1/tcp/4001"))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	s, err := New(wh, wkey, []exec.Executor{e}, nil, append([]Option{WithCapacity(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, ch
}

// TestOversizedResultIsNotClaimed: a result over the job stream's message
// cap never reaches the client, which is told JOB_OUTPUT_TOO_LARGE; the
// worker must not keep a receipt for it and be paid for work the client
// never got.
func TestOversizedResultIsNotClaimed(t *testing.T) {
	pay := &payee{}
	s, ch := pair(t, bigExecutor{stdout: protocols.MaxJobMsg + 1}, WithPayee(pay))
	sb, err := s.MakeBid(ch.ID(), &pb.BidRequest{SeriesId: "s", JobCount: 1, Executor: "wasm"})
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := protocols.VerifyBid(sb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := ch.NewStream(ctx, s.h.ID(), protocols.Job)
	if err != nil {
		t.Fatal(err)
	}
	_ = st.SetDeadline(time.Now().Add(10 * time.Second))
	if err := protocols.NewWriter(st, protocols.MaxJobMsg).Write(&pb.JobStreamMsg{Msg: &pb.JobStreamMsg_Job{Job: &pb.JobRequest{
		Seq: 1, SeriesId: "s", JobId: "j", Executor: "wasm", ModuleHash: make([]byte, 32), BidId: b.BidId, Price: b.PricePerJob}}}); err != nil {
		t.Fatal(err)
	}
	_ = st.CloseWrite()
	var m pb.JobStreamReply
	if err := protocols.NewReader(st, protocols.MaxJobMsg).Read(&m); err != nil {
		t.Fatal(err)
	}
	if c := m.GetResult().GetError().GetCode(); c != pb.ErrorCode_JOB_OUTPUT_TOO_LARGE {
		t.Fatalf("result error %v, want JOB_OUTPUT_TOO_LARGE", c)
	}
	pay.mu.Lock()
	defer pay.mu.Unlock()
	if pay.receipts != 0 {
		t.Fatalf("%d receipts kept for a result the client never got", pay.receipts)
	}
}

// TestAuthoritiesCapped: an authority's settings may name any number of
// others, and each one named used to start a register loop that runs for
// the worker's life.
func TestAuthoritiesCapped(t *testing.T) {
	s, _ := pair(t, bigExecutor{})
	added := 0
	for range 3 * MaxAuthorities {
		k, _, _ := crypto.GenerateEd25519Key(nil)
		id, _ := peer.IDFromPrivateKey(k)
		if s.AddAuthority(peer.AddrInfo{ID: id}) {
			added++
		}
	}
	if added != MaxAuthorities {
		t.Fatalf("%d authorities added, want the cap of %d", added, MaxAuthorities)
	}
}

// TestOpenBidsCapped: every bid is held for its TTL; a client asking in a
// loop is told RATE_LIMITED once it holds MaxOpenBids.
func TestOpenBidsCapped(t *testing.T) {
	s, ch := pair(t, bigExecutor{})
	req := &pb.BidRequest{SeriesId: "s", JobCount: 1, Executor: "wasm"}
	for i := range MaxOpenBids {
		if _, err := s.MakeBid(ch.ID(), req); err != nil {
			t.Fatalf("bid %d: %v", i, err)
		}
	}
	if _, err := s.MakeBid(ch.ID(), req); !errors.Is(err, protocols.Code(pb.ErrorCode_RATE_LIMITED)) {
		t.Fatalf("bid past the cap: %v, want RATE_LIMITED", err)
	}
	s.mu.Lock()
	n := len(s.bids)
	s.mu.Unlock()
	if n != MaxOpenBids {
		t.Fatalf("%d open bids held", n)
	}
	// Another client is not affected.
	if _, err := s.MakeBid(s.h.ID(), req); err != nil {
		t.Fatalf("another client: %v", err)
	}
}
