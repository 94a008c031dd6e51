package ledger_test

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	. "github.com/p2pjobs/p2pnode/ledger/storetest"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

var (
	modelOps  = flag.Int("adversary.ops", 0, "operations of the model-based randomized ledger test (TestAdversaryModel; 0: 3000, 2000 with -race)")
	modelSeed = flag.Uint64("adversary.seed", 0, "seed of TestAdversaryModel (0: a few fixed seeds)")
)

// mAcct is an account in the model: its wallet and the balance the model
// expects.
type mAcct struct {
	w   *ledger.Wallet
	key crypto.PrivKey
	bal uint64
}

type mOut struct {
	b       *pb.Block
	to      *mAcct
	claimed bool
}

type mEscrow struct {
	client, worker *mAcct
	bid            []byte
	holder         peer.ID
	remaining      uint64
	expires        time.Time
	jobs           int
}

// model drives two notaries (each with its store: every decision is
// committed, and a commit must never fail) with random honest and
// dishonest operations, and keeps the reference balances.
type model struct {
	t       *testing.T
	r       *rand.Rand
	now     time.Time
	trust   ledger.TrustSet
	auths   []peer.ID
	keys    map[peer.ID]crypto.PrivKey
	n       map[peer.ID]*ledger.Notary
	s       map[peer.ID]*ledger.MemStore
	accts   []*mAcct
	outs    []*mOut
	escrows []*mEscrow
	minted  uint64
	stats   map[string]int
}

func newModel(t *testing.T, seed uint64) *model {
	m := &model{t: t, r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: time.UnixMilli(1_700_000_000_000),
		trust: ledger.NewTrustSet(), keys: map[peer.ID]crypto.PrivKey{}, n: map[peer.ID]*ledger.Notary{}, s: map[peer.ID]*ledger.MemStore{},
		stats: map[string]int{}}
	for range 2 {
		k, id := Key(t)
		m.auths = append(m.auths, id)
		m.keys[id] = k
		m.trust[id] = struct{}{}
	}
	for _, id := range m.auths {
		m.n[id] = Must(ledger.NewNotary(ledger.NotaryConfig{Key: m.keys[id], Trust: m.trust, MinLockLifetime: time.Second, DisputeWindow: time.Minute}))
		m.s[id] = ledger.NewMemStore(m.trust)
		m.commit(id, Must(m.n[id].Genesis(m.now)))
	}
	for i := range 6 {
		k, _ := Key(t)
		a := &mAcct{w: Must(ledger.NewWallet(k, m.trust, nil)), key: k}
		home := m.auths[i%2]
		o := Must(m.n[home].Register(&pb.RegisterAccountRequest{Chain: []*pb.Block{Must(a.w.Genesis(home, m.now))}}, a.w.ID(), m.now))
		m.commit(home, o)
		m.accept(a, o.Blocks[0])
		m.accts = append(m.accts, a)
	}
	return m
}

func (m *model) commit(auth peer.ID, o ledger.Output) {
	m.t.Helper()
	if err := m.s[auth].Commit(o); err != nil {
		m.t.Fatalf("commit at %s failed (the service would rebuild): %v", auth, err)
	}
}

func (m *model) accept(a *mAcct, b *pb.Block) {
	m.t.Helper()
	if err := a.w.Accept(b); err != nil {
		m.t.Fatalf("wallet refuses the notary's block: %v", err)
	}
}

func (m *model) home(a *mAcct) peer.ID { return a.w.State().Home }

// cs asks a's home to countersign b and commits the decision.
func (m *model) cs(a *mAcct, req *pb.CountersignRequest) (*pb.Block, error) {
	h := m.home(a)
	o, err := m.n[h].Countersign(req, m.now)
	m.commit(h, o)
	if err != nil {
		return nil, err
	}
	if len(o.Blocks) == 1 {
		m.accept(a, o.Blocks[0])
		return o.Blocks[0], nil
	}
	return nil, nil
}

func (m *model) pick() *mAcct { return m.accts[m.r.IntN(len(m.accts))] }

func (m *model) other(a *mAcct) *mAcct {
	i := m.r.IntN(len(m.accts) - 1)
	if m.accts[i] == a {
		return m.accts[len(m.accts)-1]
	}
	return m.accts[i]
}

// refuse records that a dishonest operation was refused as expected.
func (m *model) refuse(name string, err error, want ...error) {
	m.t.Helper()
	if err == nil {
		m.t.Fatalf("%s: accepted", name)
	}
	if ledger.Code(err) == pb.ErrorCode_INTERNAL {
		m.t.Fatalf("%s: internal error %v", name, err)
	}
	for _, w := range want {
		if errors.Is(err, w) {
			m.stats["refused "+name]++
			return
		}
	}
	if len(want) > 0 {
		m.t.Fatalf("%s: %v, want one of %v", name, err, want)
	}
	m.stats["refused "+name]++
}

func (m *model) step() {
	m.now = m.now.Add(time.Duration(m.r.IntN(2000)) * time.Millisecond)
	switch op := m.r.IntN(16); op {
	case 0: // mint (operator) to an account, at its home
		a := m.pick()
		h := m.home(a)
		amt := uint64(1 + m.r.IntN(100))
		o := Must(m.n[h].Mint(&pb.MintRequest{To: []byte(a.w.ID()), Amount: amt, Reference: "m"}, h, m.now))
		m.commit(h, o)
		m.minted += amt
		m.outs = append(m.outs, &mOut{b: o.Blocks[1], to: a})
		m.stats["mint"]++
	case 1, 2: // honest transfer, naming the receiver's home
		a := m.pick()
		b := m.other(a)
		if a.bal == 0 {
			return
		}
		amt := uint64(1 + m.r.IntN(int(a.bal)))
		blk, err := m.cs(a, &pb.CountersignRequest{Block: Must(a.w.TransferTo(b.w.ID(), m.home(b), amt, "t", m.now))})
		if err != nil {
			m.t.Fatalf("honest transfer: %v", err)
		}
		a.bal -= amt
		m.outs = append(m.outs, &mOut{b: blk, to: b})
		m.stats["transfer"]++
	case 3, 4: // claim an unclaimed out
		var open []*mOut
		for _, o := range m.outs {
			if !o.claimed {
				open = append(open, o)
			}
		}
		if len(open) == 0 {
			return
		}
		o := open[m.r.IntN(len(open))]
		if _, err := m.cs(o.to, Must(o.to.w.Claim(o.b, m.now))); err != nil {
			m.t.Fatalf("honest claim: %v", err)
		}
		o.claimed = true
		o.to.bal += o.b.Amount
		m.stats["claim"]++
	case 5: // dishonest: claim a claimed out again, at the home and elsewhere
		var done []*mOut
		for _, o := range m.outs {
			if o.claimed {
				done = append(done, o)
			}
		}
		if len(done) == 0 {
			return
		}
		o := done[m.r.IntN(len(done))]
		_, err := m.cs(o.to, Must(o.to.w.Claim(o.b, m.now)))
		m.refuse("double claim", err, ledger.ErrReplay)
		for _, id := range m.auths {
			if id != m.home(o.to) {
				out, err := m.n[id].Countersign(Must(o.to.w.Claim(o.b, m.now)), m.now)
				m.commit(id, out)
				m.refuse("claim at another authority", err, ledger.ErrUnknownAccount, ledger.ErrWrongNotary)
			}
		}
	case 6: // lock an award
		c := m.pick()
		if c.bal == 0 {
			return
		}
		w := m.other(c)
		amt := uint64(1 + m.r.IntN(int(min(c.bal, 50))))
		bid := fmt.Appendf(nil, "bid-%d", len(m.escrows))
		exp := m.now.Add(time.Duration(2+m.r.IntN(20)) * time.Second)
		if _, err := m.cs(c, &pb.CountersignRequest{Block: Must(c.w.Lock(w.w.ID(), ledger.EscrowID(bid), amt, exp, m.now))}); err != nil {
			m.t.Fatalf("honest lock: %v", err)
		}
		c.bal -= amt
		m.escrows = append(m.escrows, &mEscrow{client: c, worker: w, bid: bid, holder: m.home(c), remaining: amt, expires: exp})
		m.stats["lock"]++
	case 7, 8: // a job delivered and acknowledged: settled
		if len(m.escrows) == 0 {
			return
		}
		e := m.escrows[m.r.IntN(len(m.escrows))]
		price := uint64(1 + m.r.IntN(10))
		e.jobs++
		sr := Must(ledger.SignReceipt(&pb.Receipt{JobId: fmt.Sprint(e.jobs), Worker: []byte(e.worker.w.ID()), Client: []byte(e.client.w.ID()), BidId: e.bid, Price: price}, e.worker.key))
		ack := Must(e.client.key.Sign(ledger.ClientAckBytes(ledger.ReceiptHash(sr))))
		o, res, err := m.n[e.holder].SettleFrom(&pb.SettleRequest{Claims: []*pb.ReceiptClaim{{Receipt: sr, ClientAck: ack}}, Home: []byte(m.home(e.worker))}, e.worker.w.ID(), m.now)
		m.commit(e.holder, o)
		if err != nil {
			m.t.Fatal(err)
		}
		if price > e.remaining {
			m.refuse("receipt over the escrow", res.Rejected[0], ledger.ErrOverdraft)
			return
		}
		if len(res.Released) != 1 {
			m.t.Fatalf("acked receipt not paid: %+v", res)
		}
		e.remaining -= price
		m.outs = append(m.outs, &mOut{b: o.Blocks[0], to: e.worker})
		m.stats["settle"]++
	case 9: // dishonest worker: a receipt against someone else's escrow
		if len(m.escrows) == 0 {
			return
		}
		e := m.escrows[m.r.IntN(len(m.escrows))]
		thief := m.other(e.worker)
		sr := Must(ledger.SignReceipt(&pb.Receipt{JobId: "x", Worker: []byte(thief.w.ID()), Client: []byte(e.client.w.ID()), BidId: e.bid, Price: 1}, thief.key))
		o, res, _ := m.n[e.holder].SettleFrom(&pb.SettleRequest{Claims: []*pb.ReceiptClaim{{Receipt: sr}}}, thief.w.ID(), m.now)
		m.commit(e.holder, o)
		m.refuse("foreign receipt", res.Rejected[0], ledger.ErrEscrowMismatch, ledger.ErrUnknownEscrow)
	case 10: // refund after expiry
		if len(m.escrows) == 0 {
			return
		}
		e := m.escrows[m.r.IntN(len(m.escrows))]
		o, err := m.n[e.holder].Refund(&pb.RefundRequest{Client: []byte(e.client.w.ID()), Escrow: ledger.EscrowID(e.bid)}, m.now)
		m.commit(e.holder, o)
		switch {
		case m.now.Before(e.expires):
			m.refuse("early refund", err, ledger.ErrEscrowNotExpired)
		case e.remaining == 0:
			m.refuse("refund of nothing", err, ledger.ErrBadRequest)
		case err != nil:
			m.t.Fatalf("refund: %v", err)
		default:
			m.outs = append(m.outs, &mOut{b: o.Blocks[0], to: e.client})
			e.remaining = 0
			m.stats["refund"]++
		}
	case 11: // dishonest: re-register one's own chain at its home
		a := m.pick()
		h := m.home(a)
		o, err := m.n[h].Register(&pb.RegisterAccountRequest{Chain: a.w.Blocks()}, a.w.ID(), m.now)
		m.commit(h, o)
		if err == nil && len(o.Blocks) > 0 {
			m.t.Fatalf("re-registration wrote %d blocks", len(o.Blocks))
		}
		m.stats["re-register"]++
	case 12: // a retry of the last block: the original answer, nothing persisted
		a := m.pick()
		bs := a.w.Blocks()
		last := ledger.Clone(bs[len(bs)-1])
		if last.Kind == pb.BlockKind_BLOCK_GENESIS {
			return
		}
		h := m.home(a)
		last.Notary, last.NotarySig = nil, nil
		o, err := m.n[h].Countersign(&pb.CountersignRequest{Block: last}, m.now)
		m.commit(h, o)
		if peer.ID(bs[len(bs)-1].Notary) == h {
			if err != nil || len(o.Blocks) != 0 || len(o.Reply) != 1 || ledger.HashRef(o.Reply[0]) != ledger.HashRef(bs[len(bs)-1]) {
				m.t.Fatalf("retry: %v %+v", err, o)
			}
			m.stats["retry"]++
		} else {
			m.refuse("replay at the new home", err, ledger.ErrReplay)
		}
	case 13: // dishonest: overdraft and wrap-around
		a := m.pick()
		if a.bal == 0 {
			return // the wallet itself refuses to sign it
		}
		b := Must(a.w.Transfer(m.other(a).w.ID(), 1, "o", m.now))
		b.Amount = a.bal + 1 + m.r.Uint64N(1<<63)
		Must(0, ledger.SignOwner(b, a.key))
		_, err := m.cs(a, &pb.CountersignRequest{Block: b})
		m.refuse("overdraft", err, ledger.ErrOverdraft)
	case 14: // hand-over to the other authority when no escrow is open
		a := m.pick()
		h := m.home(a)
		for _, e := range m.escrows {
			if e.client == a && e.remaining > 0 {
				_, err := m.cs(a, &pb.CountersignRequest{Block: Must(a.w.Handover(m.otherAuth(h), m.now))})
				m.refuse("hand-over with escrow open", err, ledger.ErrEscrowsOpen)
				return
			}
		}
		to := m.otherAuth(h)
		if _, err := m.cs(a, &pb.CountersignRequest{Block: Must(a.w.Handover(to, m.now))}); err != nil {
			m.t.Fatalf("hand-over: %v", err)
		}
		o, err := m.n[to].Register(&pb.RegisterAccountRequest{Chain: a.w.Blocks()}, a.w.ID(), m.now)
		if err != nil {
			m.t.Fatalf("arrival: %v", err)
		}
		m.commit(to, o)
		m.stats["hand-over"]++
	case 15: // dishonest: a lock that expires at once
		a := m.pick()
		if a.bal == 0 {
			return
		}
		_, err := m.cs(a, &pb.CountersignRequest{Block: Must(a.w.Lock(m.other(a).w.ID(), "short", 1, m.now.Add(time.Millisecond), m.now))})
		m.refuse("short lock", err, ledger.ErrLockTooShort)
	}
}

func (m *model) otherAuth(h peer.ID) peer.ID {
	if m.auths[0] == h {
		return m.auths[1]
	}
	return m.auths[0]
}

// check compares the system with the model and checks conservation from
// the stores' chain totals: Σ minted = Σ balances + Σ locked + Σ out − Σ in
// (which is balances + open escrow + in flight).
func (m *model) check() {
	m.t.Helper()
	states := map[peer.ID]ledger.ChainState{}
	for _, s := range m.s {
		for _, id := range Must(s.Accounts()) {
			st := Must(s.State(id))
			if st.Blocks > states[id].Blocks {
				states[id] = st
			}
		}
	}
	for _, a := range m.accts {
		if got := states[a.w.ID()].Balance; got != a.bal || a.w.State().Balance != a.bal {
			m.t.Fatalf("account %s: store %d, wallet %d, model %d", a.w.ID(), got, a.w.State().Balance, a.bal)
		}
	}
	for _, e := range m.escrows {
		st, ok := m.n[e.holder].Escrow(ledger.EscrowKey{Client: e.client.w.ID(), Escrow: ledger.EscrowID(e.bid)})
		if !ok || st.Remaining != e.remaining {
			m.t.Fatalf("escrow %s: notary %d, model %d", e.bid, st.Remaining, e.remaining)
		}
	}
	var minted, right uint64
	var in uint64
	for _, st := range states {
		minted += st.Minted
		right += st.Balance + st.Locked + st.Out
		in += st.In
	}
	if minted != m.minted || minted != right-in {
		m.t.Fatalf("conservation: minted %d (model %d), balances+locked+out-in %d", minted, m.minted, right-in)
	}
}

func (m *model) audit() {
	m.t.Helper()
	chains := map[peer.ID][]*pb.Block{}
	for _, s := range m.s {
		for _, id := range Must(s.Accounts()) {
			if c := Must(s.Chain(id, 0, 0)); len(c) > len(chains[id]) {
				chains[id] = c
			}
		}
	}
	rep, err := ledger.Audit(chains, m.trust)
	if err != nil || rep.Minted != m.minted {
		m.t.Fatalf("audit: %v (minted %d, model %d)", err, rep.Minted, m.minted)
	}
}

// TestAdversaryModel: seeded, reproducible random interleavings of honest
// and dishonest operations by six accounts across two authorities. After
// every step the stores, the wallets and the reference model agree and
// conservation holds; a full audit runs every 500 steps and at the end.
// -adversary.ops sets the number of operations (millions for a long run),
// -adversary.seed replays one seed.
func TestAdversaryModel(t *testing.T) {
	seeds := []uint64{1, 2, 3}
	if *modelSeed != 0 {
		seeds = []uint64{*modelSeed}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			m := newModel(t, seed)
			total := *modelOps
			if total == 0 {
				total = 3000
				if raceEnabled {
					total = 2000
				}
			}
			ops := max(total/len(seeds), 1)
			for i := range ops {
				m.step()
				m.check()
				if i%500 == 499 {
					m.audit()
				}
			}
			m.audit()
			t.Logf("seed %d: %d operations: %v", seed, ops, m.stats)
		})
	}
}

// byteSource is a rand.Source that plays back the fuzzer's bytes, so that
// the fuzzer steers the sequence of operations; a fixed PCG stream is
// mixed in so that runs of zeros (and the end of the input) cannot stall
// rand's rejection sampling.
type byteSource struct {
	data []byte
	pcg  *rand.PCG
}

func (s *byteSource) Uint64() uint64 {
	var v uint64
	for range 8 {
		v <<= 8
		if len(s.data) > 0 {
			v |= uint64(s.data[0])
			s.data = s.data[1:]
		}
	}
	return v ^ s.pcg.Uint64()
}

// FuzzNotarySequence drives two notaries with sequences of honest and
// dishonest requests chosen by the fuzzer (TestAdversaryModel's
// operations): after every step the system and the model agree and
// conservation holds; at the end the stores pass the audit.
func FuzzNotarySequence(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00\x01"))
	for seed := range uint64(4) {
		r := rand.New(rand.NewPCG(seed, seed))
		b := make([]byte, 128)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		m := newModel(t, 0)
		m.r = rand.New(&byteSource{data: data, pcg: rand.NewPCG(1, 2)})
		for range len(data)/8 + 1 {
			m.step()
			m.check()
		}
		m.audit()
	})
}
