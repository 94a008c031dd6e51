package client

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// TestReceiptMustNameTheAward: the client acknowledges a receipt only if
// it names the bid it awarded to that worker at the bid's price; one
// naming another award (another escrow) or a higher price is refused.
func TestReceiptMustNameTheAward(t *testing.T) {
	w1, w2 := peer.ID("worker-1"), peer.ID("worker-2")
	d := &dispatch{offers: map[peer.ID]Offer{
		w1: {Worker: w1, Bid: &pb.Bid{BidId: []byte("bid-1"), PricePerJob: 3}},
		w2: {Worker: w2, Bid: &pb.Bid{BidId: []byte("bid-2"), PricePerJob: 5}},
	}}
	for _, c := range []struct {
		name   string
		worker peer.ID
		rc     *pb.Receipt
		want   bool
	}{
		{"its award", w1, &pb.Receipt{BidId: []byte("bid-1"), Price: 3}, true},
		{"a higher price", w1, &pb.Receipt{BidId: []byte("bid-1"), Price: 30}, false},
		{"a lower price", w1, &pb.Receipt{BidId: []byte("bid-1"), Price: 2}, false},
		{"another worker's award", w1, &pb.Receipt{BidId: []byte("bid-2"), Price: 5}, false},
		{"an unknown bid", w1, &pb.Receipt{BidId: []byte("bid-x"), Price: 3}, false},
		{"a worker without an award", peer.ID("stranger"), &pb.Receipt{BidId: []byte("bid-1"), Price: 3}, false},
	} {
		if got := d.awardedLocked(c.worker, c.rc); got != c.want {
			t.Errorf("%s: awarded = %v, want %v", c.name, got, c.want)
		}
	}
}
