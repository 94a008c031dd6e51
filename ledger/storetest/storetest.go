// Package storetest is the conformance suite every ledger.Store
// implementation runs (in the manner of restic's internal/backend/test).
// Only tests import it.
package storetest

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Key returns a fresh Ed25519 key and its peer ID.
func Key(t testing.TB) (crypto.PrivKey, peer.ID) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

// Fixture is one authority with a client account funded by a mint.
type Fixture struct {
	AuthKey crypto.PrivKey
	Auth    peer.ID
	Notary  *ledger.Notary
	Client  *ledger.Wallet
	Worker  *ledger.Wallet
	Trust   ledger.TrustSet
	Now     time.Time
	Keys    map[peer.ID]crypto.PrivKey
	// Outputs in the order they were produced (commit them in order).
	Outputs []ledger.Output
}

// Must panics on error (test helpers only: the panic fails the test with
// its stack).
func Must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// NewFixture builds an authority, registers a client and a worker, mints
// funds to the client and has it claim them.
func NewFixture(t testing.TB, funds uint64) *Fixture {
	t.Helper()
	f := &Fixture{Now: time.UnixMilli(1_700_000_000_000), Keys: map[peer.ID]crypto.PrivKey{}}
	f.AuthKey, f.Auth = Key(t)
	f.Trust = ledger.NewTrustSet(f.Auth)
	f.Notary = Must(ledger.NewNotary(ledger.NotaryConfig{Key: f.AuthKey, Trust: f.Trust}))
	f.out(t, Must(f.Notary.Genesis(f.Now)))
	ck, _ := Key(t)
	wk, _ := Key(t)
	f.Client = f.Register(t, ck)
	f.Worker = f.Register(t, wk)
	if funds > 0 {
		f.Fund(t, f.Client, funds)
	}
	return f
}

func (f *Fixture) out(t testing.TB, o ledger.Output) ledger.Output {
	f.Outputs = append(f.Outputs, o)
	return o
}

// Register opens an account at the fixture's authority.
func (f *Fixture) Register(t testing.TB, key crypto.PrivKey) *ledger.Wallet {
	t.Helper()
	w := Must(ledger.NewWallet(key, f.Trust, nil))
	f.Keys[w.ID()] = key
	g := Must(w.Genesis(f.Auth, f.Now))
	o := f.out(t, Must(f.Notary.Register(&pb.RegisterAccountRequest{Chain: []*pb.Block{g}}, w.ID(), f.Now)))
	if err := w.Accept(o.Blocks[0]); err != nil {
		t.Fatal(err)
	}
	return w
}

// Fund mints amount to w and has w claim it.
func (f *Fixture) Fund(t testing.TB, w *ledger.Wallet, amount uint64) {
	t.Helper()
	o := f.out(t, Must(f.Notary.Mint(&pb.MintRequest{To: []byte(w.ID()), Amount: amount, Reference: "mint"}, f.Auth, f.Now)))
	f.Claim(t, w, o.Blocks[len(o.Blocks)-1])
}

// Claim has w claim out-block src through the fixture's notary.
func (f *Fixture) Claim(t testing.TB, w *ledger.Wallet, src *pb.Block) {
	t.Helper()
	req := Must(w.Claim(src, f.Now))
	o := f.out(t, Must(f.Notary.Countersign(req, f.Now)))
	if err := w.Accept(o.Blocks[0]); err != nil {
		t.Fatal(err)
	}
}

// Pay transfers amount from one wallet to another (out, then claim).
func (f *Fixture) Pay(t testing.TB, from, to *ledger.Wallet, amount uint64) {
	t.Helper()
	b := Must(from.Transfer(to.ID(), amount, "pay", f.Now))
	o := f.out(t, Must(f.Notary.Countersign(&pb.CountersignRequest{Block: b}, f.Now)))
	if err := from.Accept(o.Blocks[0]); err != nil {
		t.Fatal(err)
	}
	f.Claim(t, to, o.Blocks[0])
}

// Run runs the conformance suite against stores made by open; each call
// must return a new, empty store trusting trust.
func Run(t *testing.T, open func(t *testing.T, trust ledger.TrustSet) ledger.Store) {
	t.Run("AppendAndRead", func(t *testing.T) {
		f := NewFixture(t, 100)
		f.Pay(t, f.Client, f.Worker, 30)
		s := open(t, f.Trust)
		defer s.Close()
		for _, o := range f.Outputs {
			if err := s.Commit(o); err != nil {
				t.Fatal(err)
			}
		}
		st := Must(s.State(f.Client.ID()))
		if st.Balance != 70 || st.Seq != f.Client.State().Seq {
			t.Fatalf("client state %+v", st)
		}
		if st := Must(s.State(f.Worker.ID())); st.Balance != 30 {
			t.Fatalf("worker balance %d", st.Balance)
		}
		chain := Must(s.Chain(f.Client.ID(), 0, 0))
		if _, err := ledger.VerifyChain(chain, f.Trust); err != nil {
			t.Fatal(err)
		}
		if len(chain) != len(f.Client.Blocks()) {
			t.Fatalf("chain has %d blocks, want %d", len(chain), len(f.Client.Blocks()))
		}
		part := Must(s.Chain(f.Client.ID(), 1, 1))
		if len(part) != 1 || part[0].Seq != 1 {
			t.Fatalf("Chain(from 1, limit 1) = %d blocks", len(part))
		}
		// Returned data is the caller's.
		chain[0].Amount = 999
		if again := Must(s.Chain(f.Client.ID(), 0, 1)); again[0].Amount == 999 {
			t.Fatal("store shares returned blocks")
		}
		ids := Must(s.Accounts())
		if len(ids) != 3 {
			t.Fatalf("%d accounts", len(ids))
		}
		chains := map[peer.ID][]*pb.Block{}
		for _, id := range ids {
			chains[id] = Must(s.Chain(id, 0, 0))
		}
		if _, err := ledger.Audit(chains, f.Trust); err != nil {
			t.Fatal(err)
		}
		if _, err := s.State("nobody"); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("State(unknown) = %v", err)
		}
		if _, err := s.Chain("nobody", 0, 0); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("Chain(unknown) = %v", err)
		}
	})
	t.Run("BadBlockChangesNothing", func(t *testing.T) {
		f := NewFixture(t, 100)
		s := open(t, f.Trust)
		defer s.Close()
		for _, o := range f.Outputs {
			if err := s.Commit(o); err != nil {
				t.Fatal(err)
			}
		}
		before := Must(s.State(f.Client.ID()))
		good := Must(f.Client.Transfer(f.Worker.ID(), 10, "x", f.Now))
		o := Must(f.Notary.Countersign(&pb.CountersignRequest{Block: good}, f.Now))
		bad := ledger.Clone(o.Blocks[0])
		bad.Amount = 5 // breaks the signatures
		err := s.AppendBatch([]*pb.Block{o.Blocks[0], bad})
		var be *ledger.BlockError
		if !errors.As(err, &be) {
			t.Fatalf("want BlockError, got %v", err)
		}
		after := Must(s.State(f.Client.ID()))
		if after.Seq != before.Seq || after.Balance != before.Balance {
			t.Fatalf("a failed batch changed the store: %+v", after)
		}
		if err := s.AppendBatch(o.Blocks); err != nil {
			t.Fatal(err)
		}
		if err := s.AppendBatch(o.Blocks); err == nil {
			t.Fatal("same block appended twice")
		}
	})
	t.Run("EscrowSettlementNotesEvidence", func(t *testing.T) {
		f := NewFixture(t, 100)
		EscrowScenario(t, f)
		s := open(t, f.Trust)
		defer s.Close()
		for _, o := range f.Outputs {
			if err := s.Commit(o); err != nil {
				t.Fatal(err)
			}
		}
		es := Must(s.OpenEscrows())
		if len(es) != 1 || es[0].Remaining != 20 {
			t.Fatalf("open escrows %+v", es)
		}
		own := Must(s.Chain(f.Auth, 0, 0))
		var rel *pb.Block
		for _, b := range own {
			if b.Kind == pb.BlockKind_BLOCK_ESCROW_RELEASE {
				rel = b
			}
		}
		st := Must(s.Settlement(ledger.Hash(rel)))
		if err := ledger.VerifySettlement(rel, st); err != nil {
			t.Fatal(err)
		}
		if n := Must(s.Notes()); len(n) != 1 {
			t.Fatalf("%d notes", len(n))
		}
		ev := &pb.ForkEvidence{Second: f.Client.Blocks()[0], DetectedMs: 1}
		if err := s.Commit(ledger.Output{Evidence: ev}); err != nil {
			t.Fatal(err)
		}
		if e := Must(s.Evidence()); len(e) != 1 || e[0].DetectedMs != 1 {
			t.Fatalf("evidence %v", e)
		}
	})
}

// EscrowScenario: the client locks 50 for 5 jobs of 10; two are acked and
// settled in one batch, one is filed pending, one is refunded with the
// worker's consent... leaving 20 open (10 pending + 10 free).
func EscrowScenario(t testing.TB, f *Fixture) {
	t.Helper()
	bid := []byte("bid-1")
	esc := ledger.EscrowID(bid)
	lock := Must(f.Client.Lock(f.Worker.ID(), esc, 50, f.Now.Add(time.Hour), f.Now))
	o := f.out(t, Must(f.Notary.Countersign(&pb.CountersignRequest{Block: lock}, f.Now)))
	if err := f.Client.Accept(o.Blocks[0]); err != nil {
		t.Fatal(err)
	}
	var claims []*pb.ReceiptClaim
	for i := range 3 {
		sr := Receipt(t, f, bid, string(rune('a'+i)), 10)
		c := &pb.ReceiptClaim{Receipt: sr}
		if i < 2 {
			c.ClientAck = Ack(t, f, sr)
		}
		claims = append(claims, c)
	}
	so, res, err := f.Notary.Settle(&pb.SettleRequest{Claims: claims}, f.Now)
	if err != nil || len(res.Released) != 2 || len(res.Pending) != 1 {
		t.Fatalf("settle: %v %+v", err, res)
	}
	f.out(t, so)
	f.Claim(t, f.Worker, so.Blocks[0])
	wk := f.Key(f.Worker)
	consent := Must(wk.Sign(ledger.RefundConsentBytes(f.Client.ID(), esc, 10)))
	ro := f.out(t, Must(f.Notary.Refund(&pb.RefundRequest{Client: []byte(f.Client.ID()), Escrow: esc, WorkerConsent: consent, Amount: 10}, f.Now)))
	f.Claim(t, f.Client, ro.Blocks[0])
}

// Key returns the key a fixture wallet was made with.
func (f *Fixture) Key(w *ledger.Wallet) crypto.PrivKey { return f.Keys[w.ID()] }

// Receipt signs a receipt from f.Worker to f.Client.
func Receipt(t testing.TB, f *Fixture, bid []byte, job string, price uint64) *pb.SignedReceipt {
	t.Helper()
	r := &pb.Receipt{SeriesId: "s", JobId: job, Worker: []byte(f.Worker.ID()), Client: []byte(f.Client.ID()), BidId: bid, Price: price, FinishedUnixMs: f.Now.UnixMilli()}
	return Must(ledger.SignReceipt(r, f.Key(f.Worker)))
}

// Ack is the client's acknowledgement of a receipt.
func Ack(t testing.TB, f *Fixture, sr *pb.SignedReceipt) []byte {
	t.Helper()
	return Must(f.Key(f.Client).Sign(ledger.ClientAckBytes(ledger.ReceiptHash(sr))))
}
