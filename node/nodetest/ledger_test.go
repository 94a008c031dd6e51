package nodetest_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/ledgersvc"
	"github.com/p2pjobs/p2pnode/node/nodetest"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// fastSettle makes workers present receipts within a fraction of a second.
var fastSettle = node.WithLedgerAccountOptions(ledgersvc.WithSettlement(100*time.Millisecond, 64, 300*time.Millisecond, 200*time.Millisecond))

func withLedger(t testing.TB) node.Option {
	return node.WithLedger(filepath.Join(t.TempDir(), "ledger.db"))
}

// ledgerAuthority starts an authority with a ledger granting grant points
// to each new account.
func ledgerAuthority(t testing.TB, key crypto.PrivKey, grant uint64, edit func(*node.Config)) *node.Node {
	t.Helper()
	if key == nil {
		key, _, _ = crypto.GenerateEd25519Key(nil)
	}
	return nodetest.StartKeyed(t, key, func(c *node.Config) {
		c.Roles = []string{node.RoleAuthority}
		c.Authority.Grant = node.GrantConfig{Amount: grant}
		c.Authority.DisputeWindow = time.Second
		c.Authority.MinLockLifetime = 500 * time.Millisecond // tests refund after a second
		if edit != nil {
			edit(c)
		}
	}, withLedger(t))
}

func ledgerNode(t testing.TB, roles []string, auths []string, price uint64) *node.Node {
	t.Helper()
	return nodetest.StartWith(t, func(c *node.Config) {
		c.Roles, c.Bootstrap, c.Worker.PricePerJob = roles, auths, price
		c.Worker.SettleHorizon = time.Second // tests lock for a few seconds
	}, withLedger(t), fastSettle)
}

// auditAll fetches every chain from the authorities that hold them and
// audits them together: every signature, link and countersignature, and
// minted == balances + open escrow + in flight.
func auditAll(t testing.TB, via *node.Node, auths []*node.Node, accounts []*node.Node) (ledger.AuditReport, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	chains := map[peer.ID][]*pb.Block{}
	trust := ledger.NewTrustSet()
	for _, a := range auths {
		trust[a.Host.ID()] = struct{}{}
		c, err := ledgersvc.FetchChain(ctx, via.Host, a.Host.ID(), a.Host.ID(), 0)
		if err != nil {
			t.Fatalf("chain of authority: %v", err)
		}
		chains[a.Host.ID()] = c
	}
	for _, n := range accounts {
		c, err := ledgersvc.FetchChain(ctx, via.Host, n.Account.Home(), n.Host.ID(), 0)
		if err != nil {
			t.Fatalf("chain of %s: %v", n.Host.ID(), err)
		}
		chains[n.Host.ID()] = c
	}
	return ledger.Audit(chains, trust)
}

// waitSettled waits until no points are in escrow or in flight.
func waitSettled(t testing.TB, via *node.Node, auths, accounts []*node.Node) ledger.AuditReport {
	t.Helper()
	var rep ledger.AuditReport
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for {
		// The chains are fetched one by one while payments may still
		// move: a snapshot can hold a claim whose source it fetched too
		// early. Such an audit error is retried; a lasting one fails.
		rep, err = auditAll(t, via, auths, accounts)
		if err == nil && rep.Escrow == 0 && rep.InFlight == 0 {
			return rep
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled after 20s: audit %+v, %v", rep, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// quickSeries is piSeries with few samples (fast under -race).
func quickSeries(n int) *client.Series {
	s := piSeries(n)
	for i := range s.Jobs {
		s.Jobs[i].Args[3] = "2000"
	}
	return s
}

// TestLedgerPaysWorkersAtTheirBid: a series pays each worker its bid price
// per delivered job, through escrow locked at award and released on the
// client's acknowledgement; all chains verify and points are conserved.
func TestLedgerPaysWorkersAtTheirBid(t *testing.T) {
	auth := ledgerAuthority(t, nil, 1000, nil)
	a := []string{nodetest.Addr(auth)}
	w1 := ledgerNode(t, []string{node.RoleWorker}, a, 2)
	w2 := ledgerNode(t, []string{node.RoleWorker}, a, 3)
	cl := ledgerNode(t, []string{node.RoleClient}, a, 0)
	nodetest.WaitFor(t, 10*time.Second, "2 registrations", func() bool { return auth.Authority.Workers() == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := cl.Client.Run(ctx, quickSeries(12), client.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() != 0 {
		t.Fatalf("%d jobs failed", rep.Failed())
	}
	owed := map[peer.ID]uint64{}
	var spent uint64
	for _, o := range rep.Outcomes {
		owed[o.Worker] += o.Price
		spent += o.Price
	}
	for _, off := range rep.Offers {
		want := map[peer.ID]uint64{w1.Host.ID(): 2, w2.Host.ID(): 3}[off.Worker]
		if off.Bid.PricePerJob != want {
			t.Fatalf("bid price %d, worker asks %d", off.Bid.PricePerJob, want)
		}
	}
	accts := []*node.Node{w1, w2, cl}
	audit := waitSettled(t, cl, []*node.Node{auth}, accts)
	if !audit.Conserved() || audit.Minted != 3000 {
		t.Fatalf("audit %+v", audit)
	}
	for _, w := range []*node.Node{w1, w2} {
		s := audit.Summaries[w.Host.ID()]
		if s.Balance != 1000+owed[w.Host.ID()] {
			t.Errorf("worker %s: balance %d, want 1000 + %d earned at its bid price", w.Host.ID(), s.Balance, owed[w.Host.ID()])
		}
	}
	if s := audit.Summaries[cl.Host.ID()]; s.Balance != 1000-spent {
		t.Errorf("client balance %d, want 1000 - %d", s.Balance, spent)
	}
	t.Logf("minted %d, client spent %d, workers earned %v, %d blocks", audit.Minted, spent, owed, audit.Blocks)
}

// TestLedgerInsufficientFunds: a client that cannot pay gets a clear error
// and no job reaches a worker.
func TestLedgerInsufficientFunds(t *testing.T) {
	auth := ledgerAuthority(t, nil, 5, nil)
	a := []string{nodetest.Addr(auth)}
	w := ledgerNode(t, []string{node.RoleWorker}, a, 1)
	cl := ledgerNode(t, []string{node.RoleClient}, a, 0)
	nodetest.WaitFor(t, 10*time.Second, "registration", func() bool { return auth.Authority.Workers() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := cl.Client.Run(ctx, quickSeries(12), client.Hooks{})
	var fe *client.FundsError
	if !errors.As(err, &fe) || fe.Need != 12 || fe.Have != 5 || !strings.Contains(err.Error(), "need 12 points, have 5") {
		t.Fatalf("want a FundsError need 12 have 5, got %v", err)
	}
	if rep != nil && len(rep.Outcomes) != 0 {
		t.Fatalf("%d outcomes: jobs were dispatched", len(rep.Outcomes))
	}
	if st := w.Account.State(); st.Balance != 5 {
		t.Fatalf("worker balance %d: it was paid for nothing?", st.Balance)
	}
	if st := cl.Account.State(); st.Balance != 5 || st.Locked != 0 {
		t.Fatalf("client state %+v: escrow locked", st)
	}
}

// TestLedgerConservationConcurrent: several clients and workers at once,
// then an audit of every chain.
func TestLedgerConservationConcurrent(t *testing.T) {
	auth := ledgerAuthority(t, nil, 500, nil)
	a := []string{nodetest.Addr(auth)}
	var accts []*node.Node
	// Two of each: under -race every first job stream compiles the module
	// (tens of seconds each), which dominates the run.
	for i := range 2 {
		accts = append(accts, ledgerNode(t, []string{node.RoleWorker}, a, uint64(1+i)))
	}
	var clients []*node.Node
	for range 2 {
		c := ledgerNode(t, []string{node.RoleClient}, a, 0)
		clients = append(clients, c)
		accts = append(accts, c)
	}
	nodetest.WaitFor(t, 10*time.Second, "2 registrations", func() bool { return auth.Authority.Workers() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := quickSeries(8)
			s.ID = fmt.Sprintf("conc-%d", i)
			rep, err := c.Client.Run(ctx, s, client.Hooks{})
			if err == nil && rep.Failed() > 0 {
				err = fmt.Errorf("%d jobs failed", rep.Failed())
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	rep := waitSettled(t, clients[0], []*node.Node{auth}, accts)
	if !rep.Conserved() || rep.Minted != 500*uint64(len(accts)) {
		t.Fatalf("not conserved: %+v", rep)
	}
	t.Logf("%d accounts, %d blocks, minted %d, balances %d", rep.Accounts, rep.Blocks, rep.Minted, rep.Balances)
}

// TestLedgerUntrustedNotary: blocks signed by an authority the node does
// not trust (not in its --bootstrap) are refused: points it mints cannot
// be claimed, and it cannot open the node's account.
func TestLedgerUntrustedNotary(t *testing.T) {
	auth := ledgerAuthority(t, nil, 10, nil)
	rogue := ledgerAuthority(t, nil, 10, nil)
	cl := ledgerNode(t, []string{node.RoleClient}, []string{nodetest.Addr(auth)}, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.Account.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	resp := rogue.Ledger.Do(ctx, &pb.LedgerRequest{Req: &pb.LedgerRequest_Mint{Mint: &pb.MintRequest{To: []byte(cl.Host.ID()), Amount: 1000}}}, rogue.Host.ID())
	if resp.Error != nil {
		t.Fatal(resp.Error)
	}
	src := resp.Blocks[len(resp.Blocks)-1]
	err := cl.Account.Claim(ctx, src)
	if !errors.Is(err, protocols.Code(pb.ErrorCode_LEDGER_UNTRUSTED)) {
		t.Fatalf("claim of a rogue mint: %v", err)
	}
	if b, _ := cl.Account.Balance(ctx); b != 10 {
		t.Fatalf("balance %d after a rogue mint", b)
	}
	// An account homed at the rogue: its countersigned genesis is refused.
	other := nodetest.Start(t, []string{node.RoleClient}, []string{nodetest.Addr(auth)})
	other.Host.Peerstore().AddAddrs(rogue.Host.ID(), rogue.Host.Addrs(), time.Hour)
	st := ledger.NewMemStore(other.LedgerTrust())
	acct, err := ledgersvc.OpenAccount(other.Host, other.Key, st, other.LedgerTrust(), rogue.Host.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer acct.Close()
	err = acct.Ready(ctx)
	if !errors.Is(err, ledger.ErrUntrustedNotary) {
		t.Fatalf("genesis countersigned by an untrusted authority: %v", err)
	}
	if ids, _ := st.Accounts(); len(ids) != 0 {
		t.Fatalf("untrusted block stored: %v", ids)
	}
}
