package ledgersvc_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/ledger/boltstore"
	"github.com/p2pjobs/p2pnode/node/ledgersvc"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// net is authorities on real libp2p hosts on loopback with real bbolt
// stores, trusting each other.
type net struct {
	t      *testing.T
	hosts  []host.Host
	keys   []crypto.PrivKey
	svcs   []*ledgersvc.Service
	stores []ledger.Store
	paths  []string
	trust  ledger.TrustSet
}

func newNet(t *testing.T, n int, grant uint64) *net {
	t.Helper()
	nt := &net{t: t, trust: ledger.NewTrustSet()}
	for range n {
		h, k := newHost(t)
		nt.hosts, nt.keys = append(nt.hosts, h), append(nt.keys, k)
		nt.trust[h.ID()] = struct{}{}
	}
	for i, h := range nt.hosts {
		for _, o := range nt.hosts {
			if o != h {
				h.Peerstore().AddAddrs(o.ID(), o.Addrs(), time.Hour)
			}
		}
		path := t.TempDir() + "/ledger.db"
		st, err := boltstore.Open(path, nt.trust)
		if err != nil {
			t.Fatal(err)
		}
		svc, err := ledgersvc.New(h, st, ledger.NotaryConfig{Key: nt.keys[i], Trust: nt.trust, Grant: ledger.GrantPolicy{Amount: grant},
			MinLockLifetime: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close(); st.Close() })
		nt.svcs, nt.stores, nt.paths = append(nt.svcs, svc), append(nt.stores, st), append(nt.paths, path)
	}
	return nt
}

// account opens an account homed at authority i, trusting all.
func (nt *net) account(i int) (host.Host, crypto.PrivKey, *ledgersvc.Account) {
	nt.t.Helper()
	h, key := newHost(nt.t)
	for _, a := range nt.hosts {
		h.Peerstore().AddAddrs(a.ID(), a.Addrs(), time.Hour)
	}
	acct, err := ledgersvc.OpenAccount(h, key, ledger.NewMemStore(nt.trust), nt.trust, nt.hosts[i].ID())
	if err != nil {
		nt.t.Fatal(err)
	}
	nt.t.Cleanup(func() { acct.Close() })
	if err := acct.Ready(context.Background()); err != nil {
		nt.t.Fatal(err)
	}
	return h, key, acct
}

// audit checks every authority's store alone and all of them together
// (for an account two hold, the longer chain) and returns the balances.
func (nt *net) audit() map[peer.ID]uint64 {
	nt.t.Helper()
	all := map[peer.ID][]*pb.Block{}
	for _, st := range nt.stores {
		ids, err := st.Accounts()
		if err != nil {
			nt.t.Fatal(err)
		}
		for _, id := range ids {
			c, err := st.Chain(id, 0, 0)
			if err != nil {
				nt.t.Fatal(err)
			}
			if _, err := ledger.VerifyChain(c, nt.trust); err != nil {
				nt.t.Fatalf("stored chain fails: %v", err)
			}
			if len(c) > len(all[id]) {
				all[id] = c
			}
		}
	}
	rep, err := ledger.Audit(all, nt.trust)
	if err != nil {
		nt.t.Fatalf("audit: %v", err)
	}
	bal := map[peer.ID]uint64{}
	for id, s := range rep.Summaries {
		bal[id] = s.Balance
	}
	return bal
}

func (nt *net) noRise(before map[peer.ID]uint64) {
	nt.t.Helper()
	for id, b := range nt.audit() {
		if !nt.trust.Has(id) && b > before[id] {
			nt.t.Fatalf("balance of %s rose from %d to %d", id, before[id], b)
		}
	}
}

func wantCode(t *testing.T, err error, code pb.ErrorCode) {
	t.Helper()
	if !errors.Is(err, protocols.Code(code)) {
		t.Fatalf("got %v, want %v", err, code)
	}
}

// TestAdversaryService: the attacks that cross the network, against
// authorities on real libp2p hosts and bbolt stores. Each is refused with
// a typed error; no request ever makes the service fail a commit and
// rebuild (an INTERNAL reply); every store passes the audit and no
// account gains points.
func TestAdversaryService(t *testing.T) {
	ctx := context.Background()

	t.Run("reregister_chain_after_refund", func(t *testing.T) {
		nt := newNet(t, 1, 100)
		ch, _, cl := nt.account(0)
		_, wkKey, wk := nt.account(0)
		auth := nt.hosts[0].ID()
		esc := ledger.EscrowID([]byte("bid"))
		if err := cl.Lock(ctx, wk.ID(), []byte("bid"), 30, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		// Refunded with the worker's consent, and claimed.
		consent, _ := wkKey.Sign(ledger.RefundConsentBytes(cl.ID(), esc, 30))
		refund := &pb.LedgerRequest{Req: &pb.LedgerRequest_Refund{Refund: &pb.RefundRequest{Client: []byte(cl.ID()), Escrow: esc, WorkerConsent: consent, Amount: 30}}}
		resp, err := ledgersvc.Call(ctx, ch, auth, refund)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Claim(ctx, resp.Blocks[0]); err != nil {
			t.Fatal(err)
		}
		before := nt.audit()
		for range 3 {
			_, err := ledgersvc.Call(ctx, ch, auth, &pb.LedgerRequest{Req: &pb.LedgerRequest_Register{Register: &pb.RegisterAccountRequest{Chain: cl.Chain()}}})
			wantCode(t, err, pb.ErrorCode_LEDGER_UNTRUSTED) // not an arrival by hand-over
			if _, err := ledgersvc.Call(ctx, ch, auth, refund); err == nil || errors.Is(err, protocols.Code(pb.ErrorCode_INTERNAL)) {
				t.Fatalf("second refund: %v", err)
			}
		}
		e, err := ledgersvc.Call(ctx, ch, auth, &pb.LedgerRequest{Req: &pb.LedgerRequest_GetEscrow{GetEscrow: &pb.GetEscrowRequest{Client: []byte(cl.ID()), Escrow: esc}}})
		if err != nil || e.Escrow.GetRemaining() != 0 {
			t.Fatalf("escrow after re-registration: %v %v", e.GetEscrow(), err)
		}
		nt.noRise(before)
	})

	t.Run("replay_countersigned_block", func(t *testing.T) {
		nt := newNet(t, 1, 100)
		ch, _, cl := nt.account(0)
		sh, _, _ := nt.account(0) // a stranger with an account of its own
		_, _, wk := nt.account(0)
		auth := nt.hosts[0].ID()
		out, err := cl.Transfer(ctx, wk.ID(), 10, "x")
		if err != nil {
			t.Fatal(err)
		}
		bare := ledger.Clone(out)
		bare.Notary, bare.NotarySig = nil, nil
		before := nt.audit()
		// The owner's retry: its original answer.
		resp, err := ledgersvc.Call(ctx, ch, auth, &pb.LedgerRequest{Req: &pb.LedgerRequest_Countersign{Countersign: &pb.CountersignRequest{Block: bare}}})
		if err != nil || len(resp.Blocks) != 1 || ledger.HashRef(resp.Blocks[0]) != ledger.HashRef(out) {
			t.Fatalf("owner's retry: %v", err)
		}
		// A stranger's replay, of the bare and of the countersigned block.
		for _, b := range []*pb.Block{bare, out} {
			_, err = ledgersvc.Call(ctx, sh, auth, &pb.LedgerRequest{Req: &pb.LedgerRequest_Countersign{Countersign: &pb.CountersignRequest{Block: b}}})
			wantCode(t, err, pb.ErrorCode_UNAUTHORIZED)
		}
		// The genesis replayed by its owner: its original answer, no rebuild.
		g := cl.Chain()[0]
		g.Notary, g.NotarySig = nil, nil
		if _, err := ledgersvc.Call(ctx, ch, auth, &pb.LedgerRequest{Req: &pb.LedgerRequest_Register{Register: &pb.RegisterAccountRequest{Chain: []*pb.Block{g}}}}); err != nil &&
			errors.Is(err, protocols.Code(pb.ErrorCode_INTERNAL)) {
			t.Fatalf("replayed genesis: %v", err)
		}
		// The service still works: the next transfer goes through.
		if _, err := cl.Transfer(ctx, wk.ID(), 5, "y"); err != nil {
			t.Fatalf("after the replays: %v", err)
		}
		before[cl.ID()] = 100 // the second honest transfer lowered it
		nt.noRise(before)
	})

	t.Run("short_lived_lock", func(t *testing.T) {
		nt := newNet(t, 1, 100)
		_, _, cl := nt.account(0)
		_, _, wk := nt.account(0)
		before := nt.audit()
		err := cl.Lock(ctx, wk.ID(), []byte("bid"), 30, time.Now().Add(time.Millisecond))
		wantCode(t, err, pb.ErrorCode_BAD_REQUEST)
		if !strings.Contains(err.Error(), "too soon") {
			t.Fatalf("refusal does not say why: %v", err)
		}
		nt.noRise(before)
	})

	t.Run("work_without_escrow", func(t *testing.T) {
		nt := newNet(t, 1, 100)
		_, _, cl := nt.account(0)
		_, _, wk := nt.account(0)
		_, _, other := nt.account(0)
		soon := time.Now().Add(2 * time.Minute)
		// No lock at all.
		if _, _, err := wk.CheckEscrow(ctx, cl.ID(), []byte("none"), 10, soon); err == nil {
			t.Fatal("no lock accepted")
		}
		// A lock for another worker, one too small, one expiring too soon.
		if err := cl.Lock(ctx, other.ID(), []byte("b-other"), 30, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := wk.CheckEscrow(ctx, cl.ID(), []byte("b-other"), 10, soon); !errors.Is(err, ledger.ErrEscrowMismatch) {
			t.Fatalf("lock for another worker: %v", err)
		}
		if err := cl.Lock(ctx, wk.ID(), []byte("b-small"), 10, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := wk.CheckEscrow(ctx, cl.ID(), []byte("b-small"), 20, soon); !errors.Is(err, ledger.ErrOverdraft) {
			t.Fatalf("lock too small: %v", err)
		}
		if _, _, err := wk.CheckEscrow(ctx, cl.ID(), []byte("b-small"), 10, time.Now().Add(2*time.Hour)); !errors.Is(err, ledger.ErrEscrowExpired) {
			t.Fatalf("lock expiring before the horizon: %v", err)
		}
		if amt, _, err := wk.CheckEscrow(ctx, cl.ID(), []byte("b-small"), 10, soon); err != nil || amt != 10 {
			t.Fatalf("a good lock: %d %v", amt, err)
		}
		nt.audit()
	})

	t.Run("genesis_at_second_home", func(t *testing.T) {
		// The same identity opens an account at A, then asks B for
		// another, as running the binary twice with another ledger.home
		// does: B refuses (typed). Had B missed it (A down), each payment
		// would still be credited once: TestAdversaryLedger covers that.
		nt := newNet(t, 2, 100)
		_, _, payer := nt.account(0)
		xh, xk, xa := nt.account(0)
		xb, err := ledgersvc.OpenAccount(xh, xk, ledger.NewMemStore(nt.trust), nt.trust, nt.hosts[1].ID())
		if err != nil {
			t.Fatal(err)
		}
		defer xb.Close()
		before := nt.audit()
		err = xb.Ready(ctx)
		wantCode(t, err, pb.ErrorCode_LEDGER_ACCOUNT_REFUSED)
		if !strings.Contains(err.Error(), "homed at") {
			t.Fatalf("refusal does not say why: %v", err)
		}
		if _, err := nt.stores[1].State(xa.ID()); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("B stored the second genesis: %v", err)
		}
		nt.noRise(before)
		// A payment to the account is credited at A, once.
		out, err := payer.Transfer(ctx, xa.ID(), 40, "pay")
		if err != nil {
			t.Fatal(err)
		}
		if err := xa.Claim(ctx, out); err != nil {
			t.Fatal(err)
		}
		if xa.State().Balance != 140 {
			t.Fatalf("balance %d", xa.State().Balance)
		}
		nt.audit()
	})

	t.Run("fail_closed_on_bad_store", func(t *testing.T) {
		// A store holding a chain countersigned by an authority the
		// notary no longer trusts: the service refuses to start and
		// names the account and block.
		nt := newNet(t, 2, 0)
		_, _, x := nt.account(1)
		// Copy x's chain (homed at B) into A's store, then restart A
		// trusting only itself.
		if err := nt.stores[0].AppendBatch(x.Chain()); err != nil {
			t.Fatal(err)
		}
		if err := nt.svcs[0].Close(); err != nil {
			t.Fatal(err)
		}
		nt.stores[0].Close()
		st, err := boltstore.Open(nt.paths[0], ledger.NewTrustSet(nt.hosts[0].ID()))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		h2, _ := newHost(t)
		_, err = ledgersvc.New(h2, st, ledger.NotaryConfig{Key: nt.keys[0]})
		var be *ledger.BlockError
		if err == nil || !errors.As(err, &be) || be.Account != x.ID() || be.Seq != 0 || !strings.Contains(err.Error(), x.ID().String()) {
			t.Fatalf("start on a store that fails the audit: %v", err)
		}
	})
}
