package ledger_test

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	. "github.com/p2pjobs/p2pnode/ledger/storetest"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// TestHandoverRules: the old home refuses a hand-over while the account
// has escrow open (typed), to an untrusted authority, and anything new
// after it (a retried hand-over is countersigned again); the new home
// takes only a chain whose hand-over the old home countersigned, takes it
// again idempotently, and serves it from the next seq; an account can move
// back to its former home.
func TestHandoverRules(t *testing.T) {
	f := NewFixture(t, 100) // client homed at A
	kb, idB := Key(t)
	_, idC := Key(t) // trusted by the client only
	f.Trust[idB] = struct{}{}
	nA := Must(ledger.NewNotary(ledger.NotaryConfig{Key: f.AuthKey, Trust: ledger.NewTrustSet(f.Auth, idB)}))
	if err := nA.Restore(ledger.RestoreState{Chains: chainsOf(allChains(f))}); err != nil {
		t.Fatal(err)
	}
	nB := Must(ledger.NewNotary(ledger.NotaryConfig{Key: kb, Trust: ledger.NewTrustSet(f.Auth, idB)}))
	Must(nB.Genesis(f.Now))
	cl := f.Client
	accept := func(o ledger.Output, err error) *pb.Block {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Accept(o.Blocks[0]); err != nil {
			t.Fatal(err)
		}
		return o.Blocks[0]
	}

	// Open escrow: refused with a typed error until it is refunded.
	esc := ledger.EscrowID([]byte("bid"))
	accept(nA.Countersign(&pb.CountersignRequest{Block: Must(cl.Lock(f.Worker.ID(), esc, 30, f.Now.Add(time.Minute), f.Now))}, f.Now))
	_, err := nA.Countersign(&pb.CountersignRequest{Block: Must(cl.Handover(idB, f.Now))}, f.Now)
	if !errors.Is(err, ledger.ErrEscrowsOpen) || ledger.Code(err) != pb.ErrorCode_LEDGER_ESCROWS_OPEN {
		t.Fatalf("hand-over with escrow open: %v", err)
	}
	later := f.Now.Add(2 * time.Minute)
	ref := Must(nA.Refund(&pb.RefundRequest{Client: []byte(cl.ID()), Escrow: esc}, later))
	accept(nA.Countersign(Must(cl.Claim(ref.Blocks[0], later)), later))

	// Untrusted new homes: the wallet refuses one it does not trust; the
	// old home refuses one it does not trust.
	if _, err := cl.Handover(peer.ID("not-trusted"), later); !errors.Is(err, ledger.ErrUntrustedNotary) {
		t.Fatalf("wallet, untrusted home: %v", err)
	}
	if _, err := cl.Handover(f.Auth, later); !errors.Is(err, ledger.ErrBadRequest) {
		t.Fatalf("hand-over to the current home: %v", err)
	}
	f.Trust[idC] = struct{}{}
	_, err = nA.Countersign(&pb.CountersignRequest{Block: Must(cl.Handover(idC, later))}, later)
	delete(f.Trust, idC)
	if !errors.Is(err, ledger.ErrUntrustedNotary) || ledger.Code(err) != pb.ErrorCode_LEDGER_UNTRUSTED {
		t.Fatalf("old home, untrusted new home: %v", err)
	}

	// The new home refuses a chain whose hand-over the old home did not
	// countersign: not countersigned at all, or by the new home itself.
	bare := Must(cl.Handover(idB, later))
	chain := append(append([]*pb.Block(nil), cl.Blocks()...), bare)
	if _, err := nB.Register(&pb.RegisterAccountRequest{Chain: chain}, cl.ID(), later); !errors.Is(err, ledger.ErrMissingCountersig) {
		t.Fatalf("arrival without the old home's countersignature: %v", err)
	}
	self := ledger.Clone(bare)
	if err := ledger.Countersign(self, kb); err != nil {
		t.Fatal(err)
	}
	chain[len(chain)-1] = self
	if _, err := nB.Register(&pb.RegisterAccountRequest{Chain: chain}, cl.ID(), later); !errors.Is(err, ledger.ErrWrongNotary) || ledger.Code(err) != pb.ErrorCode_LEDGER_UNTRUSTED {
		t.Fatalf("arrival countersigned by the new home: %v", err)
	}
	if _, err := nB.Register(&pb.RegisterAccountRequest{Chain: cl.Blocks()}, cl.ID(), later); !errors.Is(err, ledger.ErrWrongNotary) {
		t.Fatalf("arrival of a chain not handed over: %v", err)
	}

	// The hand-over: A countersigns (again on a retry), then refuses.
	ho := accept(nA.Countersign(&pb.CountersignRequest{Block: bare}, later))
	if cl.State().Home != idB || peer.ID(ho.Notary) != f.Auth {
		t.Fatalf("home %s, hand-over countersigned by %s", cl.State().Home, peer.ID(ho.Notary))
	}
	if o, err := nA.Countersign(&pb.CountersignRequest{Block: bare}, later); err != nil || len(o.Blocks) != 0 || ledger.HashRef(o.Reply[0]) != ledger.HashRef(ho) {
		t.Fatalf("retried hand-over: %v", err)
	}
	next := Must(cl.Transfer(f.Worker.ID(), 5, "after", later))
	if _, err := nA.Countersign(&pb.CountersignRequest{Block: next}, later); !errors.Is(err, ledger.ErrWrongNotary) {
		t.Fatalf("old home after the hand-over: %v", err)
	}
	if h := Must(nA.Head(cl.ID())); peer.ID(h.Home) != idB || h.Seq != ho.Seq {
		t.Fatalf("old home's head: home %s seq %d", peer.ID(h.Home), h.Seq)
	}
	// B takes the chain (twice: a retry changes nothing) and serves it.
	arr := Must(nB.Register(&pb.RegisterAccountRequest{Chain: cl.Blocks()}, cl.ID(), later))
	if len(arr.Blocks) != len(cl.Blocks()) {
		t.Fatalf("arrival output %d blocks, want the whole chain (%d)", len(arr.Blocks), len(cl.Blocks()))
	}
	if again := Must(nB.Register(&pb.RegisterAccountRequest{Chain: cl.Blocks()}, cl.ID(), later)); len(again.Blocks) != 0 {
		t.Fatalf("retried arrival wrote %d blocks", len(again.Blocks))
	}
	if b := accept(nB.Countersign(&pb.CountersignRequest{Block: next}, later)); peer.ID(b.Notary) != idB {
		t.Fatalf("after the hand-over countersigned by %s", peer.ID(b.Notary))
	}
	if _, err := ledger.VerifyChain(cl.Blocks(), f.Trust); err != nil {
		t.Fatal(err)
	}

	// Back to A: B countersigns the hand-over, A takes the rest of the
	// chain (its store holds the part up to the first hand-over).
	accept(nB.Countersign(&pb.CountersignRequest{Block: Must(cl.Handover(f.Auth, later))}, later))
	back := Must(nA.Register(&pb.RegisterAccountRequest{Chain: cl.Blocks()}, cl.ID(), later))
	if len(back.Blocks) != 2 || back.Blocks[0].Seq != ho.Seq+1 {
		t.Fatalf("return to A wrote %d blocks", len(back.Blocks))
	}
	if b := accept(nA.Countersign(&pb.CountersignRequest{Block: Must(cl.Transfer(f.Worker.ID(), 1, "back", later))}, later)); peer.ID(b.Notary) != f.Auth {
		t.Fatalf("after the return countersigned by %s", peer.ID(b.Notary))
	}
	if _, err := ledger.VerifyChain(cl.Blocks(), f.Trust); err != nil {
		t.Fatal(err)
	}
}
