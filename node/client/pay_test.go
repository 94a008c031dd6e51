package client

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// TestReceiptMustNameTheAward: the client acknowledges a receipt only if
// it names the bid it awarded to that worker at the bid's price; one
// naming another award (another escrow), a job not sent to that worker
// under it, or a higher price is refused. On a resumed run the award the
// crashed run sent the job under (a result the worker kept) is expected.
func TestReceiptMustNameTheAward(t *testing.T) {
	w1, w2 := peer.ID("worker-1"), peer.ID("worker-2")
	bid1, ext1 := &pb.Bid{BidId: []byte("bid-1"), PricePerJob: 3}, &pb.Bid{BidId: []byte("ext-1"), PricePerJob: 4}
	d := &dispatch{
		s: &Series{Prior: map[int][]PriorSend{3: {{Worker: w1, BidID: []byte("old-1"), Price: 2}},
			4: {{Worker: w1, BidID: []byte("old-1"), Price: 2}, {Worker: w2, BidID: []byte("old-2"), Price: 5}}}},
		sentBid: map[sentKey]*pb.Bid{
			{0, w1}: bid1, // job 0 under the first award
			{1, w1}: ext1, // job 1 under an extension's fresh bid
			{2, w2}: {BidId: []byte("bid-2"), PricePerJob: 5},
		}}
	for _, c := range []struct {
		name   string
		job    int
		worker peer.ID
		rc     *pb.Receipt
		want   bool
	}{
		{"its award", 0, w1, &pb.Receipt{BidId: []byte("bid-1"), Price: 3}, true},
		{"an extension's bid", 1, w1, &pb.Receipt{BidId: []byte("ext-1"), Price: 4}, true},
		{"another award of its own for this job", 1, w1, &pb.Receipt{BidId: []byte("bid-1"), Price: 3}, false},
		{"a higher price", 0, w1, &pb.Receipt{BidId: []byte("bid-1"), Price: 30}, false},
		{"a lower price", 0, w1, &pb.Receipt{BidId: []byte("bid-1"), Price: 2}, false},
		{"another worker's award", 0, w1, &pb.Receipt{BidId: []byte("bid-2"), Price: 5}, false},
		{"a job never sent to it", 2, w1, &pb.Receipt{BidId: []byte("bid-1"), Price: 3}, false},
		{"an unknown bid", 0, w1, &pb.Receipt{BidId: []byte("bid-x"), Price: 3}, false},
		{"a worker without an award", 0, peer.ID("stranger"), &pb.Receipt{BidId: []byte("bid-1"), Price: 3}, false},
		{"the crashed run's award, kept", 3, w1, &pb.Receipt{BidId: []byte("old-1"), Price: 2}, true},
		{"the crashed run's award, another worker", 3, w2, &pb.Receipt{BidId: []byte("old-1"), Price: 2}, false},
		{"the crashed run's award, another price", 3, w1, &pb.Receipt{BidId: []byte("old-1"), Price: 9}, false},
		{"the crashed run's first send, before a backup", 4, w1, &pb.Receipt{BidId: []byte("old-1"), Price: 2}, true},
		{"the crashed run's backup send", 4, w2, &pb.Receipt{BidId: []byte("old-2"), Price: 5}, true},
		{"the crashed run's sends, crossed", 4, w2, &pb.Receipt{BidId: []byte("old-1"), Price: 2}, false},
	} {
		if got := d.awardedLocked(c.job, c.worker, c.rc); got != c.want {
			t.Errorf("%s: awarded = %v, want %v", c.name, got, c.want)
		}
	}
}
