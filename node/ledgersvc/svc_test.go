package ledgersvc_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"google.golang.org/protobuf/proto"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/ledger/boltstore"
	"github.com/p2pjobs/p2pnode/node/ledgersvc"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

func newHost(t testing.TB) (host.Host, crypto.PrivKey) {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, key
}

// authority starts a ledger service on a real host with a bbolt store.
func authority(t testing.TB, grant uint64) (host.Host, *ledgersvc.Service) {
	t.Helper()
	h, key := newHost(t)
	st, err := boltstore.Open(t.TempDir()+"/ledger.db", ledger.NewTrustSet(h.ID()))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ledgersvc.New(h, st, ledger.NotaryConfig{Key: key, Grant: ledger.GrantPolicy{Amount: grant}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(); st.Close() })
	return h, svc
}

func account(t testing.TB, auth host.Host) (host.Host, *ledgersvc.Account) {
	t.Helper()
	h, key := newHost(t)
	h.Peerstore().AddAddrs(auth.ID(), auth.Addrs(), time.Hour)
	trust := ledger.NewTrustSet(auth.ID())
	a, err := ledgersvc.OpenAccount(h, key, ledger.NewMemStore(trust), trust, auth.ID())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if err := a.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h, a
}

// FuzzServiceRequest feeds hostile frames to the service's decode path and
// handler: a typed error, never a panic, and a rejected request changes
// no account.
func FuzzServiceRequest(f *testing.F) {
	ah, svc := authority(f, 100)
	_, acct := account(f, ah)
	good := &pb.LedgerRequest{Req: &pb.LedgerRequest_GetHead{GetHead: &pb.GetHeadRequest{Account: []byte(acct.ID())}}}
	for _, m := range []proto.Message{good,
		&pb.LedgerRequest{Req: &pb.LedgerRequest_Countersign{Countersign: &pb.CountersignRequest{Block: acct.Chain()[0]}}},
		&pb.LedgerRequest{Req: &pb.LedgerRequest_Mint{Mint: &pb.MintRequest{To: []byte(acct.ID()), Amount: 5}}},
		&pb.LedgerRequest{Req: &pb.LedgerRequest_Settle{Settle: &pb.SettleRequest{Claims: []*pb.ReceiptClaim{{}}}}}} {
		raw, _ := proto.Marshal(m)
		f.Add(binary.AppendUvarint(nil, uint64(len(raw))), raw)
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x7f}, []byte{})
	before := acct.State()
	f.Fuzz(func(t *testing.T, prefix, body []byte) {
		req, err := ledgersvc.ReadRequest(bufio.NewReader(bytes.NewReader(append(prefix, body...))), nil)
		if err != nil {
			return
		}
		resp := svc.Do(context.Background(), req, acct.ID())
		if resp.Error != nil && resp.Error.Code == pb.ErrorCode_ERROR_UNSPECIFIED {
			t.Fatalf("untyped error %v", resp.Error)
		}
		head := svc.Do(context.Background(), good, acct.ID()).GetHead()
		if head.GetSeq() != before.Seq {
			t.Fatalf("hostile request moved the account: %v", head)
		}
	})
}

// BenchmarkNotarisedTransfers: accounts on their own hosts pay each other
// through one authority over the real protocol on loopback; each transfer
// is a TRANSFER_OUT countersigned (and committed) by the authority.
func BenchmarkNotarisedTransfers(b *testing.B) {
	ah, _ := authority(b, 1<<40)
	const n = 16
	accts := make([]*ledgersvc.Account, n)
	for i := range accts {
		_, accts[i] = account(b, ah)
	}
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range accts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := accts[i].Transfer(context.Background(), accts[(i+1)%n].ID(), 1, "bench"); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "transfers/s")
}

// TestServiceSettleAfterDisputeWindow: a receipt the client never
// acknowledges is paid from escrow once the dispute window has passed; an
// expired award's rest is refunded to the client.
func TestServiceSettleAfterDisputeWindow(t *testing.T) {
	ah, akey := newHost(t)
	st, _ := boltstore.Open(t.TempDir()+"/l.db", ledger.NewTrustSet(ah.ID()))
	svc, err := ledgersvc.New(ah, st, ledger.NotaryConfig{Key: akey, DisputeWindow: 300 * time.Millisecond, MinLockLifetime: 500 * time.Millisecond, Grant: ledger.GrantPolicy{Amount: 100}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { svc.Close(); st.Close() }()
	_, cl := account(t, ah)
	wh, wkey := newHost(t)
	wh.Peerstore().AddAddrs(ah.ID(), ah.Addrs(), time.Hour)
	trust := ledger.NewTrustSet(ah.ID())
	wk, err := ledgersvc.OpenAccount(wh, wkey, ledger.NewMemStore(trust), trust, ah.ID(),
		ledgersvc.WithSettlement(50*time.Millisecond, 64, 100*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer wk.Close()
	ctx := context.Background()
	if err := wk.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	bid := []byte("bid-x")
	if err := cl.Lock(ctx, wk.ID(), bid, 30, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // two jobs of 10, never acknowledged
		sr, _ := ledger.SignReceipt(&pb.Receipt{SeriesId: "s", JobId: fmt.Sprint(i), Worker: []byte(wk.ID()), Client: []byte(cl.ID()), BidId: bid, Price: 10}, wkey)
		wk.Receipt(cl.ID(), sr)
	}
	wk.FlushClient(cl.ID())
	deadline := time.Now().Add(10 * time.Second)
	for wk.State().Balance != 120 {
		if time.Now().After(deadline) {
			t.Fatalf("worker balance %d: unacknowledged receipts not paid after the window", wk.State().Balance)
		}
		time.Sleep(50 * time.Millisecond)
	}
	refundBy := time.Now().Add(5 * time.Second)
	for time.Now().Before(refundBy) && cl.State().Balance != 80 {
		if got, err := cl.RefundExpired(ctx); err != nil {
			t.Fatal(err)
		} else if got > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if b := cl.State().Balance; b != 80 {
		t.Fatalf("client balance %d after refund, want 80 (100 - 2 jobs of 10)", b)
	}
}
