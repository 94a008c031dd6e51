package ledger

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// MaxRequestSize bounds one /p2pjobs/ledger/1.0.0 message.
const MaxRequestSize = 4 << 20

// MaxChainPage bounds the blocks of one GetChain reply.
const MaxChainPage = 1000

// ChainReader serves GetChain (a Store satisfies it).
type ChainReader interface {
	Chain(account peer.ID, from uint64, limit int) ([]*pb.Block, error)
}

// DecodeRequest parses a ledger request from the wire, bounded in size.
func DecodeRequest(data []byte) (*pb.LedgerRequest, error) {
	if len(data) > MaxRequestSize {
		return nil, fmt.Errorf("%w: request of %d bytes", ErrBadRequest, len(data))
	}
	req := new(pb.LedgerRequest)
	if err := proto.Unmarshal(data, req); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return req, nil
}

// Handle is the pure core of the /p2pjobs/ledger/1.0.0 handler: it decides
// req from the authenticated remote peer from at time now and returns the
// reply and the Output to persist. The service must persist out (Store.
// Commit) before it sends resp; if that fails it replies INTERNAL and
// rebuilds the Notary. chains (may be nil) serves GetChain. Handle never
// panics on hostile input and a rejected request changes nothing.
func Handle(n *Notary, chains ChainReader, req *pb.LedgerRequest, from peer.ID, now time.Time) (resp *pb.LedgerResponse, out Output) {
	resp = &pb.LedgerResponse{}
	var err error
	switch r := req.GetReq().(type) {
	case *pb.LedgerRequest_Register:
		if len(r.Register.GetChain()) > 0 && peer.ID(r.Register.Chain[0].GetAccount()) != from {
			err = fmt.Errorf("%w: only the owner registers its account", ErrNotOperator)
			break
		}
		out, err = n.Register(r.Register, from, now)
	case *pb.LedgerRequest_Countersign:
		if b := r.Countersign.GetBlock(); b != nil && peer.ID(b.Account) != from {
			// Only the owner asks for its blocks: anyone else sending
			// one (a replay of a block it saw) is refused, typed.
			err = fmt.Errorf("%w: only the owner submits its blocks", ErrNotOperator)
			break
		}
		out, err = n.Countersign(r.Countersign, now)
	case *pb.LedgerRequest_GetHead:
		resp.Head, err = n.Head(peer.ID(r.GetHead.GetAccount()))
	case *pb.LedgerRequest_GetChain:
		if chains == nil {
			err = ErrNotFound
			break
		}
		limit := int(min(r.GetChain.GetLimit(), MaxChainPage))
		if limit == 0 {
			limit = MaxChainPage
		}
		resp.Blocks, err = chains.Chain(peer.ID(r.GetChain.GetAccount()), r.GetChain.GetFromSeq(), limit)
	case *pb.LedgerRequest_Mint:
		out, err = n.Mint(r.Mint, from, now)
	case *pb.LedgerRequest_Settle:
		var res SettleResult
		out, res, err = n.SettleFrom(r.Settle, from, now)
		resp.Released, resp.Pending = res.Released, res.Pending
		for _, e := range res.Rejected {
			if e == nil {
				resp.Rejected = append(resp.Rejected, &pb.Error{})
			} else {
				resp.Rejected = append(resp.Rejected, ToPB(e))
			}
		}
	case *pb.LedgerRequest_Refund:
		out, err = n.Refund(r.Refund, now)
	case *pb.LedgerRequest_GetEscrow:
		resp.Escrow, err = getEscrow(n, chains, r.GetEscrow)
	case *pb.LedgerRequest_Dispute:
		out, err = n.Dispute(r.Dispute, now)
	default:
		err = fmt.Errorf("%w: empty request", ErrBadRequest)
	}
	if err != nil {
		resp.Error = ToPB(err)
		if out.Evidence == nil {
			out = Output{}
		}
		return resp, out
	}
	if resp.Blocks == nil {
		resp.Blocks = out.Blocks
		if len(out.Reply) > 0 {
			resp.Blocks = out.Reply
		}
	}
	return resp, out
}

// getEscrow answers GetEscrow: the escrow's state and its lock block.
func getEscrow(n *Notary, chains ChainReader, req *pb.GetEscrowRequest) (*pb.EscrowInfo, error) {
	e, ok := n.Escrow(EscrowKey{peer.ID(req.GetClient()), req.GetEscrow()})
	if !ok || chains == nil {
		return nil, ErrUnknownEscrow
	}
	bs, err := chains.Chain(e.Key.Client, e.LockSeq, 1)
	if err != nil || len(bs) != 1 || bs[0].Kind != pb.BlockKind_BLOCK_ESCROW_LOCK || bs[0].Reference != e.Key.Escrow {
		return nil, fmt.Errorf("%w: lock block not found", ErrUnknownEscrow)
	}
	return &pb.EscrowInfo{Lock: bs[0], Remaining: e.Remaining, Reserved: e.Pending + e.Frozen}, nil
}
