package ledger_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	. "github.com/p2pjobs/p2pnode/ledger/storetest"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

func allChains(f *Fixture) map[peer.ID][]*pb.Block {
	return ledger.GroupChains(allBlocks(f))
}

func allBlocks(f *Fixture) []*pb.Block {
	var bs []*pb.Block
	for _, o := range f.Outputs {
		bs = append(bs, o.Blocks...)
	}
	return bs
}

func audit(t *testing.T, f *Fixture, chains map[peer.ID][]*pb.Block) ledger.AuditReport {
	t.Helper()
	r, err := ledger.Audit(chains, f.Trust)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestVerifyRejectsTampering(t *testing.T) {
	f := NewFixture(t, 100)
	f.Pay(t, f.Client, f.Worker, 40)
	chain := f.Client.Blocks()
	if _, err := ledger.VerifyChain(chain, f.Trust); err != nil {
		t.Fatal(err)
	}
	mutate := func(i int, fn func(b *pb.Block)) []*pb.Block {
		c := make([]*pb.Block, len(chain))
		for j := range chain {
			c[j] = ledger.Clone(chain[j])
		}
		fn(c[i])
		return c
	}
	_, otherID := Key(t)
	otherKey, _ := Key(t)
	cases := []struct {
		name  string
		chain []*pb.Block
		want  error
		seq   uint64
	}{
		{"changed amount", mutate(2, func(b *pb.Block) { b.Amount = 10 }), ledger.ErrBadSignature, 2},
		{"forged owner signature", mutate(1, func(b *pb.Block) { b.OwnerSig[3] ^= 1 }), ledger.ErrBadSignature, 1},
		{"reordered", []*pb.Block{chain[0], chain[2], chain[1]}, ledger.ErrBadSeq, 2},
		{"replayed block", append(append([]*pb.Block{}, chain...), chain[1]), ledger.ErrBadSeq, 1},
		{"missing countersignature", mutate(2, func(b *pb.Block) { b.Notary, b.NotarySig = nil, nil }), ledger.ErrMissingCountersig, 2},
		{"untrusted notary", mutate(2, func(b *pb.Block) { _ = ledger.Countersign(b, otherKey) }), ledger.ErrWrongNotary, 2},
		{"broken link", mutate(1, func(b *pb.Block) { b.Prev = make([]byte, 32) }), ledger.ErrBrokenLink, 1},
	}
	for _, c := range cases {
		_, err := ledger.VerifyChain(c.chain, f.Trust)
		var be *ledger.BlockError
		if !errors.Is(err, c.want) || !errors.As(err, &be) || be.Seq != c.seq {
			t.Errorf("%s: got %v, want %v at seq %d", c.name, err, c.want, c.seq)
		}
	}
	// A verifier that does not trust the authority rejects everything.
	if _, err := ledger.VerifyChain(chain, ledger.NewTrustSet(otherID)); !errors.Is(err, ledger.ErrUntrustedNotary) {
		t.Errorf("untrusted home: %v", err)
	}
	// The authority itself countersigning an overdraft or a replayed claim
	// is caught offline.
	w := Must(ledger.NewWallet(f.Key(f.Client), f.Trust, chain))
	over := Must(w.Transfer(f.Worker.ID(), 60, "x", f.Now))
	over.Amount = 61
	_ = ledger.SignOwner(over, f.Key(f.Client))
	_ = ledger.Countersign(over, f.AuthKey)
	if _, err := ledger.VerifyChain(append(append([]*pb.Block{}, chain...), over), f.Trust); !errors.Is(err, ledger.ErrOverdraft) {
		t.Errorf("overdraft: %v", err)
	}
	src := f.Outputs[len(f.Outputs)-2].Blocks[0] // the transfer out to the worker
	ww := Must(ledger.NewWallet(f.Key(f.Worker), f.Trust, f.Worker.Blocks()))
	replay := Must(ww.Claim(src, f.Now)).Block
	_ = ledger.Countersign(replay, f.AuthKey)
	if _, err := ledger.VerifyChain(append(append([]*pb.Block{}, f.Worker.Blocks()...), replay), f.Trust); !errors.Is(err, ledger.ErrReplay) {
		t.Errorf("replayed claim: %v", err)
	}
	// The notary refuses the replay too.
	if _, err := f.Notary.Countersign(Must(f.Worker.Claim(src, f.Now)), f.Now); !errors.Is(err, ledger.ErrReplay) {
		t.Errorf("notary replay: %v", err)
	}
	// Mint on a non-authority chain.
	mint := Must(ww.Transfer(f.Client.ID(), 1, "", f.Now))
	mint.Kind = pb.BlockKind_BLOCK_MINT
	mint.Counterparty = nil
	_ = ledger.SignOwner(mint, f.Key(f.Worker))
	_ = ledger.Countersign(mint, f.AuthKey)
	if _, err := ledger.VerifyChain(append(append([]*pb.Block{}, f.Worker.Blocks()...), mint), f.Trust); !errors.Is(err, ledger.ErrUntrustedMint) {
		t.Errorf("mint by account: %v", err)
	}
	if _, err := f.Notary.Mint(&pb.MintRequest{To: []byte(f.Client.ID()), Amount: 5}, f.Client.ID(), f.Now); !errors.Is(err, ledger.ErrNotOperator) {
		t.Errorf("mint by non-operator: %v", err)
	}
	audit(t, f, allChains(f))
}

func TestNotaryHeadAndFork(t *testing.T) {
	f := NewFixture(t, 100)
	a := Must(f.Client.Transfer(f.Worker.ID(), 10, "a", f.Now))
	o := Must(f.Notary.Countersign(&pb.CountersignRequest{Block: a}, f.Now))
	// Retry: same block, same countersignature.
	o2 := Must(f.Notary.Countersign(&pb.CountersignRequest{Block: a}, f.Now))
	if len(o2.Blocks) != 0 || !bytes.Equal(ledger.Hash(o.Blocks[0]), ledger.Hash(o2.Reply[0])) {
		t.Fatal("retry is not idempotent")
	}
	// Overdraft refused.
	w2 := Must(ledger.NewWallet(f.Key(f.Client), f.Trust, f.Client.Blocks()))
	big := Must(w2.Transfer(f.Worker.ID(), 100, "big", f.Now))
	big.Seq, big.Prev = o.Blocks[0].Seq+1, ledger.Hash(o.Blocks[0])
	_ = ledger.SignOwner(big, f.Key(f.Client))
	if _, err := f.Notary.Countersign(&pb.CountersignRequest{Block: big}, f.Now); !errors.Is(err, ledger.ErrOverdraft) || ledger.Code(err) != pb.ErrorCode_LEDGER_INSUFFICIENT_FUNDS {
		t.Fatalf("overdraft: %v", err)
	}
	// Stale head: a block built on the old head.
	stale := Must(w2.Transfer(f.Worker.ID(), 5, "b", f.Now)) // seq = same as a
	if _, err := f.Notary.Countersign(&pb.CountersignRequest{Block: stale}, f.Now); !errors.Is(err, ledger.ErrFork) {
		t.Fatalf("fork: %v", err)
	}
	if !f.Notary.Refused(f.Client.ID()) {
		t.Fatal("forking account not refused")
	}
	next := Must(f.Client.Transfer(f.Worker.ID(), 1, "c", f.Now))
	if _, err := f.Notary.Countersign(&pb.CountersignRequest{Block: next}, f.Now); !errors.Is(err, ledger.ErrAccountRefused) {
		t.Fatalf("refused account served: %v", err)
	}
}

func TestEscrowRules(t *testing.T) {
	f := NewFixture(t, 100)
	bid := []byte("bid-7")
	esc := ledger.EscrowID(bid)
	lock := Must(f.Client.Lock(f.Worker.ID(), esc, 60, f.Now.Add(time.Hour), f.Now))
	o := Must(f.Notary.Countersign(&pb.CountersignRequest{Block: lock}, f.Now))
	f.Outputs = append(f.Outputs, o)
	if err := f.Client.Accept(o.Blocks[0]); err != nil {
		t.Fatal(err)
	}
	if f.Client.State().Balance != 40 {
		t.Fatalf("balance after lock %d", f.Client.State().Balance)
	}
	// Lock more than the balance: refused before anything is dispatched.
	if _, err := f.Client.Lock(f.Worker.ID(), "other", 41, f.Now.Add(time.Hour), f.Now); !errors.Is(err, ledger.ErrOverdraft) {
		t.Fatalf("over-lock: %v", err)
	}
	r := make([]*pb.SignedReceipt, 6)
	for i := range r {
		r[i] = Receipt(t, f, bid, fmt.Sprint("job", i), 10)
	}
	settle := func(now time.Time, claims ...*pb.ReceiptClaim) ledger.SettleResult {
		t.Helper()
		out, res, err := f.Notary.Settle(&pb.SettleRequest{Claims: claims}, now)
		if err != nil {
			t.Fatal(err)
		}
		f.Outputs = append(f.Outputs, out)
		for _, b := range out.Blocks {
			if err := ledger.VerifySettlement(b, out.Settlements[0]); err != nil {
				t.Fatal(err)
			}
			f.Claim(t, f.Worker, b)
		}
		return res
	}
	// 0, 1: acked → paid at once, one release block.
	res := settle(f.Now, &pb.ReceiptClaim{Receipt: r[0], ClientAck: Ack(t, f, r[0])}, &pb.ReceiptClaim{Receipt: r[1], ClientAck: Ack(t, f, r[1])})
	if len(res.Released) != 2 || f.Worker.State().Balance != 20 {
		t.Fatalf("acked: %+v, worker %d", res, f.Worker.State().Balance)
	}
	// Paying the same receipt again is refused.
	res = settle(f.Now, &pb.ReceiptClaim{Receipt: r[0], ClientAck: Ack(t, f, r[0])})
	if !errors.Is(res.Rejected[0], ledger.ErrAlreadyPaid) {
		t.Fatalf("double pay: %v", res.Rejected)
	}
	// 2, 3: no ack → filed; 3 disputed; after the window 2 is paid, 3 not.
	res = settle(f.Now, &pb.ReceiptClaim{Receipt: r[2]}, &pb.ReceiptClaim{Receipt: r[3]})
	if len(res.Pending) != 2 {
		t.Fatalf("filed: %+v", res)
	}
	h3 := ledger.ReceiptHash(r[3])
	dsig := Must(f.Key(f.Client).Sign(ledger.DisputeBytes(h3)))
	if _, err := f.Notary.Dispute(&pb.DisputeRequest{ReceiptHash: h3, Client: []byte(f.Client.ID()), ClientSig: dsig}, f.Now); err != nil {
		t.Fatal(err)
	}
	res = settle(f.Now.Add(time.Minute), &pb.ReceiptClaim{Receipt: r[2]})
	if len(res.Pending) != 1 {
		t.Fatalf("paid inside the window: %+v", res)
	}
	later := f.Now.Add(ledger.DefaultDisputeWindow + time.Second)
	res = settle(later, &pb.ReceiptClaim{Receipt: r[2]}, &pb.ReceiptClaim{Receipt: r[3]})
	if len(res.Released) != 1 || !errors.Is(res.Rejected[1], ledger.ErrDisputed) {
		t.Fatalf("after window: %+v", res)
	}
	// Refund before expiry is refused; after expiry it returns what is
	// neither paid nor frozen: 60 - 30 paid - 10 frozen = 20.
	refund := &pb.RefundRequest{Client: []byte(f.Client.ID()), Escrow: esc}
	if _, err := f.Notary.Refund(refund, later); !errors.Is(err, ledger.ErrEscrowNotExpired) {
		t.Fatalf("early refund: %v", err)
	}
	ro := Must(f.Notary.Refund(refund, f.Now.Add(2*time.Hour)))
	f.Outputs = append(f.Outputs, ro)
	if ro.Blocks[0].Amount != 20 {
		t.Fatalf("refund %d", ro.Blocks[0].Amount)
	}
	f.Claim(t, f.Client, ro.Blocks[0])
	rep := audit(t, f, allChains(f))
	if rep.Escrow != 10 || rep.InFlight != 0 {
		t.Fatalf("report %+v", rep)
	}
	// The client acknowledges the disputed job at last: it is paid, escrow
	// closes.
	res = settle(f.Now.Add(3*time.Hour), &pb.ReceiptClaim{Receipt: r[3], ClientAck: Ack(t, f, r[3])})
	if len(res.Released) != 1 {
		t.Fatalf("ack after dispute: %+v", res)
	}
	rep = audit(t, f, allChains(f))
	if rep.Escrow != 0 || f.Worker.State().Balance != 40 || f.Client.State().Balance != 60 {
		t.Fatalf("final %+v worker %d client %d", rep, f.Worker.State().Balance, f.Client.State().Balance)
	}
	// Each receipt of a batch is provable alone.
	hs := [][]byte{ledger.ReceiptHash(r[0]), ledger.ReceiptHash(r[1]), ledger.ReceiptHash(r[2])}
	root := ledger.MerkleRoot(hs)
	for i := range hs {
		if !ledger.VerifyMerkleProof(root, hs[i], i, len(hs), ledger.MerkleProof(hs, i)) {
			t.Fatalf("proof %d", i)
		}
	}
	if ledger.VerifyMerkleProof(root, hs[0], 1, len(hs), ledger.MerkleProof(hs, 0)) {
		t.Fatal("proof at the wrong index verified")
	}
}

func TestTwoAuthorities(t *testing.T) {
	fa := NewFixture(t, 100) // client and worker at A
	kb, idB := Key(t)
	fa.Trust[idB] = struct{}{} // the fixture's wallets share this set: they trust B too
	trust := fa.Trust
	nb := Must(ledger.NewNotary(ledger.NotaryConfig{Key: kb, Trust: trust}))
	nA := Must(ledger.NewNotary(ledger.NotaryConfig{Key: fa.AuthKey, Trust: trust}))
	// Rebuild A with the wider trust set from what it produced so far.
	if err := nA.Restore(ledger.RestoreState{Chains: chainsOf(allChains(fa))}); err != nil {
		t.Fatal(err)
	}
	fa.Notary, fa.Trust = nA, trust
	var outs []ledger.Output
	outs = append(outs, Must(nb.Genesis(fa.Now)))
	// A worker homed at B.
	wk, _ := Key(t)
	w := Must(ledger.NewWallet(wk, trust, nil))
	g := Must(nb.Register(&pb.RegisterAccountRequest{Chain: []*pb.Block{Must(w.Genesis(idB, fa.Now))}}, w.ID(), fa.Now))
	outs = append(outs, g)
	_ = w.Accept(g.Blocks[0])
	// Cross-authority transfer: A countersigns the out, B the in.
	out := Must(fa.Client.TransferTo(w.ID(), idB, 25, "pay", fa.Now)) // names the worker's home
	oa := Must(nA.Countersign(&pb.CountersignRequest{Block: out}, fa.Now))
	_ = fa.Client.Accept(oa.Blocks[0])
	outs = append(outs, oa)
	if _, err := nA.Countersign(Must(w.Claim(oa.Blocks[0], fa.Now)), fa.Now); !errors.Is(err, ledger.ErrUnknownAccount) {
		t.Fatalf("A served a B account: %v", err)
	}
	ob := Must(nb.Countersign(Must(w.Claim(oa.Blocks[0], fa.Now)), fa.Now))
	_ = w.Accept(ob.Blocks[0])
	outs = append(outs, ob)
	// Escrow at A released to the B worker.
	lock := Must(fa.Client.Lock(w.ID(), ledger.EscrowID([]byte("b1")), 10, fa.Now.Add(time.Hour), fa.Now))
	ol := Must(nA.Countersign(&pb.CountersignRequest{Block: lock}, fa.Now))
	_ = fa.Client.Accept(ol.Blocks[0])
	outs = append(outs, ol)
	rc := Must(ledger.SignReceipt(&pb.Receipt{JobId: "j", Worker: []byte(w.ID()), Client: []byte(fa.Client.ID()), BidId: []byte("b1"), Price: 10}, wk))
	ack := Must(fa.Key(fa.Client).Sign(ledger.ClientAckBytes(ledger.ReceiptHash(rc))))
	so, _, err := nA.Settle(&pb.SettleRequest{Claims: []*pb.ReceiptClaim{{Receipt: rc, ClientAck: ack}}, Home: []byte(idB)}, fa.Now)
	if err != nil || len(so.Blocks) != 1 {
		t.Fatal(err)
	}
	outs = append(outs, so)
	oc := Must(nb.Countersign(Must(w.Claim(so.Blocks[0], fa.Now)), fa.Now))
	_ = w.Accept(oc.Blocks[0])
	outs = append(outs, oc)
	// The client moves home from A to B: A countersigns the hand-over, B
	// takes the chain, then serves it.
	ho := Must(nA.Countersign(&pb.CountersignRequest{Block: Must(fa.Client.Handover(idB, fa.Now))}, fa.Now))
	if err := fa.Client.Accept(ho.Blocks[0]); err != nil || fa.Client.State().Home != idB {
		t.Fatalf("hand-over: %v, home %s", err, fa.Client.State().Home)
	}
	outs = append(outs, ho)
	if _, err := nA.Countersign(&pb.CountersignRequest{Block: Must(fa.Client.Transfer(w.ID(), 1, "x", fa.Now))}, fa.Now); !errors.Is(err, ledger.ErrWrongNotary) {
		t.Fatalf("old home still serves: %v", err)
	}
	if _, err := nb.Register(&pb.RegisterAccountRequest{Chain: fa.Client.Blocks()}, fa.Client.ID(), fa.Now); err != nil {
		t.Fatal(err)
	}
	ot := Must(nb.Countersign(&pb.CountersignRequest{Block: Must(fa.Client.Transfer(w.ID(), 5, "after", fa.Now))}, fa.Now))
	if err := fa.Client.Accept(ot.Blocks[0]); err != nil {
		t.Fatalf("B's countersignature after the hand-over: %v", err)
	}
	outs = append(outs, ot)
	fa.Outputs = append(fa.Outputs, outs...)
	rep := audit(t, fa, allChains(fa))
	if w.State().Balance != 35 || fa.Client.State().Balance != 60 || rep.InFlight != 5 || !rep.Conserved() {
		t.Fatalf("worker %d client %d report %+v", w.State().Balance, fa.Client.State().Balance, rep)
	}
	// A verifier trusting only A rejects the worker's B-notarised chain.
	if _, err := ledger.VerifyChain(w.Blocks(), ledger.NewTrustSet(fa.Auth)); !errors.Is(err, ledger.ErrUntrustedNotary) {
		t.Fatalf("B chain under A-only trust: %v", err)
	}
}

func chainsOf(m map[peer.ID][]*pb.Block) [][]*pb.Block {
	var out [][]*pb.Block
	for _, c := range m {
		out = append(out, c)
	}
	return out
}

func TestGrantRateLimited(t *testing.T) {
	k, id := Key(t)
	n := Must(ledger.NewNotary(ledger.NotaryConfig{Key: k, Grant: ledger.GrantPolicy{Amount: 5, MaxPerHour: 2}}))
	now := time.UnixMilli(1_700_000_000_000)
	Must(n.Genesis(now))
	var got []int
	for range 3 {
		ck, _ := Key(t)
		w := Must(ledger.NewWallet(ck, ledger.NewTrustSet(id), nil))
		o := Must(n.Register(&pb.RegisterAccountRequest{Chain: []*pb.Block{Must(w.Genesis(id, now))}}, w.ID(), now))
		got = append(got, len(o.Blocks))
	}
	if fmt.Sprint(got) != "[3 3 1]" {
		t.Fatalf("blocks per registration %v (want grant, grant, none)", got)
	}
	k2, _ := Key(t)
	off := Must(ledger.NewNotary(ledger.NotaryConfig{Key: k2}))
	Must(off.Genesis(now))
	_ = off
}

func TestExportImportRestore(t *testing.T) {
	f := NewFixture(t, 100)
	EscrowScenario(t, f)
	var buf bytes.Buffer
	if err := ledger.Export(&buf, allBlocks(f)); err != nil {
		t.Fatal(err)
	}
	bs, err := ledger.Import(&buf)
	if err != nil {
		t.Fatal(err)
	}
	rep := audit(t, f, ledger.GroupChains(bs))
	if rep.Escrow != 20 || !rep.Conserved() {
		t.Fatalf("%+v", rep)
	}
	// A restored notary continues where the first stopped.
	s := ledger.NewMemStore(f.Trust)
	for _, o := range f.Outputs {
		if err := s.Commit(o); err != nil {
			t.Fatal(err)
		}
	}
	n2 := Must(ledger.NewNotary(ledger.NotaryConfig{Key: f.AuthKey}))
	rs := ledger.RestoreState{Notes: Must(s.Notes())}
	for _, id := range Must(s.Accounts()) {
		rs.Chains = append(rs.Chains, Must(s.Chain(id, 0, 0)))
	}
	if err := n2.Restore(rs); err != nil {
		t.Fatal(err)
	}
	k := ledger.EscrowKey{Client: f.Client.ID(), Escrow: ledger.EscrowID([]byte("bid-1"))}
	e1, _ := f.Notary.Escrow(k)
	e2, _ := n2.Escrow(k)
	if e1 != e2 {
		t.Fatalf("escrow after restore %+v, want %+v", e2, e1)
	}
	h1 := Must(f.Notary.Head(f.Client.ID()))
	h2 := Must(n2.Head(f.Client.ID()))
	if !bytes.Equal(h1.Hash, h2.Hash) || h1.Balance != h2.Balance {
		t.Fatal("head differs after restore")
	}
}

// Many clients and workers transact through one notary at once; the audit
// of everything produced must balance.
func TestConservationUnderConcurrency(t *testing.T) {
	f := NewFixture(t, 0)
	const clients, workers, jobs = 8, 4, 20
	var ws []*ledger.Wallet
	for range workers {
		k, _ := Key(t)
		ws = append(ws, f.Register(t, k))
	}
	var cs []*ledger.Wallet
	for range clients {
		k, _ := Key(t)
		c := f.Register(t, k)
		f.Fund(t, c, 1000)
		cs = append(cs, c)
	}
	var mu sync.Mutex // guards outs and worker wallets
	var outs []ledger.Output
	record := func(o ledger.Output) { mu.Lock(); outs = append(outs, o); mu.Unlock() }
	claim := func(w *ledger.Wallet, src *pb.Block) {
		mu.Lock()
		defer mu.Unlock()
		o, err := f.Notary.Countersign(Must(w.Claim(src, f.Now)), f.Now)
		if err != nil {
			panic(err)
		}
		outs = append(outs, o)
		if err := w.Accept(o.Blocks[0]); err != nil {
			panic(err)
		}
	}
	var wg sync.WaitGroup
	for ci, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ck := f.Key(c)
			for j := range jobs {
				w := ws[(ci+j)%workers]
				bid := []byte(fmt.Sprintf("c%d-j%d", ci, j))
				lock := Must(c.Lock(w.ID(), ledger.EscrowID(bid), 7, f.Now.Add(time.Hour), f.Now))
				o, err := f.Notary.Countersign(&pb.CountersignRequest{Block: lock}, f.Now)
				if err != nil {
					panic(err)
				}
				record(o)
				_ = c.Accept(o.Blocks[0])
				mu.Lock()
				wk := f.Keys[w.ID()]
				mu.Unlock()
				rc := Must(ledger.SignReceipt(&pb.Receipt{JobId: "j", Worker: []byte(w.ID()), Client: []byte(c.ID()), BidId: bid, Price: 5}, wk))
				ack := Must(ck.Sign(ledger.ClientAckBytes(ledger.ReceiptHash(rc))))
				so, _, err := f.Notary.Settle(&pb.SettleRequest{Claims: []*pb.ReceiptClaim{{Receipt: rc, ClientAck: ack}}}, f.Now)
				if err != nil {
					panic(err)
				}
				record(so)
				claim(w, so.Blocks[0])
				if j%2 == 0 { // the rest comes back
					ro, err := f.Notary.Refund(&pb.RefundRequest{Client: []byte(c.ID()), Escrow: ledger.EscrowID(bid)}, f.Now.Add(2*time.Hour))
					if err != nil {
						panic(err)
					}
					record(ro)
					co, err := f.Notary.Countersign(Must(c.Claim(ro.Blocks[0], f.Now)), f.Now)
					if err != nil {
						panic(err)
					}
					record(co)
					_ = c.Accept(co.Blocks[0])
				}
			}
		}()
	}
	wg.Wait()
	f.Outputs = append(f.Outputs, outs...)
	// Blocks of one account may have been recorded out of order across
	// goroutines: sort each chain by seq.
	chains := allChains(f)
	for _, c := range chains {
		sortBySeq(c)
	}
	rep := audit(t, f, chains)
	var earned uint64
	for _, w := range ws {
		earned += w.State().Balance
	}
	if earned != clients*jobs*5 || rep.Escrow != clients*jobs/2*2 || rep.Minted != clients*1000 {
		t.Fatalf("earned %d, report %+v", earned, rep)
	}
	t.Logf("conserved: minted %d = balances %d + escrow %d + in flight %d over %d blocks", rep.Minted, rep.Balances, rep.Escrow, rep.InFlight, rep.Blocks)
}

func sortBySeq(c []*pb.Block) {
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && c[j].Seq < c[j-1].Seq; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
}
