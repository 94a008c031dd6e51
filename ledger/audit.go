package ledger

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// AuditReport sums up a set of chains.
type AuditReport struct {
	Accounts int
	Blocks   uint64
	Minted   uint64 // Σ MINT
	Balances uint64 // Σ balances
	Escrow   uint64 // open escrow: Σ locks − Σ release/refund lines
	InFlight uint64 // outs (transfer, release, refund) not yet claimed
	// Summaries of every chain, by account.
	Summaries map[peer.ID]Summary
}

// Conserved reports whether minted = balances + open escrow + in flight.
func (r AuditReport) Conserved() bool {
	return r.Minted == r.Balances+r.Escrow+r.InFlight
}

// EscrowKey names an escrow: the client account and its escrow id.
type EscrowKey struct {
	Client peer.ID
	Escrow string
}

type lockInfo struct {
	block          *pb.Block
	amount, debits uint64
}

type outInfo struct {
	block   *pb.Block
	claimed bool
}

// Audit verifies every chain (VerifyChain) and the links between them, then
// checks conservation: each TRANSFER_IN claims an out-block of the set, paid
// to it, for the same amount, at most once; each release/refund line debits
// a lock of the set, held by the authority that writes the line, paid to the
// lock's worker (release) or back to its client (refund), never more than
// locked; and minted = balances + open escrow + in flight. chains must be
// complete (every source and every lock present). The first failure is
// returned as a *BlockError.
func Audit(chains map[peer.ID][]*pb.Block, trust TrustSet) (AuditReport, error) {
	r := AuditReport{Summaries: make(map[peer.ID]Summary, len(chains))}
	ids := make([]peer.ID, 0, len(chains))
	for id := range chains {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	outs := map[string]*outInfo{}
	locks := map[EscrowKey]*lockInfo{}
	for _, id := range ids {
		blocks := chains[id]
		s, err := VerifyChain(blocks, trust)
		if err != nil {
			return r, err
		}
		if s.Account != id {
			return r, blockErr(blocks[0], fmt.Errorf("%w: chain filed under %s", ErrMalformed, id))
		}
		r.Summaries[id] = s
		r.Accounts++
		r.Blocks += s.Blocks
		r.Minted += s.Minted
		r.Balances += s.Balance
		for _, b := range blocks {
			switch b.Kind {
			case pb.BlockKind_BLOCK_TRANSFER_OUT, pb.BlockKind_BLOCK_ESCROW_RELEASE, pb.BlockKind_BLOCK_ESCROW_REFUND:
				outs[HashRef(b)] = &outInfo{block: b}
				r.InFlight += b.Amount
			case pb.BlockKind_BLOCK_ESCROW_LOCK:
				locks[EscrowKey{id, b.Reference}] = &lockInfo{block: b, amount: b.Amount}
				r.Escrow += b.Amount
			}
		}
	}
	for _, id := range ids {
		homes := map[peer.ID]bool{} // the chain's homes so far
		for _, b := range chains[id] {
			switch b.Kind {
			case pb.BlockKind_BLOCK_GENESIS, pb.BlockKind_BLOCK_HANDOVER:
				homes[peer.ID(b.Authority)] = true
			case pb.BlockKind_BLOCK_TRANSFER_IN:
				o, ok := outs[b.Reference]
				if !ok {
					return r, blockErr(b, ErrUnknownSource)
				}
				if !homes[ClaimHome(o.block)] {
					return r, blockErr(b, fmt.Errorf("%w: claimed away from the home the payer named (%s)", ErrWrongNotary, ClaimHome(o.block)))
				}
				if o.claimed {
					return r, blockErr(b, ErrReplay)
				}
				if !bytes.Equal(o.block.Counterparty, b.Account) || o.block.Amount != b.Amount || !bytes.Equal(o.block.Account, b.Counterparty) {
					return r, blockErr(b, ErrTransferMismatch)
				}
				o.claimed = true
				r.InFlight -= b.Amount
			case pb.BlockKind_BLOCK_ESCROW_RELEASE, pb.BlockKind_BLOCK_ESCROW_REFUND:
				for _, l := range b.Lines {
					lk, ok := locks[EscrowKey{peer.ID(l.Client), l.Escrow}]
					if !ok {
						return r, blockErr(b, fmt.Errorf("%w: %s/%s", ErrUnknownEscrow, peer.ID(l.Client), l.Escrow))
					}
					if !bytes.Equal(lk.block.Notary, b.Account) {
						return r, blockErr(b, fmt.Errorf("%w: escrow held by another authority", ErrEscrowMismatch))
					}
					if b.Kind == pb.BlockKind_BLOCK_ESCROW_RELEASE && !bytes.Equal(lk.block.Counterparty, b.Counterparty) {
						return r, blockErr(b, fmt.Errorf("%w: release to another worker", ErrEscrowMismatch))
					}
					if l.Amount > lk.amount-lk.debits {
						return r, blockErr(b, fmt.Errorf("%w: escrow %s", ErrOverdraft, l.Escrow))
					}
					lk.debits += l.Amount
					r.Escrow -= l.Amount
				}
			}
		}
	}
	if !r.Conserved() {
		return r, fmt.Errorf("%w: minted %d, balances %d + escrow %d + in flight %d", ErrNotConserved, r.Minted, r.Balances, r.Escrow, r.InFlight)
	}
	return r, nil
}
