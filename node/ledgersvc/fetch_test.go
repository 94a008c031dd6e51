package ledgersvc_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/node/ledgersvc"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// A peer whose chain pages do not continue where the request asked (the
// same page again, or a seq that wraps around) must not keep FetchChain
// asking forever, growing its result without bound.
func TestFetchChainRefusesPagesThatDoNotAdvance(t *testing.T) {
	for _, tc := range []struct {
		name string
		seqs func(from uint64) []uint64
	}{
		{"same page again", func(uint64) []uint64 { return []uint64{0, 1} }},
		{"seq wraps", func(from uint64) []uint64 { return []uint64{from, ^uint64(0)} }},
		{"gap", func(from uint64) []uint64 { return []uint64{from + 1} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, _ := newHost(t)
			h, _ := newHost(t)
			h.Peerstore().AddAddrs(bad.ID(), bad.Addrs(), time.Hour)
			var calls atomic.Int64
			bad.SetStreamHandler(ledgersvc.ID, func(s network.Stream) {
				calls.Add(1)
				_ = protocols.Serve(s, protocols.Exchange{Max: ledgersvc.MaxMsg, Timeout: 5 * time.Second}, &pb.LedgerRequest{},
					func(req *pb.LedgerRequest) *pb.LedgerResponse {
						resp := &pb.LedgerResponse{}
						for _, q := range tc.seqs(req.GetGetChain().GetFromSeq()) {
							resp.Blocks = append(resp.Blocks, &pb.Block{Account: []byte(bad.ID()), Seq: q})
						}
						return resp
					}, func(err error) *pb.LedgerResponse { return &pb.LedgerResponse{Error: protocols.ToPB(err)} })
			})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := ledgersvc.FetchChain(ctx, h, bad.ID(), bad.ID(), 0)
			if err == nil || errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ledger.ErrMalformed) {
				t.Fatalf("FetchChain: %v after %d calls; want a refusal of the reply", err, calls.Load())
			}
		})
	}
}
