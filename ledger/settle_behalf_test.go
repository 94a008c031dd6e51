package ledger_test

import (
	"errors"
	"testing"
	"time"

	"github.com/p2pjobs/p2pnode/ledger"
	. "github.com/p2pjobs/p2pnode/ledger/storetest"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// TestAdversarySettleForWorkerHomedElsewhere: a dishonest client (or any
// stranger holding the receipt and its acknowledgement, which travel on
// the job stream) settles a worker's receipt at the escrow's authority A
// before the worker does, naming no home. The worker is homed at B, so A
// does not know its home: the release would name A, where the worker
// holds no account, and the worker's payment would be stranded (its own
// settlement is then refused as already paid). Only the worker may settle
// a receipt of a worker homed elsewhere; the worker then is paid at B.
func TestAdversarySettleForWorkerHomedElsewhere(t *testing.T) {
	w := newWorld(t, nil)
	cl := w.f.Client
	wk, wkID := Key(t)
	wb := Must(ledger.NewWallet(wk, w.trust, nil))
	w.accept(wb, w.b.ok(w.nB.Register(&pb.RegisterAccountRequest{Chain: []*pb.Block{Must(wb.Genesis(w.idB, w.now))}}, wkID, w.now)).Blocks[0])
	bid := []byte("bid")
	w.accept(cl, w.cs(w.nA, w.sA, Must(cl.Lock(wkID, ledger.EscrowID(bid), 30, w.now.Add(time.Hour), w.now))))
	sr := Must(ledger.SignReceipt(&pb.Receipt{JobId: "j", Worker: []byte(wkID), Client: []byte(cl.ID()), BidId: bid, Price: 10}, wk))
	claim := &pb.ReceiptClaim{Receipt: sr, ClientAck: Ack(t, w.f, sr)}
	before := w.audit()

	o, res, err := w.nA.SettleFrom(&pb.SettleRequest{Claims: []*pb.ReceiptClaim{claim}}, cl.ID(), w.now)
	w.a.on(o, err)
	if err != nil || len(res.Released) != 0 || !errors.Is(res.Rejected[0], ledger.ErrBadRequest) {
		t.Fatalf("client settled the worker's receipt for it: %v %+v (blocks %d)", err, res, len(o.Blocks))
	}
	// A stranger naming a home is refused the same way.
	_, stranger := Key(t)
	o, res, err = w.nA.SettleFrom(&pb.SettleRequest{Claims: []*pb.ReceiptClaim{claim}, Home: []byte(w.idA)}, stranger, w.now)
	w.a.on(o, err)
	if err != nil || len(res.Released) != 0 || !errors.Is(res.Rejected[0], ledger.ErrBadRequest) {
		t.Fatalf("stranger settled the worker's receipt: %v %+v", err, res)
	}
	w.noRise(before)

	// The worker itself settles, naming B: the release is claimable there.
	o, res, err = w.nA.SettleFrom(&pb.SettleRequest{Claims: []*pb.ReceiptClaim{claim}, Home: []byte(w.idB)}, wkID, w.now)
	o = w.a.ok(o, err)
	if len(res.Released) != 1 || len(o.Blocks) != 1 || ledger.ClaimHome(o.Blocks[0]) != w.idB {
		t.Fatalf("worker's own settlement: %+v", res)
	}
	w.accept(wb, w.b.ok(w.nB.Countersign(Must(wb.Claim(o.Blocks[0], w.now)), w.now)).Blocks[0])
	if wb.State().Balance != 10 {
		t.Fatalf("worker holds %d, want 10", wb.State().Balance)
	}
	w.audit()
}
