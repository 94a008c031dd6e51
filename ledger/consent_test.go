package ledger_test

import (
	"errors"
	"testing"
	"time"

	"github.com/p2pjobs/p2pnode/ledger"
	. "github.com/p2pjobs/p2pnode/ledger/storetest"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// A worker's consent to refund part of an escrow early is good for one
// refund: replayed, it would let the client drain the escrow before it
// expires and leave the worker's coming receipts unpaid. A restored notary
// remembers it was used.
func TestRefundConsentUsedOnce(t *testing.T) {
	f := NewFixture(t, 100)
	bid := []byte("bid-c")
	esc := ledger.EscrowID(bid)
	lock := Must(f.Client.Lock(f.Worker.ID(), esc, 50, f.Now.Add(time.Hour), f.Now))
	f.Outputs = append(f.Outputs, Must(f.Notary.Countersign(&pb.CountersignRequest{Block: lock}, f.Now)))
	consent := Must(f.Key(f.Worker).Sign(ledger.RefundConsentBytes(f.Client.ID(), esc, 10)))
	req := &pb.RefundRequest{Client: []byte(f.Client.ID()), Escrow: esc, WorkerConsent: consent, Amount: 10}
	f.Outputs = append(f.Outputs, Must(f.Notary.Refund(req, f.Now)))
	if _, err := f.Notary.Refund(req, f.Now); !errors.Is(err, ledger.ErrReplay) {
		t.Fatalf("replayed consent: %v, want ErrReplay", err)
	}
	var rs ledger.RestoreState
	for _, c := range allChains(f) {
		rs.Chains = append(rs.Chains, c)
	}
	n2 := Must(ledger.NewNotary(ledger.NotaryConfig{Key: f.AuthKey, Trust: f.Trust}))
	if err := n2.Restore(rs); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Refund(req, f.Now); !errors.Is(err, ledger.ErrReplay) {
		t.Fatalf("replayed consent after a restart: %v, want ErrReplay", err)
	}
	if e, _ := n2.Escrow(ledger.EscrowKey{Client: f.Client.ID(), Escrow: esc}); e.Remaining != 40 {
		t.Fatalf("escrow remaining %d, want 40", e.Remaining)
	}
	if _, err := ledger.Audit(allChains(f), f.Trust); err != nil {
		t.Fatal(err)
	}
}
