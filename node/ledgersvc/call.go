package ledgersvc

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

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
		out = append(out, resp.Blocks...)
		from = resp.Blocks[len(resp.Blocks)-1].Seq + 1
	}
}
