package nodetest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/node/ledgersvc"
	"github.com/p2pjobs/p2pnode/node/nodetest"
	"github.com/p2pjobs/p2pnode/node/schedule"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

// ledgerSeries is n jobs of the trivial module (the content does not
// matter here; it is compiled once for all test nodes).
func ledgerSeries(id string, n int) *client.Series {
	s := &client.Series{ID: id, Executor: "wasm", Module: wasm.Trivial, Strategy: schedule.Balanced, Retries: 1,
		Resources: &pb.Resources{MemoryBytes: 16 << 20, TimeoutMs: 10000}}
	for i := range n {
		s.Jobs = append(s.Jobs, client.Job{ID: fmt.Sprintf("job-%02d", i+1)})
	}
	return s
}

func newKey(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return k, id
}

// TestLedgerTwoAuthorities: authorities A and B trust each other; the
// client's account is homed at A, the worker's at B (ledger.home, named in
// each genesis). A series pays the worker: the escrow is locked at A and
// released by A, and B countersigns the worker's claim of A's release; a
// direct transfer from the client to the worker is honoured the same way.
// Every chain verifies and points are conserved over all of them.
func TestLedgerTwoAuthorities(t *testing.T) {
	keyA, idA := newKey(t)
	keyB, idB := newKey(t)
	authA := ledgerAuthority(t, keyA, 1000, func(c *node.Config) { c.Authority.Trust = []string{idB.String()} })
	authB := ledgerAuthority(t, keyB, 1000, func(c *node.Config) { c.Authority.Trust = []string{idA.String()} })
	boot := []string{nodetest.Addr(authA), nodetest.Addr(authB)}
	w := nodetest.StartWith(t, func(c *node.Config) {
		c.Roles, c.Bootstrap, c.Worker.PricePerJob = []string{node.RoleWorker}, boot, 2
		c.Ledger.Home = idB.String()
	}, withLedger(t), fastSettle)
	cl := nodetest.StartWith(t, func(c *node.Config) {
		c.Roles, c.Bootstrap = []string{node.RoleClient}, boot
		c.Ledger.Home = idA.String()
	}, withLedger(t), fastSettle)
	if cl.Account.Home() != idA || w.Account.Home() != idB {
		t.Fatalf("homes: client %s (want A), worker %s (want B)", cl.Account.Home(), w.Account.Home())
	}
	for _, n := range []*node.Node{cl, w} {
		if g := n.Account.Chain()[0]; peer.ID(g.Authority) != n.Account.Home() || peer.ID(g.Notary) != n.Account.Home() {
			t.Fatalf("genesis of %s names %s, countersigned by %s", n.Host.ID(), peer.ID(g.Authority), peer.ID(g.Notary))
		}
	}
	nodetest.WaitFor(t, 10*time.Second, "worker registered", func() bool { return authA.Authority.Workers() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := cl.Client.Run(ctx, ledgerSeries("two-auth", 10), client.Hooks{})
	if err != nil || rep.Failed() != 0 {
		t.Fatalf("series: %v, %d failed", err, rep.Failed())
	}
	// A transfer between the two homes: the out-block at A, the claim at B.
	out, err := cl.Account.Transfer(ctx, w.Host.ID(), 7, "tip")
	if err != nil {
		t.Fatal(err)
	}
	if peer.ID(out.Notary) != idA {
		t.Fatalf("transfer countersigned by %s, want the client's home A", peer.ID(out.Notary))
	}
	if err := w.Account.Claim(ctx, out); err != nil {
		t.Fatalf("B refused the claim of A's transfer: %v", err)
	}
	audit := waitSettled(t, cl, []*node.Node{authA, authB}, []*node.Node{cl, w})
	if !audit.Conserved() || audit.Minted != 2000 { // each home grants its own account
		t.Fatalf("audit %+v", audit)
	}
	if got := audit.Summaries[w.Host.ID()].Balance; got != 1000+20+7 {
		t.Errorf("worker balance %d, want 1000 + 10 jobs x 2 + 7", got)
	}
	if got := audit.Summaries[cl.Host.ID()].Balance; got != 1000-20-7 {
		t.Errorf("client balance %d, want 1000 - 20 - 7", got)
	}
	// The worker's claims are countersigned by B and claim blocks of A.
	var fromA int
	for _, b := range w.Account.Chain() {
		if b.Kind == pb.BlockKind_BLOCK_TRANSFER_IN && peer.ID(b.Counterparty) != idB {
			if peer.ID(b.Notary) != idB {
				t.Errorf("worker claim #%d countersigned by %s, want its home B", b.Seq, peer.ID(b.Notary))
			}
			fromA++
		}
	}
	if fromA < 2 {
		t.Errorf("%d claims of points paid by A's accounts, want the release and the transfer", fromA)
	}
	t.Logf("two homes: %d blocks over %d chains, minted %d, conserved", audit.Blocks, audit.Accounts, audit.Minted)
}

// TestLedgerRefundsFailedJobs: a client locks a worker's award for every
// job; jobs that fail (time out, no receipt) are not paid, and once the
// escrow expires the client's account takes the rest back on its own
// schedule: the client ends up paying for the delivered jobs only.
func TestLedgerRefundsFailedJobs(t *testing.T) {
	auth := ledgerAuthority(t, nil, 100, nil)
	a := []string{nodetest.Addr(auth)}
	w := ledgerNode(t, []string{node.RoleWorker}, a, 3)
	cl := nodetest.StartWith(t, func(c *node.Config) {
		c.Roles, c.Bootstrap = []string{node.RoleClient}, a
	}, withLedger(t), fastSettle, node.WithLedgerAccountOptions(ledgersvc.WithRefundEvery(100*time.Millisecond)),
		node.WithClientOptions(client.WithEscrowTTL(8*time.Second))) // outlives a loaded machine's dispatch and the worker's 1s horizon
	nodetest.WaitFor(t, 10*time.Second, "registration", func() bool { return auth.Authority.Workers() == 1 })

	s := &client.Series{ID: "refund", Executor: "wasm", Module: wasm.Pi, Strategy: schedule.Balanced, Retries: 0,
		Resources: &pb.Resources{MemoryBytes: 64 << 20, TimeoutMs: 500}}
	for i, args := range [][]string{{"-samples", "100", "-out", ""}, {"-loop"}, {"-samples", "100", "-out", ""}, {"-loop"}} {
		s.Jobs = append(s.Jobs, client.Job{ID: fmt.Sprintf("job-%d", i), Args: args})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := cl.Client.Run(ctx, s, client.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() != 2 {
		for _, o := range rep.Outcomes {
			t.Logf("%s: %v", o.ID, o.Err)
		}
		t.Fatalf("%d jobs failed, want the 2 that loop past their timeout", rep.Failed())
	}
	if st := cl.Account.State(); st.Locked != 12 {
		t.Fatalf("client locked %d, want 4 jobs x 3", st.Locked)
	}
	audit := waitSettled(t, cl, []*node.Node{auth}, []*node.Node{cl, w})
	if !audit.Conserved() {
		t.Fatalf("audit %+v", audit)
	}
	if got := audit.Summaries[cl.Host.ID()].Balance; got != 100-6 {
		t.Fatalf("client balance %d, want 100 - 2 delivered jobs x 3 (the failed jobs' 6 refunded)", got)
	}
	var refunded uint64
	for _, b := range cl.Account.Chain() {
		if b.Kind == pb.BlockKind_BLOCK_TRANSFER_IN && peer.ID(b.Counterparty) == auth.Host.ID() && b.Amount != 100 {
			refunded += b.Amount
		}
	}
	if refunded != 6 {
		t.Fatalf("refund claimed %d, want 6", refunded)
	}
}

// TestLedgerForkReported: an account signs two different blocks at the
// same sequence number. The authority countersigns the first, refuses the
// second as a fork, keeps the evidence, refuses the account from then on,
// and its event log carries the fork.
func TestLedgerForkReported(t *testing.T) {
	key, id := newKey(t)
	logPath := filepath.Join(t.TempDir(), "events.jsonl")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	evlog := events.New(f, id.String(), node.RoleAuthority)
	t.Cleanup(func() { _ = evlog.Close() })
	auth := nodetest.StartKeyed(t, key, func(c *node.Config) {
		c.Roles = []string{node.RoleAuthority}
		c.Authority.Grant = node.GrantConfig{Amount: 50}
	}, withLedger(t), node.WithEvents(evlog))
	cl := ledgerNode(t, []string{node.RoleClient}, []string{nodetest.Addr(auth)}, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cl.Account.Balance(ctx); err != nil {
		t.Fatal(err)
	}
	// A second wallet on the same key and chain: a double spend attempt.
	wal, err := ledger.NewWallet(cl.Key, cl.LedgerTrust(), cl.Account.Chain())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	first, _ := wal.Transfer(auth.Host.ID(), 30, "one", now)
	second, _ := wal.Transfer(auth.Host.ID(), 40, "two", now) // same seq, other block
	send := func(b *pb.Block) error {
		_, err := ledgersvc.Call(ctx, cl.Host, auth.Host.ID(), &pb.LedgerRequest{Req: &pb.LedgerRequest_Countersign{Countersign: &pb.CountersignRequest{Block: b}}})
		return err
	}
	if err := send(first); err != nil {
		t.Fatal(err)
	}
	if err := send(second); !errors.Is(err, protocols.Code(pb.ErrorCode_LEDGER_FORK)) {
		t.Fatalf("second block at seq %d: %v, want a fork", second.Seq, err)
	}
	if err := send(first); !errors.Is(err, protocols.Code(pb.ErrorCode_LEDGER_ACCOUNT_REFUSED)) {
		t.Fatalf("after the fork: %v, want the account refused", err)
	}
	if ev, err := auth.Ledger.Store().Evidence(); err != nil || len(ev) != 1 || ev[0].GetSecond().GetSeq() != second.Seq {
		t.Fatalf("evidence stored: %v, %v", ev, err)
	}
	nodetest.WaitFor(t, 5*time.Second, "the fork in the event log", func() bool {
		evlog.Flush()
		r, err := os.Open(logPath)
		if err != nil {
			return false
		}
		defer r.Close()
		for sc := bufio.NewScanner(r); sc.Scan(); {
			var e events.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Kind == events.Error && e.Attrs["fork"] == true &&
				e.Attrs["account"] == cl.Host.ID().String() && e.Attrs["seq"] == float64(second.Seq) && e.Peer == cl.Host.ID().String() {
				return true
			}
		}
		return false
	})
}

// TestSeriesReclaimsExpiredEscrow: a client whose node does not run long
// enough for its refund loop (a plain `submit`, or a run that crashed)
// takes back the unpaid rest of its expired escrows when it starts its
// next series.
func TestSeriesReclaimsExpiredEscrow(t *testing.T) {
	auth := ledgerAuthority(t, nil, 100, nil)
	a := []string{nodetest.Addr(auth)}
	ledgerNode(t, []string{node.RoleWorker}, a, 3)
	cl := nodetest.StartWith(t, func(c *node.Config) {
		c.Roles, c.Bootstrap = []string{node.RoleClient}, a
	}, withLedger(t), fastSettle, node.WithLedgerAccountOptions(ledgersvc.WithRefundEvery(time.Hour)),
		// 2 s: the escrow must outlive the worker's settlement horizon (1 s
		// in these tests) or the worker declines to work against it.
		node.WithClientOptions(client.WithEscrowTTL(2*time.Second)))
	nodetest.WaitFor(t, 10*time.Second, "registration", func() bool { return auth.Authority.Workers() == 1 })
	series := func(id string, args ...[]string) {
		t.Helper()
		s := &client.Series{ID: id, Executor: "wasm", Module: wasm.Pi, Strategy: schedule.Balanced,
			Resources: &pb.Resources{MemoryBytes: 64 << 20, TimeoutMs: 500}}
		for i, a := range args {
			s.Jobs = append(s.Jobs, client.Job{ID: fmt.Sprintf("job-%d", i), Args: a})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := cl.Client.Run(ctx, s, client.Hooks{}); err != nil {
			t.Fatal(err)
		}
	}
	ok := []string{"-samples", "100", "-out", ""}
	series("first", ok, []string{"-loop"}) // the looping job is not paid: its 3 points stay in escrow
	refunds := func() (n uint64) {
		for _, b := range cl.Account.Chain() {
			if b.Kind == pb.BlockKind_BLOCK_TRANSFER_IN && peer.ID(b.Counterparty) == auth.Host.ID() && b.Amount != 100 {
				n += b.Amount
			}
		}
		return n
	}
	if got := refunds(); got != 0 {
		t.Fatalf("refunded %d before expiry", got)
	}
	expired := time.Now().Add(2*time.Second + 100*time.Millisecond) // the escrow was locked before: TTL 2 s
	nodetest.WaitFor(t, 10*time.Second, "the escrow's expiry", func() bool { return time.Now().After(expired) })
	series("second", ok)
	if got := refunds(); got != 3 {
		t.Fatalf("refunded %d at the next series' start, want the 3 points of the unpaid job", got)
	}
}
