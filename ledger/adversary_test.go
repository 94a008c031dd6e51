package ledger_test

import (
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	. "github.com/p2pjobs/p2pnode/ledger/storetest"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// world is two trusted authorities A and B with a store each, as the
// service runs them: every Output is committed to its authority's store
// before anything else happens, and a commit must never fail (a failed
// commit is what made the service rebuild its notary). A holds a client
// (100 points) and a worker.
type world struct {
	t        *testing.T
	f        *Fixture
	nA, nB   *ledger.Notary
	kB       crypto.PrivKey
	idA, idB peer.ID
	sA, sB   *ledger.MemStore
	a, b     side
	trust    ledger.TrustSet
	now      time.Time
}

func newWorld(t *testing.T, cfg func(*ledger.NotaryConfig)) *world {
	t.Helper()
	f := NewFixture(t, 100)
	kB, idB := Key(t)
	f.Trust[idB] = struct{}{} // the fixture's wallets share this set
	w := &world{t: t, f: f, kB: kB, idA: f.Auth, idB: idB, trust: f.Trust, now: f.Now}
	mk := func(k crypto.PrivKey) *ledger.Notary {
		c := ledger.NotaryConfig{Key: k, Trust: ledger.NewTrustSet(f.Auth, idB)}
		if cfg != nil {
			cfg(&c)
		}
		return Must(ledger.NewNotary(c))
	}
	w.nA, w.nB = mk(f.AuthKey), mk(kB)
	w.sA, w.sB = ledger.NewMemStore(w.trust), ledger.NewMemStore(w.trust)
	w.a, w.b = side{w, w.sA}, side{w, w.sB}
	for _, o := range f.Outputs {
		w.commit(w.sA, o)
	}
	if err := w.nA.Restore(restoreState(t, w.sA)); err != nil {
		t.Fatal(err)
	}
	f.Notary = w.nA
	w.commit(w.sB, Must(w.nB.Genesis(w.now)))
	return w
}

func restoreState(t *testing.T, s *ledger.MemStore) ledger.RestoreState {
	t.Helper()
	var rs ledger.RestoreState
	for _, id := range Must(s.Accounts()) {
		chain := Must(s.Chain(id, 0, 0))
		rs.Chains = append(rs.Chains, chain)
		for _, b := range chain {
			if b.Kind == pb.BlockKind_BLOCK_ESCROW_RELEASE {
				rs.Settlements = append(rs.Settlements, Must(s.Settlement(ledger.Hash(b))))
			}
		}
	}
	rs.Notes = Must(s.Notes())
	rs.Evidence = Must(s.Evidence())
	return rs
}

// commit stores o as the service would; it must succeed.
func (w *world) commit(s *ledger.MemStore, o ledger.Output) ledger.Output {
	w.t.Helper()
	if err := s.Commit(o); err != nil {
		w.t.Fatalf("commit of a notary decision failed (the service would rebuild): %v", err)
	}
	return o
}

// side commits the decisions of one authority to its store.
type side struct {
	w *world
	s *ledger.MemStore
}

// on commits what a notary decision asks to persist.
func (d side) on(o ledger.Output, err error) (ledger.Output, error) {
	d.w.t.Helper()
	d.w.commit(d.s, o)
	return o, err
}

// ok is on for a decision that must succeed.
func (d side) ok(o ledger.Output, err error) ledger.Output {
	d.w.t.Helper()
	if err != nil {
		d.w.t.Fatal(err)
	}
	return d.w.commit(d.s, o)
}

// accept appends a countersigned block to a wallet.
func (w *world) accept(wl *ledger.Wallet, b *pb.Block) {
	w.t.Helper()
	if err := wl.Accept(b); err != nil {
		w.t.Fatal(err)
	}
}

// audit checks conservation over both stores (for an account both hold,
// the longer chain: the old home keeps it up to the hand-over) and
// returns the balances.
func (w *world) audit() map[peer.ID]uint64 {
	w.t.Helper()
	chains := map[peer.ID][]*pb.Block{}
	for _, s := range []*ledger.MemStore{w.sA, w.sB} {
		for _, id := range Must(s.Accounts()) {
			if c := Must(s.Chain(id, 0, 0)); len(c) > len(chains[id]) {
				chains[id] = c
			}
		}
	}
	rep, err := ledger.Audit(chains, w.trust)
	if err != nil {
		w.t.Fatalf("audit: %v", err)
	}
	bal := map[peer.ID]uint64{}
	for id, s := range rep.Summaries {
		bal[id] = s.Balance
	}
	return bal
}

// noRise fails if an account other than the authorities holds more than
// before.
func (w *world) noRise(before map[peer.ID]uint64) {
	w.t.Helper()
	for id, b := range w.audit() {
		if id != w.idA && id != w.idB && b > before[id] {
			w.t.Fatalf("balance of %s rose from %d to %d", id, before[id], b)
		}
	}
}

// sALast is the last block A stored of account id.
func (w *world) sALast(id peer.ID) *pb.Block {
	c := Must(w.sA.Chain(id, 0, 0))
	return c[len(c)-1]
}

func (w *world) cs(n *ledger.Notary, s *ledger.MemStore, b *pb.Block) *pb.Block {
	w.t.Helper()
	return side{w, s}.ok(n.Countersign(&pb.CountersignRequest{Block: b}, w.now)).Blocks[0]
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
}

// TestAdversaryLedger: the attacks of a dishonest client, worker or
// stranger on the notaries' pure core, each refused with a typed error;
// after each, both authorities' stores pass the audit and no account
// gained points. The attacks that cross the network are in
// node/ledgersvc (TestAdversaryService).
func TestAdversaryLedger(t *testing.T) {
	t.Run("reregister_chain_after_refund", func(t *testing.T) {
		w := newWorld(t, nil)
		cl := w.f.Client
		esc := ledger.EscrowID([]byte("bid"))
		w.accept(cl, w.cs(w.nA, w.sA, Must(cl.Lock(w.f.Worker.ID(), esc, 30, w.now.Add(time.Hour), w.now))))
		later := w.now.Add(2 * time.Hour)
		ref := w.a.ok(w.nA.Refund(&pb.RefundRequest{Client: []byte(cl.ID()), Escrow: esc}, later))
		w.accept(cl, w.a.ok(w.nA.Countersign(Must(cl.Claim(ref.Blocks[0], later)), later)).Blocks[0])
		before := w.audit()
		for range 3 { // the account's own chain, sent to its home again
			w.a.on(w.nA.Register(&pb.RegisterAccountRequest{Chain: cl.Blocks()}, cl.ID(), later))
			_, err := w.a.on(w.nA.Refund(&pb.RefundRequest{Client: []byte(cl.ID()), Escrow: esc}, later))
			wantErr(t, err, ledger.ErrBadRequest) // nothing to refund
		}
		if e, _ := w.nA.Escrow(ledger.EscrowKey{Client: cl.ID(), Escrow: esc}); e.Remaining != 0 {
			t.Fatalf("escrow re-created with %d points", e.Remaining)
		}
		w.noRise(before)
	})

	t.Run("reregister_prefix_of_own_chain", func(t *testing.T) {
		w := newWorld(t, nil)
		cl := w.f.Client
		w.f.Pay(t, cl, w.f.Worker, 10)
		for _, o := range w.f.Outputs[len(w.f.Outputs)-2:] {
			w.commit(w.sA, o)
		}
		before := w.audit()
		_, err := w.a.on(w.nA.Register(&pb.RegisterAccountRequest{Chain: cl.Blocks()[:2]}, cl.ID(), w.now))
		if err == nil || ledger.Code(err) == pb.ErrorCode_INTERNAL {
			t.Fatalf("a prefix of the chain re-registered: %v", err)
		}
		w.noRise(before)
	})

	t.Run("replay_countersigned_block", func(t *testing.T) {
		w := newWorld(t, nil)
		cl := w.f.Client
		b := Must(cl.Transfer(w.f.Worker.ID(), 10, "x", w.now))
		first := w.cs(w.nA, w.sA, b)
		w.accept(cl, first)
		before := w.audit()
		// The owner's retry gets its original answer and persists nothing.
		resp, out := ledger.Handle(w.nA, w.sA, &pb.LedgerRequest{Req: &pb.LedgerRequest_Countersign{Countersign: &pb.CountersignRequest{Block: b}}}, cl.ID(), w.now)
		w.commit(w.sA, out)
		if resp.Error != nil || len(resp.Blocks) != 1 || ledger.HashRef(resp.Blocks[0]) != ledger.HashRef(first) {
			t.Fatalf("retry: %v %v", resp.Error, resp.Blocks)
		}
		// Anyone else replaying it gets a typed refusal.
		_, stranger := Key(t)
		resp, out = ledger.Handle(w.nA, w.sA, &pb.LedgerRequest{Req: &pb.LedgerRequest_Countersign{Countersign: &pb.CountersignRequest{Block: first}}}, stranger, w.now)
		w.commit(w.sA, out)
		if resp.Error == nil || resp.Error.Code == pb.ErrorCode_INTERNAL || len(resp.Blocks) != 0 {
			t.Fatalf("stranger's replay: %v", resp)
		}
		// A replayed genesis too.
		g := cl.Blocks()[0]
		resp, out = ledger.Handle(w.nA, w.sA, &pb.LedgerRequest{Req: &pb.LedgerRequest_Register{Register: &pb.RegisterAccountRequest{Chain: []*pb.Block{g}}}}, cl.ID(), w.now)
		w.commit(w.sA, out)
		if resp.Error != nil && resp.Error.Code == pb.ErrorCode_INTERNAL {
			t.Fatalf("replayed genesis: %v", resp.Error)
		}
		w.noRise(before)
	})

	t.Run("genesis_at_second_home", func(t *testing.T) {
		// One identity opens an account at A and another at B (two
		// geneses, two chains): every payment is still credited once,
		// at the home the payer named.
		w := newWorld(t, nil)
		cl := w.f.Client
		xk, _ := Key(t)
		xa := Must(ledger.NewWallet(xk, w.trust, nil))
		xb := Must(ledger.NewWallet(xk, w.trust, nil))
		w.accept(xa, w.a.ok(w.nA.Register(&pb.RegisterAccountRequest{Chain: []*pb.Block{Must(xa.Genesis(w.idA, w.now))}}, xa.ID(), w.now)).Blocks[0])
		w.accept(xb, w.b.ok(w.nB.Register(&pb.RegisterAccountRequest{Chain: []*pb.Block{Must(xb.Genesis(w.idB, w.now))}}, xb.ID(), w.now)).Blocks[0])
		// Paid from A, naming no home (the payer's): claimable at A only.
		out := w.cs(w.nA, w.sA, Must(cl.Transfer(xa.ID(), 30, "p", w.now)))
		w.accept(cl, out)
		w.accept(xa, w.a.ok(w.nA.Countersign(Must(xa.Claim(out, w.now)), w.now)).Blocks[0])
		before := w.audit()
		_, err := w.b.on(w.nB.Countersign(Must(xb.Claim(out, w.now)), w.now))
		wantErr(t, err, ledger.ErrWrongNotary)
		// Paid naming B: A refuses the claim.
		out2 := w.cs(w.nA, w.sA, Must(cl.TransferTo(xa.ID(), w.idB, 20, "q", w.now)))
		w.accept(cl, out2)
		_, err = w.a.on(w.nA.Countersign(Must(xa.Claim(out2, w.now)), w.now))
		wantErr(t, err, ledger.ErrWrongNotary)
		w.accept(xb, w.b.ok(w.nB.Countersign(Must(xb.Claim(out2, w.now)), w.now)).Blocks[0])
		// Neither chain can move to the other's home.
		_, err = w.a.on(w.nA.Countersign(&pb.CountersignRequest{Block: Must(xa.Handover(w.idB, w.now))}, w.now))
		if err != nil {
			t.Fatal(err) // A countersigns its side ...
		}
		_, err = w.b.on(w.nB.Register(&pb.RegisterAccountRequest{Chain: append(xa.Blocks(), w.sALast(xa.ID()))}, xa.ID(), w.now))
		wantErr(t, err, ledger.ErrStaleHead) // ... B holds another chain
		before[xa.ID()] = 30                 // the audit sees one chain per identity: the longer
		w.noRise(before)
		if got := xa.State().Balance + xb.State().Balance; got != 50 {
			t.Fatalf("two homes hold %d for one identity paid 50", got)
		}
	})

	t.Run("new_home_countersigns_old_block", func(t *testing.T) {
		w := newWorld(t, nil)
		cl := w.f.Client
		old := Must(cl.Transfer(w.f.Worker.ID(), 10, "x", w.now))
		w.accept(cl, w.cs(w.nA, w.sA, old))
		w.accept(cl, w.cs(w.nA, w.sA, Must(cl.Handover(w.idB, w.now))))
		w.b.ok(w.nB.Register(&pb.RegisterAccountRequest{Chain: cl.Blocks()}, cl.ID(), w.now))
		before := w.audit()
		_, err := w.b.on(w.nB.Countersign(&pb.CountersignRequest{Block: old}, w.now))
		wantErr(t, err, ledger.ErrReplay)
		w.noRise(before)
	})

	t.Run("short_lived_lock", func(t *testing.T) {
		w := newWorld(t, func(c *ledger.NotaryConfig) { c.MinLockLifetime = time.Minute })
		cl := w.f.Client
		before := w.audit()
		_, err := w.a.on(w.nA.Countersign(&pb.CountersignRequest{Block: Must(cl.Lock(w.f.Worker.ID(), "e", 30, w.now.Add(time.Millisecond), w.now))}, w.now))
		wantErr(t, err, ledger.ErrLockTooShort)
		if ledger.Code(err) != pb.ErrorCode_BAD_REQUEST {
			t.Fatalf("code %v", ledger.Code(err))
		}
		w.noRise(before)
	})

	t.Run("restore_refuses_overdraft", func(t *testing.T) {
		// A store whose authority chain refunds more than was locked (as
		// the re-registration attack left it): the notary refuses to
		// start and names the account and block.
		w := newWorld(t, nil)
		cl := w.f.Client
		esc := ledger.EscrowID([]byte("bid"))
		lock := w.cs(w.nA, w.sA, Must(cl.Lock(w.f.Worker.ID(), esc, 30, w.now.Add(time.Hour), w.now)))
		w.accept(cl, lock)
		rs := restoreState(t, w.sA)
		own := Must(w.sA.Chain(w.idA, 0, 0))
		var st ledger.ChainState
		for _, b := range own {
			Must(0, st.Apply(b, w.trust, ledger.MapRefs{}))
		}
		refund := func(seq uint64, prev []byte, ref string) *pb.Block {
			b := &pb.Block{Account: []byte(w.idA), Seq: seq, Prev: prev, Kind: pb.BlockKind_BLOCK_ESCROW_REFUND, Amount: 30,
				Counterparty: []byte(cl.ID()), Reference: ref, TimestampMs: w.now.UnixMilli(),
				Lines: []*pb.EscrowLine{{Client: []byte(cl.ID()), Escrow: esc, Amount: 30}}}
			Must(0, ledger.SignOwner(b, w.f.AuthKey))
			return b
		}
		r1 := refund(st.Seq+1, st.Head, "r1")
		r2 := refund(st.Seq+2, ledger.Hash(r1), "r2")
		for i, c := range rs.Chains {
			if peer.ID(c[0].Account) == w.idA {
				rs.Chains[i] = append(c, r1, r2)
			}
		}
		n := Must(ledger.NewNotary(ledger.NotaryConfig{Key: w.f.AuthKey, Trust: w.trust}))
		err := n.Restore(rs)
		var be *ledger.BlockError
		if !errors.Is(err, ledger.ErrOverdraft) || !errors.As(err, &be) || be.Account != w.idA || be.Seq != r2.Seq {
			t.Fatalf("restore of an overdrawn escrow: %v", err)
		}
	})

	t.Run("forged_countersignature", func(t *testing.T) {
		w := newWorld(t, nil)
		cl := w.f.Client
		before := w.audit()
		// A chain whose last block carries a countersignature by a key
		// no one trusts, arriving "by hand-over" at B.
		forger, _ := Key(t)
		ho := Must(cl.Handover(w.idB, w.now))
		Must(0, ledger.Countersign(ho, forger))
		chain := append(append([]*pb.Block{}, cl.Blocks()...), ho)
		_, err := w.b.on(w.nB.Register(&pb.RegisterAccountRequest{Chain: chain}, cl.ID(), w.now))
		wantErr(t, err, ledger.ErrWrongNotary)
		// A transfer-in whose source an untrusted key "notarised".
		wkb := w.f.Worker.Blocks()
		src := &pb.Block{Account: []byte(w.f.Worker.ID()), Seq: uint64(len(wkb)), Prev: ledger.Hash(wkb[len(wkb)-1]),
			Kind: pb.BlockKind_BLOCK_TRANSFER_OUT, Amount: 50, Counterparty: []byte(cl.ID()), Reference: "fake", TimestampMs: w.now.UnixMilli()}
		Must(0, ledger.SignOwner(src, w.f.Key(w.f.Worker)))
		Must(0, ledger.Countersign(src, forger))
		_, err = w.a.on(w.nA.Countersign(Must(cl.Claim(src, w.now)), w.now))
		wantErr(t, err, ledger.ErrUntrustedNotary)
		w.noRise(before)
	})

	t.Run("amount_near_2^64_wraparound", func(t *testing.T) {
		w := newWorld(t, nil)
		cl, wk := w.f.Client, w.f.Worker
		before := w.audit()
		// A transfer of more than the balance, and one that would wrap.
		b := Must(cl.Transfer(wk.ID(), 1, "x", w.now))
		b.Amount = math.MaxUint64
		Must(0, ledger.SignOwner(b, w.f.Key(cl)))
		_, err := w.a.on(w.nA.Countersign(&pb.CountersignRequest{Block: b}, w.now))
		wantErr(t, err, ledger.ErrOverdraft)
		// A mint that would overflow the authority's total.
		m := w.a.ok(w.nA.Mint(&pb.MintRequest{To: []byte(wk.ID()), Amount: math.MaxUint64 - 200, Reference: "big"}, w.idA, w.now))
		_, err = w.a.on(w.nA.Mint(&pb.MintRequest{To: []byte(wk.ID()), Amount: math.MaxUint64 - 200, Reference: "big2"}, w.idA, w.now))
		wantErr(t, err, ledger.ErrOverflow)
		// Claiming the big mint works; a second claim of the same is a replay.
		w.accept(wk, w.a.ok(w.nA.Countersign(Must(wk.Claim(m.Blocks[1], w.now)), w.now)).Blocks[0])
		_, err = w.a.on(w.nA.Countersign(Must(wk.Claim(m.Blocks[1], w.now)), w.now))
		wantErr(t, err, ledger.ErrReplay)
		// Escrow lines summing past 2^64 on a settle: receipts at the max price.
		esc := ledger.EscrowID([]byte("wrap"))
		w.accept(cl, w.cs(w.nA, w.sA, Must(cl.Lock(wk.ID(), esc, 10, w.now.Add(time.Hour), w.now))))
		var claims []*pb.ReceiptClaim
		for _, job := range []string{"a", "b"} {
			sr := Must(ledger.SignReceipt(&pb.Receipt{JobId: job, Worker: []byte(wk.ID()), Client: []byte(cl.ID()), BidId: []byte("wrap"), Price: math.MaxUint64}, w.f.Key(wk)))
			claims = append(claims, &pb.ReceiptClaim{Receipt: sr, ClientAck: Ack(t, w.f, sr)})
		}
		o, res, err := w.nA.Settle(&pb.SettleRequest{Claims: claims}, w.now)
		w.a.on(o, err)
		if err != nil || len(res.Released) != 0 || !errors.Is(res.Rejected[0], ledger.ErrOverdraft) {
			t.Fatalf("settle at 2^64: %v %+v", err, res)
		}
		// The worker's big balance is what was minted to it; nobody else rose.
		before[wk.ID()] = wk.State().Balance
		w.noRise(before)
	})

	t.Run("lock_for_another_clients_award", func(t *testing.T) {
		w := newWorld(t, nil)
		cl, wk := w.f.Client, w.f.Worker
		// A second client locks under the first client's bid id: the
		// escrow is the second client's, a receipt naming the first
		// client draws on nothing.
		other := w.f.Register(t, Must(Key2(t)))
		w.commit(w.sA, w.f.Outputs[len(w.f.Outputs)-1])
		w.f.Fund(t, other, 20)
		for _, o := range w.f.Outputs[len(w.f.Outputs)-2:] {
			w.commit(w.sA, o)
		}
		esc := ledger.EscrowID([]byte("bid-of-cl"))
		w.accept(other, w.cs(w.nA, w.sA, Must(other.Lock(wk.ID(), esc, 20, w.now.Add(time.Hour), w.now))))
		before := w.audit()
		sr := Receipt(t, w.f, []byte("bid-of-cl"), "j", 10) // client = cl
		o, res, err := w.nA.Settle(&pb.SettleRequest{Claims: []*pb.ReceiptClaim{{Receipt: sr, ClientAck: Ack(t, w.f, sr)}}}, w.now)
		w.a.on(o, err)
		if err != nil || !errors.Is(res.Rejected[0], ledger.ErrUnknownEscrow) {
			t.Fatalf("receipt drew on another client's escrow: %v %+v", err, res)
		}
		_ = cl
		w.noRise(before)
	})

	t.Run("receipt_against_foreign_escrow", func(t *testing.T) {
		w := newWorld(t, nil)
		cl := w.f.Client
		bid := []byte("bid")
		w.accept(cl, w.cs(w.nA, w.sA, Must(cl.Lock(w.f.Worker.ID(), ledger.EscrowID(bid), 30, w.now.Add(time.Hour), w.now))))
		before := w.audit()
		// Another worker signs a receipt against that escrow.
		k2, id2 := Key(t)
		sr := Must(ledger.SignReceipt(&pb.Receipt{JobId: "j", Worker: []byte(id2), Client: []byte(cl.ID()), BidId: bid, Price: 10}, k2))
		o, res, err := w.nA.Settle(&pb.SettleRequest{Claims: []*pb.ReceiptClaim{{Receipt: sr, ClientAck: Ack(t, w.f, sr)}}}, w.now)
		w.a.on(o, err)
		if err != nil || !errors.Is(res.Rejected[0], ledger.ErrEscrowMismatch) {
			t.Fatalf("foreign worker's receipt: %v %+v", err, res)
		}
		w.noRise(before)
	})

	t.Run("handover_with_escrow_open", func(t *testing.T) {
		w := newWorld(t, nil)
		cl := w.f.Client
		w.accept(cl, w.cs(w.nA, w.sA, Must(cl.Lock(w.f.Worker.ID(), "e", 30, w.now.Add(time.Hour), w.now))))
		before := w.audit()
		_, err := w.a.on(w.nA.Countersign(&pb.CountersignRequest{Block: Must(cl.Handover(w.idB, w.now))}, w.now))
		wantErr(t, err, ledger.ErrEscrowsOpen)
		w.noRise(before)
	})

	t.Run("two_handovers_racing", func(t *testing.T) {
		w := newWorld(t, nil)
		cl := w.f.Client
		toB := Must(cl.Handover(w.idB, w.now))
		// A second hand-over at the same seq (to A's... here: back to B
		// with another timestamp) is a fork: refused, account refused.
		toB2 := Must(cl.Handover(w.idB, w.now.Add(time.Millisecond)))
		var wg sync.WaitGroup
		errs := make([]error, 2)
		outs := make([]ledger.Output, 2)
		for i, b := range []*pb.Block{toB, toB2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[i], errs[i] = w.nA.Countersign(&pb.CountersignRequest{Block: b}, w.now)
			}()
		}
		wg.Wait()
		before := w.audit()
		for i := range outs {
			w.commit(w.sA, outs[i])
		}
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("racing hand-overs: %v, %v", errs[0], errs[1])
		}
		for _, err := range errs {
			if err != nil {
				wantErr(t, err, ledger.ErrFork)
			}
		}
		w.noRise(before)
	})

	t.Run("replay_at_other_authority", func(t *testing.T) {
		w := newWorld(t, nil)
		cl := w.f.Client
		b := Must(cl.Transfer(w.f.Worker.ID(), 10, "x", w.now))
		w.accept(cl, w.cs(w.nA, w.sA, b))
		before := w.audit()
		_, err := w.b.on(w.nB.Countersign(&pb.CountersignRequest{Block: b}, w.now))
		wantErr(t, err, ledger.ErrUnknownAccount)
		_, err = w.b.on(w.nB.Register(&pb.RegisterAccountRequest{Chain: cl.Blocks()}, cl.ID(), w.now))
		wantErr(t, err, ledger.ErrWrongNotary)
		w.noRise(before)
	})

	t.Run("concurrent_requests_one_account", func(t *testing.T) {
		w := newWorld(t, nil)
		cl := w.f.Client
		// Ten transfers of 60 built on the same head race: at most one
		// is countersigned (the others are forks and the account is
		// refused), never two overdrafts.
		var wg sync.WaitGroup
		var mu sync.Mutex
		var outs []ledger.Output
		for i := range 10 {
			b := Must(cl.Transfer(w.f.Worker.ID(), 60, string(rune('a'+i)), w.now))
			wg.Add(1)
			go func() {
				defer wg.Done()
				o, _ := w.nA.Countersign(&pb.CountersignRequest{Block: b}, w.now)
				mu.Lock()
				outs = append(outs, o)
				mu.Unlock()
			}()
		}
		wg.Wait()
		before := w.audit()
		paid := 0
		for _, o := range outs {
			w.commit(w.sA, o)
			paid += len(o.Blocks)
		}
		if paid > 1 {
			t.Fatalf("%d racing transfers countersigned", paid)
		}
		w.noRise(before)
	})

	t.Run("receipt_for_unawarded_job", func(t *testing.T) {
		// The worker signs a receipt for a job that never ran, at the
		// whole escrow's price. The client, which never received the
		// job's result, disputes it with the receipt as evidence before
		// the worker files it: it is never paid.
		w := newWorld(t, func(c *ledger.NotaryConfig) { c.DisputeWindow = time.Minute })
		cl := w.f.Client
		bid := []byte("bid")
		w.accept(cl, w.cs(w.nA, w.sA, Must(cl.Lock(w.f.Worker.ID(), ledger.EscrowID(bid), 30, w.now.Add(time.Hour), w.now))))
		sr := Receipt(t, w.f, bid, "never-awarded", 30)
		h := ledger.ReceiptHash(sr)
		sig := Must(w.f.Key(cl).Sign(ledger.DisputeBytes(h)))
		// Evidence that does not match, or signed by someone else: refused.
		_, err := w.a.on(w.nA.Dispute(&pb.DisputeRequest{ReceiptHash: make([]byte, 32), Client: []byte(cl.ID()), ClientSig: sig, Receipt: sr}, w.now))
		wantErr(t, err, ledger.ErrBadRequest)
		_, err = w.a.on(w.nA.Dispute(&pb.DisputeRequest{ReceiptHash: h, Client: []byte(cl.ID()), ClientSig: Must(w.f.Key(w.f.Worker).Sign(ledger.DisputeBytes(h))), Receipt: sr}, w.now))
		wantErr(t, err, ledger.ErrBadSignature)
		w.a.ok(w.nA.Dispute(&pb.DisputeRequest{ReceiptHash: h, Client: []byte(cl.ID()), ClientSig: sig, Receipt: sr}, w.now))
		before := w.audit()
		for _, at := range []time.Time{w.now, w.now.Add(2 * time.Minute)} {
			o, res, err := w.nA.Settle(&pb.SettleRequest{Claims: []*pb.ReceiptClaim{{Receipt: sr}}}, at)
			w.a.on(o, err)
			if len(res.Released) != 0 || !errors.Is(res.Rejected[0], ledger.ErrDisputed) {
				t.Fatalf("disputed receipt filed at %v: %+v", at, res)
			}
		}
		// The dispute survives a restart.
		n := Must(ledger.NewNotary(ledger.NotaryConfig{Key: w.f.AuthKey, Trust: w.trust, DisputeWindow: time.Minute}))
		Must(0, n.Restore(restoreState(t, w.sA)))
		if e, _ := n.Escrow(ledger.EscrowKey{Client: cl.ID(), Escrow: ledger.EscrowID(bid)}); e.Frozen != 30 || e.Pending != 0 {
			t.Fatalf("after restart: %+v", e)
		}
		_, res, _ := n.Settle(&pb.SettleRequest{Claims: []*pb.ReceiptClaim{{Receipt: sr}}}, w.now.Add(time.Hour))
		if !errors.Is(res.Rejected[0], ledger.ErrDisputed) {
			t.Fatalf("after restart: %+v", res)
		}
		w.noRise(before)
	})

	t.Run("dispute_replayed", func(t *testing.T) {
		w := newWorld(t, func(c *ledger.NotaryConfig) { c.DisputeWindow = time.Minute })
		cl := w.f.Client
		bid := []byte("bid")
		w.accept(cl, w.cs(w.nA, w.sA, Must(cl.Lock(w.f.Worker.ID(), ledger.EscrowID(bid), 30, w.now.Add(time.Hour), w.now))))
		sr := Receipt(t, w.f, bid, "never-ran", 10)
		o, res, err := w.nA.Settle(&pb.SettleRequest{Claims: []*pb.ReceiptClaim{{Receipt: sr}}}, w.now)
		w.a.on(o, err)
		if len(res.Pending) != 1 {
			t.Fatalf("filing: %v %+v", err, res)
		}
		h := ledger.ReceiptHash(sr)
		d := &pb.DisputeRequest{ReceiptHash: h, Client: []byte(cl.ID()), ClientSig: Must(w.f.Key(cl).Sign(ledger.DisputeBytes(h)))}
		w.a.ok(w.nA.Dispute(d, w.now))
		before := w.audit()
		// The same dispute again changes nothing; the worker's refiling
		// after the window is refused: a lost dispute pays nothing.
		o2 := w.a.ok(w.nA.Dispute(d, w.now))
		if len(o2.Notes) != 0 {
			t.Fatalf("replayed dispute wrote %d notes", len(o2.Notes))
		}
		later := w.now.Add(time.Hour)
		o, res, err = w.nA.Settle(&pb.SettleRequest{Claims: []*pb.ReceiptClaim{{Receipt: sr}}}, later)
		w.a.on(o, err)
		if len(res.Released) != 0 || !errors.Is(res.Rejected[0], ledger.ErrDisputed) {
			t.Fatalf("disputed receipt after the window: %+v", res)
		}
		// A dispute by someone else than the client is refused.
		_, err = w.a.on(w.nA.Dispute(&pb.DisputeRequest{ReceiptHash: h, Client: []byte(cl.ID()), ClientSig: Must(w.f.Key(w.f.Worker).Sign(ledger.DisputeBytes(h)))}, w.now))
		wantErr(t, err, ledger.ErrBadSignature)
		w.noRise(before)
	})
}

// Key2 is Key for Must.
func Key2(t testing.TB) (crypto.PrivKey, error) {
	k, _ := Key(t)
	return k, nil
}
