package overlay

import (
	"bytes"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"google.golang.org/protobuf/proto"
)

// FuzzSolicitDecode feeds arbitrary frames to the solicit decoders and the
// pure logic behind them: nothing may panic, and whatever Check accepts is
// within the limits.
func FuzzSolicitDecode(f *testing.F) {
	p := ids(f, 3)
	self, client, w := p[0], p[1], p[2]
	good, _ := proto.Marshal(&pb.Solicitation{Request: &pb.BidRequest{SeriesId: "s", JobCount: 1}, Ttl: 4,
		Token: []byte("01234567"), Client: []byte(client), Path: raw(w), Avoid: raw(w)})
	prof, _ := proto.Marshal(&pb.Proffer{Bids: []*pb.SignedBid{{Bid: []byte{1, 2}, Signature: []byte{3}}},
		Declines:       []*pb.ProfferDecline{{Worker: []byte(w), Error: &pb.Error{Code: 22}}},
		SignedDeclines: []*pb.SignedDecline{{Decline: []byte{1, 2}, Signature: []byte{3}}}})
	f.Add(good)
	f.Add(prof)
	f.Add([]byte{0x12, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		frame := append(protocolsVarint(len(data)), data...)
		var s pb.Solicitation
		if protocols.NewReader(bytes.NewReader(frame), protocols.MaxSolicitMsg).Read(&s) == nil {
			if c, err := Check(self, w, &s); err == nil {
				if s.Ttl > MaxTTL || len(c.Path) > MaxPathList || len(c.Avoid) > MaxPathList || len(c.Path) >= int(s.Ttl) {
					t.Fatalf("accepted out of limits: ttl %d path %d avoid %d", s.Ttl, len(c.Path), len(c.Avoid))
				}
				to, out := Forward(self, &s, c, []peer.ID{client, w, p[0]})
				if out != nil && (len(out.Avoid) > MaxPathList || len(to) == 0) {
					t.Fatalf("forwarded avoid list of %d", len(out.Avoid))
				}
			}
		}
		var pr pb.Proffer
		if protocols.NewReader(bytes.NewReader(frame), protocols.MaxSolicitMsg).Read(&pr) == nil {
			agg, _ := Merge(self, nil, nil, []*pb.Proffer{&pr, &pr}, BidVerifier(client, "s"), FloodDeclineVerifier(client, "s", s.Token))
			if len(agg.Bids) > MaxProfferBids || len(agg.SignedDeclines) > MaxProfferBids || len(agg.Declines) > 0 {
				t.Fatal("aggregate over its caps")
			}
		}
	})
}

func protocolsVarint(n int) []byte {
	var b []byte
	for n >= 0x80 {
		b = append(b, byte(n)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}
