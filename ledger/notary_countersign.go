package ledger

import (
	"bytes"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Countersign countersigns an owner-signed block of an account homed here.
// It countersigns only a block that extends the head it knows (seq =
// head+1, prev = head hash) and keeps the balance non-negative; a
// TRANSFER_IN must come with its source out-block, countersigned (or
// authored) by a trusted authority, paid to this account and not claimed
// before; an ESCROW_LOCK must live at least the minimum lock lifetime
// (ErrLockTooShort). A block this notary already countersigned is answered
// again in Output.Reply (a retry gets its original answer and persists
// nothing); one that another home countersigned is refused (ErrReplay); a
// different owner-signed block at a known seq is a fork: the
// Output carries the evidence, the error is ErrFork and the account is
// refused from then on (ErrAccountRefused).
func (n *Notary) Countersign(req *pb.CountersignRequest, now time.Time) (Output, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	b := req.GetBlock()
	if b == nil {
		return Output{}, fmt.Errorf("%w: no block", ErrBadRequest)
	}
	a := n.accounts[peer.ID(b.Account)]
	if a == nil {
		return Output{}, ErrUnknownAccount
	}
	if a.refused {
		return Output{}, ErrAccountRefused
	}
	c := Clone(b)
	c.Notary, c.NotarySig = nil, nil
	if c.Kind == pb.BlockKind_BLOCK_GENESIS {
		return Output{}, fmt.Errorf("%w: genesis goes through Register", ErrBadRequest)
	}
	// A block at a known seq is a retry or a fork, whoever is home now: a
	// retried hand-over is countersigned again by the old home, whose
	// responsibility ended with it; anything new goes to the home.
	if c.Seq > a.st.Seq && a.st.Home != n.id {
		return Output{}, fmt.Errorf("%w: account homed at %s", ErrWrongNotary, a.st.Home)
	}
	if c.Seq <= a.st.Seq {
		if err := verifySigs(c); err != nil {
			return Output{}, blockErr(c, err)
		}
		if bytes.Equal(a.digests[c.Seq], ownerDigest(c)) {
			if !a.mine[c.Seq] {
				// Countersigned by the home of its time: a second
				// countersignature here would be a second block.
				return Output{}, blockErr(c, fmt.Errorf("%w: block countersigned by another authority", ErrReplay))
			}
			// A retry: the original answer (Ed25519 signs
			// deterministically: the same bytes), nothing to persist.
			if err := Countersign(c, n.key); err != nil {
				return Output{}, err
			}
			return Output{Reply: []*pb.Block{c}}, nil
		}
		a.refused = true
		ev := &pb.ForkEvidence{Second: Clone(b), DetectedMs: now.UnixMilli()}
		n.evidence = append(n.evidence, ev)
		return Output{Evidence: ev}, blockErr(c, fmt.Errorf("%w: second block at seq %d", ErrFork, c.Seq))
	}
	if c.Seq > a.st.Seq+1 || !bytes.Equal(c.Prev, a.st.Head) {
		return Output{}, blockErr(c, fmt.Errorf("%w: head is %d", ErrStaleHead, a.st.Seq))
	}
	switch c.Kind {
	case pb.BlockKind_BLOCK_TRANSFER_IN:
		if err := n.checkSource(a, c, req.GetSource()); err != nil {
			return Output{}, blockErr(c, err)
		}
	case pb.BlockKind_BLOCK_ESCROW_LOCK:
		if n.escrows[EscrowKey{peer.ID(c.Account), c.Reference}] != nil {
			return Output{}, blockErr(c, ErrReplay)
		}
		if n.minLock > 0 && c.ExpiresMs-now.UnixMilli() < n.minLock.Milliseconds() {
			return Output{}, blockErr(c, fmt.Errorf("%w: expires in %dms, the minimum is %s", ErrLockTooShort, c.ExpiresMs-now.UnixMilli(), n.minLock))
		}
	case pb.BlockKind_BLOCK_HANDOVER:
		if !n.trust.Has(peer.ID(c.Authority)) {
			return Output{}, blockErr(c, fmt.Errorf("%w: new home", ErrUntrustedNotary))
		}
		if count, amount := n.openEscrowsLocked(peer.ID(c.Account)); count > 0 {
			return Output{}, blockErr(c, fmt.Errorf("%w: %d escrows hold %d points (wait until they are paid or refunded)", ErrEscrowsOpen, count, amount))
		}
	}
	if err := Countersign(c, n.key); err != nil {
		return Output{}, err
	}
	if err := n.applyLocked(a, c); err != nil {
		return Output{}, blockErr(c, err)
	}
	return Output{Blocks: []*pb.Block{Clone(c)}}, nil
}

func (n *Notary) checkSource(a *account, in, src *pb.Block) error {
	if src == nil {
		return fmt.Errorf("%w: transfer-in without its source", ErrUnknownSource)
	}
	switch src.Kind {
	case pb.BlockKind_BLOCK_TRANSFER_OUT, pb.BlockKind_BLOCK_ESCROW_RELEASE, pb.BlockKind_BLOCK_ESCROW_REFUND:
	default:
		return fmt.Errorf("%w: source is a %s", ErrTransferMismatch, src.Kind)
	}
	if err := verifySigs(src); err != nil {
		return err
	}
	signer := peer.ID(src.Notary)
	if len(src.Notary) == 0 {
		signer = peer.ID(src.Account) // an authority's own chain
	}
	if !n.trust.Has(signer) {
		return ErrUntrustedNotary
	}
	if !bytes.Equal(src.Counterparty, in.Account) || src.Amount != in.Amount ||
		!bytes.Equal(in.Counterparty, src.Account) || in.Reference != HashRef(src) {
		return ErrTransferMismatch
	}
	if h := ClaimHome(src); !a.homes[h] {
		// Credited once: only the home the payer named takes the claim.
		return fmt.Errorf("%w: the out-block is claimable at %s only", ErrWrongNotary, h)
	}
	return nil
}
