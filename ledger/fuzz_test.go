package ledger_test

import (
	"bytes"
	"testing"

	"github.com/p2pjobs/p2pnode/ledger"
	. "github.com/p2pjobs/p2pnode/ledger/storetest"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeBlock: decoding and verifying never panic, and a mutated block
// of a valid chain never verifies in its place.
func FuzzDecodeBlock(f *testing.F) {
	fx := NewFixture(f, 100)
	EscrowScenario(f, fx)
	chain := fx.Client.Blocks()
	enc := make([][]byte, len(chain))
	for i, b := range chain {
		enc[i] = Must(ledger.EncodeBlock(b))
		f.Add(enc[i])
	}
	prefix := make([]ledger.ChainState, len(chain))
	refs := make([]ledger.MapRefs, len(chain))
	var st ledger.ChainState
	r := ledger.MapRefs{}
	for i, b := range chain {
		prefix[i] = st
		refs[i] = ledger.MapRefs{}
		for k := range r {
			refs[i][k] = struct{}{}
		}
		if err := st.Apply(b, fx.Trust, r); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ledger.DecodeBlock(data)
		if err != nil {
			return
		}
		_, _ = ledger.VerifyChain([]*pb.Block{b}, fx.Trust)
		if b.Seq >= uint64(len(chain)) {
			return
		}
		s := prefix[b.Seq]
		if err := s.Check(b, fx.Trust, refs[b.Seq]); err == nil && !bytes.Equal(data, enc[b.Seq]) {
			t.Fatalf("mutated block verified at seq %d", b.Seq)
		}
	})
}

// FuzzLedgerRequest: hostile protocol messages get typed errors, never a
// panic, and an error changes nothing.
func FuzzLedgerRequest(f *testing.F) {
	fx := NewFixture(f, 100)
	EscrowScenario(f, fx)
	rc := Receipt(f, fx, []byte("bid-1"), "zz", 1)
	seeds := []*pb.LedgerRequest{
		{Req: &pb.LedgerRequest_GetHead{GetHead: &pb.GetHeadRequest{Account: []byte(fx.Client.ID())}}},
		{Req: &pb.LedgerRequest_Countersign{Countersign: &pb.CountersignRequest{Block: fx.Client.Blocks()[1]}}},
		{Req: &pb.LedgerRequest_Register{Register: &pb.RegisterAccountRequest{Chain: fx.Client.Blocks()[:1]}}},
		{Req: &pb.LedgerRequest_Mint{Mint: &pb.MintRequest{To: []byte(fx.Client.ID()), Amount: 5}}},
		{Req: &pb.LedgerRequest_Settle{Settle: &pb.SettleRequest{Claims: []*pb.ReceiptClaim{{Receipt: rc}}}}},
		{Req: &pb.LedgerRequest_Refund{Refund: &pb.RefundRequest{Client: []byte(fx.Client.ID()), Escrow: "bid:6269642d31"}}},
		{Req: &pb.LedgerRequest_Dispute{Dispute: &pb.DisputeRequest{ReceiptHash: ledger.ReceiptHash(rc)}}},
	}
	for _, s := range seeds {
		f.Add(Must(proto.Marshal(s)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ledger.DecodeRequest(data)
		if err != nil {
			return
		}
		before := Must(fx.Notary.Head(fx.Client.ID()))
		resp, out := ledger.Handle(fx.Notary, nil, req, fx.Client.ID(), fx.Now)
		if resp.Error != nil {
			if resp.Error.Code == pb.ErrorCode_ERROR_UNSPECIFIED {
				t.Fatalf("untyped error %v", resp.Error)
			}
			if len(out.Blocks) != 0 {
				t.Fatal("a rejected request produced blocks")
			}
			after := Must(fx.Notary.Head(fx.Client.ID()))
			if out.Evidence == nil && !proto.Equal(before, after) {
				t.Fatal("a rejected request changed the client's head")
			}
		}
	})
}
