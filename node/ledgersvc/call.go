package ledgersvc

import (
	"context"
	"fmt"
	"math"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

var exchange = protocols.Exchange{Max: MaxMsg, Timeout: StreamTimeout}

// TransportError wraps a failure to get any reply: the request may or may
// not have been decided.
type TransportError struct{ Err error }

func (e *TransportError) Error() string { return "ledgersvc: " + e.Err.Error() }
func (e *TransportError) Unwrap() error { return e.Err }

// Call sends one ledger request to authority a. A typed refusal comes back
// as a *protocols.RemoteError (match it with protocols.Code); a failure to
// get a reply is a *TransportError.
func Call(ctx context.Context, h host.Host, a peer.ID, req *pb.LedgerRequest) (*pb.LedgerResponse, error) {
	resp := &pb.LedgerResponse{}
	if _, err := protocols.Call(ctx, h, a, []protocol.ID{ID}, exchange, req, resp); err != nil {
		return nil, &TransportError{Err: err}
	}
	if err := protocols.FromPB(resp.Error); err != nil {
		return resp, fmt.Errorf("authority %s: %w", shortID(a), err)
	}
	return resp, nil
}

func shortID(p peer.ID) string {
	s := p.String()
	if len(s) > 8 {
		return "…" + s[len(s)-6:]
	}
	return s
}

// FetchChain reads an account's whole chain from authority a, page by page.
// Every page must continue the chain where it was asked to (the account's
// blocks, seq from, from+1, ...): a reply that does not is refused
// (ledger.ErrMalformed) rather than asked again forever. The blocks are
// not verified.
func FetchChain(ctx context.Context, h host.Host, a, account peer.ID, from uint64) ([]*pb.Block, error) {
	var out []*pb.Block
	for {
		resp, err := Call(ctx, h, a, &pb.LedgerRequest{Req: &pb.LedgerRequest_GetChain{GetChain: &pb.GetChainRequest{Account: []byte(account), FromSeq: from}}})
		if err != nil {
			return out, err
		}
		if len(resp.Blocks) == 0 {
			return out, nil
		}
		for _, b := range resp.Blocks {
			if b == nil || peer.ID(b.Account) != account || b.Seq != from || from == math.MaxUint64 {
				return out, fmt.Errorf("authority %s: %w: chain page of %s does not continue at seq %d", shortID(a), ledger.ErrMalformed, shortID(account), from)
			}
			out = append(out, b)
			from++
		}
	}
}
