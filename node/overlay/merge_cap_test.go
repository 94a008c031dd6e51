package overlay

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Once an aggregate holds MaxProfferBids bids, further bids from a
// neighbour's proffer are dropped before their signature is checked: a
// hostile neighbour cannot make a worker verify a whole frame of bids it
// would throw away anyway.
func TestMergeStopsVerifyingAtTheCap(t *testing.T) {
	verified := 0
	verify := func(sb *pb.SignedBid) (peer.ID, error) {
		verified++
		return peer.ID(sb.Signature), nil
	}
	a := &pb.Proffer{Reached: 1}
	for i := range 3 * MaxProfferBids {
		a.Bids = append(a.Bids, &pb.SignedBid{Signature: []byte{byte(i), byte(i >> 8)}})
	}
	out, _ := Merge("", nil, nil, []*pb.Proffer{a}, verify, nil)
	if len(out.Bids) != MaxProfferBids || verified > MaxProfferBids {
		t.Fatalf("%d bids kept, %d verified; want %d and at most %d", len(out.Bids), verified, MaxProfferBids, MaxProfferBids)
	}
}
