package ledgersvc_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/ledger/boltstore"
	"github.com/p2pjobs/p2pnode/node/ledgersvc"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// TestUnpaidReceiptsSurviveRestart: a worker's receipts that are not paid
// yet are saved in its bbolt store in settlement rounds (not per job);
// after a restart on the same store the worker presents them and is paid.
func TestUnpaidReceiptsSurviveRestart(t *testing.T) {
	ah, akey := newHost(t)
	ast, err := boltstore.Open(filepath.Join(t.TempDir(), "a.db"), ledger.NewTrustSet(ah.ID()))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ledgersvc.New(ah, ast, ledger.NotaryConfig{Key: akey, DisputeWindow: 200 * time.Millisecond, Grant: ledger.GrantPolicy{Amount: 100}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { svc.Close(); ast.Close() }()
	_, cl := account(t, ah)

	wh, wkey := newHost(t)
	wh.Peerstore().AddAddrs(ah.ID(), ah.Addrs(), time.Hour)
	trust := ledger.NewTrustSet(ah.ID())
	path := filepath.Join(t.TempDir(), "w.db")
	open := func(grace time.Duration) (*boltstore.Store, *ledgersvc.Account) {
		t.Helper()
		st, err := boltstore.Open(path, trust)
		if err != nil {
			t.Fatal(err)
		}
		wk, err := ledgersvc.OpenAccount(wh, wkey, st, trust, ah.ID(),
			ledgersvc.WithSettlement(50*time.Millisecond, 1000, grace, 100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		return st, wk
	}
	ctx := context.Background()
	st, wk := open(time.Hour) // unacknowledged receipts wait: nothing is presented
	if err := wk.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	bid := []byte("bid-restart")
	if err := cl.Lock(ctx, wk.ID(), bid, 30, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		sr, _ := ledger.SignReceipt(&pb.Receipt{SeriesId: "s", JobId: fmt.Sprint(i), Worker: []byte(wk.ID()), Client: []byte(cl.ID()), BidId: bid, Price: 10}, wkey)
		wk.Receipt(cl.ID(), sr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		saved, err := st.Unpaid()
		if err != nil {
			t.Fatal(err)
		}
		if len(saved) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d receipts saved, want 3", len(saved))
		}
		time.Sleep(20 * time.Millisecond)
	}
	wk.Close()
	st.Close()

	st, wk = open(0) // restarted: present at once
	defer func() { wk.Close(); st.Close() }()
	if n := wk.Unsettled(); n != 3 {
		t.Fatalf("%d unpaid receipts after the restart, want 3", n)
	}
	deadline = time.Now().Add(10 * time.Second)
	for wk.State().Balance != 130 || wk.Unsettled() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("worker balance %d, %d unsettled: the receipts from before the restart were not paid", wk.State().Balance, wk.Unsettled())
		}
		time.Sleep(20 * time.Millisecond)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		saved, _ := st.Unpaid()
		if len(saved) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d paid receipts still saved as unpaid", len(saved))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
