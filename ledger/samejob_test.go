package ledger_test

import (
	"errors"
	"testing"
	"time"

	"github.com/p2pjobs/p2pnode/ledger"
	. "github.com/p2pjobs/p2pnode/ledger/storetest"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// A job re-run on the same worker (a retry after a broken stream) yields a
// second receipt with another finish time: the escrow pays the job once,
// whether the first receipt was paid, is still filed, or the notary was
// restarted in between.
func TestSettlePaysOneJobOnce(t *testing.T) {
	f := NewFixture(t, 100)
	bid := []byte("bid-9")
	esc := ledger.EscrowID(bid)
	lock := Must(f.Client.Lock(f.Worker.ID(), esc, 50, f.Now.Add(time.Hour), f.Now))
	o := Must(f.Notary.Countersign(&pb.CountersignRequest{Block: lock}, f.Now))
	f.Outputs = append(f.Outputs, o)
	if err := f.Client.Accept(o.Blocks[0]); err != nil {
		t.Fatal(err)
	}
	receipt := func(finished time.Time) *pb.SignedReceipt {
		r := &pb.Receipt{SeriesId: "s", JobId: "job-1", Worker: []byte(f.Worker.ID()), Client: []byte(f.Client.ID()),
			BidId: bid, Price: 10, FinishedUnixMs: finished.UnixMilli()}
		return Must(ledger.SignReceipt(r, f.Key(f.Worker)))
	}
	r1, r2, r3 := receipt(f.Now), receipt(f.Now.Add(time.Second)), receipt(f.Now.Add(2*time.Second))

	// Both unacknowledged, filed in one request or in two: one is refused.
	out, res, err := f.Notary.Settle(&pb.SettleRequest{Claims: []*pb.ReceiptClaim{{Receipt: r1}, {Receipt: r2}}}, f.Now)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pending) != 1 || !errors.Is(res.Rejected[1], ledger.ErrReplay) {
		t.Fatalf("second receipt for a filed job: pending %d, rejected %v", len(res.Pending), res.Rejected)
	}
	f.Outputs = append(f.Outputs, out)

	// A notary restored from what was persisted still knows the job is filed.
	chains := allChains(f)
	var rs ledger.RestoreState
	for _, c := range chains {
		rs.Chains = append(rs.Chains, c)
	}
	for _, o := range f.Outputs {
		rs.Notes = append(rs.Notes, o.Notes...)
	}
	n2 := Must(ledger.NewNotary(ledger.NotaryConfig{Key: f.AuthKey, Trust: f.Trust}))
	if err := n2.Restore(rs); err != nil {
		t.Fatal(err)
	}
	later := f.Now.Add(ledger.DefaultDisputeWindow + time.Minute)
	for _, n := range []*ledger.Notary{f.Notary, n2} {
		_, res, err = n.Settle(&pb.SettleRequest{Claims: []*pb.ReceiptClaim{{Receipt: r1}, {Receipt: r3}}}, later)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Released) != 1 || res.Rejected[1] == nil {
			t.Fatalf("after the window: released %d, rejected %v", len(res.Released), res.Rejected)
		}
		e, _ := n.Escrow(ledger.EscrowKey{Client: f.Client.ID(), Escrow: esc})
		if e.Remaining != 40 {
			t.Fatalf("escrow remaining %d, want 40 (one job of 10 paid)", e.Remaining)
		}
	}
}
