package nodetest_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/ledgersvc"
	"github.com/p2pjobs/p2pnode/node/nodetest"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// twoHomes starts authorities A and B that trust each other, a worker
// homed at B and a client homed at A (its identity and ledger file kept for
// a restart). extra edits the client's config.
func twoHomes(t *testing.T, extraAuth ...string) (authA, authB, w, cl *node.Node, start func() *node.Node) {
	t.Helper()
	keyA, idA := newKey(t)
	keyB, idB := newKey(t)
	authA = ledgerAuthority(t, keyA, 1000, func(c *node.Config) { c.Authority.Trust = []string{idB.String()} })
	authB = ledgerAuthority(t, keyB, 1000, func(c *node.Config) { c.Authority.Trust = []string{idA.String()} })
	boot := []string{nodetest.Addr(authA), nodetest.Addr(authB)}
	w = nodetest.StartWith(t, func(c *node.Config) {
		c.Roles, c.Bootstrap, c.Worker.PricePerJob = []string{node.RoleWorker}, boot, 2
		c.Ledger.Home = idB.String()
	}, withLedger(t), fastSettle)
	clKey, _ := newKey(t)
	path := filepath.Join(t.TempDir(), "ledger.db")
	start = func() *node.Node {
		return nodetest.StartKeyed(t, clKey, func(c *node.Config) {
			c.Roles, c.Bootstrap = []string{node.RoleClient}, append(boot, extraAuth...)
			c.Ledger.Home = idA.String() // stays A: the chain says where home is
		}, node.WithLedger(path), fastSettle)
	}
	cl = start()
	nodetest.WaitFor(t, 10*time.Second, "worker registered", func() bool { return authA.Authority.Workers() == 1 })
	return authA, authB, w, cl, start
}

// TestLedgerHandover: a client homed at A moves home to B. A countersigns
// the hand-over and refuses any block of the account after it; B verifies
// the chain and countersigns from the next seq on: a series (escrow locked
// at B, released to the worker, which finds the escrow's new holder) and a
// transfer. Every chain verifies and points are conserved across both
// homes. After a restart whose config still names A, the node's home is B
// (read from the chain) and B keeps countersigning.
func TestLedgerHandover(t *testing.T) {
	authA, authB, w, cl, start := twoHomes(t)
	idA, idB := authA.Host.ID(), authB.Host.ID()
	auths, accts := []*node.Node{authA, authB}, []*node.Node{cl, w}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if rep, err := cl.Client.Run(ctx, ledgerSeries("before", 4), client.Hooks{}); err != nil || rep.Failed() != 0 {
		t.Fatalf("series at A: %v", err)
	}
	waitSettled(t, cl, auths, accts) // no escrow open: the hand-over may go

	ho, err := cl.LedgerHandover(ctx, idB)
	if err != nil {
		t.Fatal(err)
	}
	if ho.Kind != pb.BlockKind_BLOCK_HANDOVER || peer.ID(ho.Notary) != idA || peer.ID(ho.Authority) != idB {
		t.Fatalf("hand-over %s countersigned by %s naming %s", ho.Kind, peer.ID(ho.Notary), peer.ID(ho.Authority))
	}
	if cl.Account.Home() != idB || cl.Account.State().Home != idB {
		t.Fatalf("home after the hand-over: %s", cl.Account.Home())
	}
	// A's responsibility ended at the hand-over's seq.
	wal, err := ledger.NewWallet(cl.Key, cl.LedgerTrust(), cl.Account.Chain())
	if err != nil {
		t.Fatal(err)
	}
	late, _ := wal.Transfer(w.Host.ID(), 1, "late", time.Now())
	_, err = ledgersvc.Call(ctx, cl.Host, idA, &pb.LedgerRequest{Req: &pb.LedgerRequest_Countersign{Countersign: &pb.CountersignRequest{Block: late}}})
	if !errors.Is(err, protocols.Code(pb.ErrorCode_LEDGER_UNTRUSTED)) {
		t.Fatalf("A countersigning after the hand-over: %v, want refused (wrong notary)", err)
	}
	if h, err := authA.Ledger.Store().State(cl.Host.ID()); err != nil || h.Seq != ho.Seq || h.Home != idB {
		t.Fatalf("A's copy of the chain: %+v, %v", h, err)
	}

	// B serves the account: a series (escrows at B) and a transfer.
	if rep, err := cl.Client.Run(ctx, ledgerSeries("after", 4), client.Hooks{}); err != nil || rep.Failed() != 0 {
		t.Fatalf("series at B: %v", err)
	}
	out, err := cl.Account.Transfer(ctx, w.Host.ID(), 7, "tip")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Account.Claim(ctx, out); err != nil {
		t.Fatal(err)
	}
	audit := waitSettled(t, cl, auths, accts)
	if !audit.Conserved() || audit.Minted != 2000 {
		t.Fatalf("audit %+v", audit)
	}
	if got := audit.Summaries[w.Host.ID()].Balance; got != 1000+8*2+7 {
		t.Errorf("worker balance %d, want 1000 + 8 jobs x 2 + 7", got)
	}
	var locksAtB int
	for _, b := range cl.Account.Chain() {
		if b.Seq > ho.Seq && peer.ID(b.Notary) != idB {
			t.Errorf("block #%d (%s) after the hand-over countersigned by %s, want B", b.Seq, b.Kind, peer.ID(b.Notary))
		}
		if b.Seq > ho.Seq && b.Kind == pb.BlockKind_BLOCK_ESCROW_LOCK {
			locksAtB++
		}
	}
	if locksAtB == 0 {
		t.Error("no escrow locked at B after the hand-over")
	}
	bChain, err := authB.Ledger.Store().Chain(cl.Host.ID(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.VerifyChain(bChain, ledger.NewTrustSet(idA, idB)); err != nil {
		t.Fatalf("B's copy of the chain: %v", err)
	}

	// Restart: the config still names A; the chain says B.
	seq := cl.Account.State().Seq
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	cl = start()
	if cl.Account.Home() != idB {
		t.Fatalf("home after a restart: %s, want B", cl.Account.Home())
	}
	if err := cl.Account.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	out, err = cl.Account.Transfer(ctx, w.Host.ID(), 3, "after restart")
	if err != nil || peer.ID(out.Notary) != idB || out.Seq != seq+1 {
		t.Fatalf("transfer after the restart: %v (countersigned by %s, seq %d after %d)", err, peer.ID(out.GetNotary()), out.GetSeq(), seq)
	}
	if err := w.Account.Claim(ctx, out); err != nil {
		t.Fatal(err)
	}
	if audit := waitSettled(t, cl, auths, []*node.Node{cl, w}); !audit.Conserved() {
		t.Fatalf("audit after the restart %+v", audit)
	}
}

// TestLedgerHandoverRefused: a hand-over is refused with a typed error and
// changes nothing while the account has escrow open, to an authority the
// node does not trust, to one the old home does not trust, and when the
// new home is shown a hand-over the old home did not countersign.
func TestLedgerHandoverRefused(t *testing.T) {
	keyC, idC := newKey(t)
	authC := ledgerAuthority(t, keyC, 0, nil) // trusted by the client, not by A
	authA, authB, w, cl, _ := twoHomes(t, nodetest.Addr(authC))
	idA, idB := authA.Host.ID(), authB.Host.ID()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cl.Account.Balance(ctx); err != nil {
		t.Fatal(err)
	}
	head := cl.Account.State()

	// An untrusted new home: refused by the node, and by the wallet.
	_, stranger := newKey(t)
	if _, err := cl.LedgerHandover(ctx, stranger); !errors.Is(err, ledger.ErrUntrustedNotary) {
		t.Fatalf("hand-over to a stranger: %v", err)
	}
	if _, err := cl.Account.Handover(ctx, stranger); !errors.Is(err, ledger.ErrUntrustedNotary) {
		t.Fatalf("account hand-over to a stranger: %v", err)
	}
	// C is trusted by the client but not by the old home A.
	if _, err := cl.LedgerHandover(ctx, idC); !errors.Is(err, ledger.ErrUntrustedNotary) || !errors.Is(err, protocols.Code(pb.ErrorCode_LEDGER_UNTRUSTED)) {
		t.Fatalf("hand-over to an authority A does not trust: %v", err)
	}

	// Escrow open: refused until it is refunded.
	if err := cl.Account.Lock(ctx, w.Host.ID(), []byte("bid-open"), 5, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := cl.LedgerHandover(ctx, idB)
	if !errors.Is(err, ledger.ErrEscrowsOpen) || !errors.Is(err, protocols.Code(pb.ErrorCode_LEDGER_ESCROWS_OPEN)) {
		t.Fatalf("hand-over with escrow open: %v", err)
	}
	if cl.Account.Home() != idA || cl.Account.State().Seq != head.Seq+1 {
		t.Fatalf("a refused hand-over changed the account: home %s seq %d", cl.Account.Home(), cl.Account.State().Seq)
	}

	// The new home is shown a hand-over the old home never countersigned.
	wal, err := ledger.NewWallet(cl.Key, cl.LedgerTrust(), cl.Account.Chain())
	if err != nil {
		t.Fatal(err)
	}
	bare, err := wal.Handover(idB, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	chain := append(cl.Account.Chain(), bare)
	_, err = ledgersvc.Call(ctx, cl.Host, idB, &pb.LedgerRequest{Req: &pb.LedgerRequest_Register{Register: &pb.RegisterAccountRequest{Chain: chain}}})
	if !errors.Is(err, protocols.Code(pb.ErrorCode_LEDGER_INVALID_BLOCK)) {
		t.Fatalf("arrival without the old home's countersignature: %v", err)
	}
	if _, err := authB.Ledger.Store().State(cl.Host.ID()); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("B stored the refused arrival: %v", err)
	}

	// Once the escrow is refunded, the hand-over goes through.
	nodetest.WaitFor(t, 10*time.Second, "escrow refunded", func() bool {
		_, _ = cl.Account.RefundExpired(ctx)
		_, err := cl.LedgerHandover(ctx, idB)
		return err == nil
	})
	if cl.Account.Home() != idB {
		t.Fatalf("home %s after the hand-over", cl.Account.Home())
	}
	if audit := waitSettled(t, cl, []*node.Node{authA, authB, authC}, []*node.Node{cl, w}); !audit.Conserved() {
		t.Fatalf("audit %+v", audit)
	}
}
