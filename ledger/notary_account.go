package ledger

import (
	"bytes"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Register opens an account homed here: req.Chain is the owner-signed
// genesis naming this authority, or a whole chain arriving by hand-over
// (its last home must be this authority). from is the authenticated remote
// peer. The Output holds the countersigned genesis and, when the grant
// policy gives one, the authority's MINT and TRANSFER_OUT to the account
// (which the account claims with TRANSFER_IN).
func (n *Notary) Register(req *pb.RegisterAccountRequest, from peer.ID, now time.Time) (Output, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	chain := req.GetChain()
	if len(chain) == 0 || chain[0] == nil {
		return Output{}, fmt.Errorf("%w: empty chain", ErrBadRequest)
	}
	acct := peer.ID(chain[0].Account)
	if old := n.accounts[acct]; old != nil {
		if old.refused {
			return Output{}, ErrAccountRefused
		}
		if len(chain) == 1 && len(old.digests) > 0 && bytes.Equal(old.digests[0], ownerDigest(chain[0])) && old.st.Seq == 0 {
			g := Clone(chain[0])
			if err := Countersign(g, n.key); err != nil {
				return Output{}, err
			}
			return Output{Blocks: []*pb.Block{g}}, nil // retry
		}
		if len(chain) == 1 {
			return Output{}, ErrAccountExists
		}
	}
	if len(chain) == 1 {
		g := Clone(chain[0])
		if peer.ID(g.Authority) != n.id {
			return Output{}, fmt.Errorf("%w: genesis names another home", ErrWrongNotary)
		}
		if err := Countersign(g, n.key); err != nil {
			return Output{}, err
		}
		a := &account{refs: MapRefs{}}
		if err := n.applyLocked(a, g); err != nil {
			return Output{}, blockErr(g, err)
		}
		n.accounts[acct] = a
		out := Output{Blocks: []*pb.Block{g}}
		if n.grantAllowedLocked(acct, now) {
			more, err := n.mintToLocked(acct, n.grant.Amount, "grant", now)
			if err != nil {
				return Output{}, err
			}
			out.Blocks = append(out.Blocks, more...)
		}
		return out, nil
	}
	// Arrival by hand-over: the whole chain, verified.
	a := &account{refs: MapRefs{}}
	for _, b := range chain {
		if err := n.applyLocked(a, b); err != nil {
			return Output{}, blockErr(b, err)
		}
	}
	if a.st.Home != n.id {
		return Output{}, fmt.Errorf("%w: chain is not handed over to this authority", ErrWrongNotary)
	}
	if old := n.accounts[acct]; old != nil {
		switch {
		case old.st.Home == n.id && old.st.Seq >= a.st.Seq && bytes.Equal(old.digests[a.st.Seq], a.digests[a.st.Seq]):
			return Output{}, nil // arrived before: a retry
		case old.st.Seq >= a.st.Seq || !bytes.Equal(old.digests[old.st.Seq], a.digests[old.st.Seq]):
			return Output{}, ErrStaleHead
		}
		// Back to a former home: its store holds the chain up to where
		// it handed the account over.
		n.accounts[acct] = a
		return Output{Blocks: chain[old.st.Seq+1:]}, nil
	}
	n.accounts[acct] = a
	return Output{Blocks: chain}, nil
}

func (n *Notary) grantAllowedLocked(id peer.ID, now time.Time) bool {
	g := n.grant
	if g.Amount == 0 {
		return false
	}
	ms := now.UnixMilli()
	if last, ok := n.granted[id]; ok && (g.PerIdentity == 0 || ms-last < g.PerIdentity.Milliseconds()) {
		return false
	}
	keep := n.grantLog[:0]
	for _, t := range n.grantLog {
		if ms-t < time.Hour.Milliseconds() {
			keep = append(keep, t)
		}
	}
	n.grantLog = keep
	if g.MaxPerHour > 0 && len(n.grantLog) >= g.MaxPerHour {
		return false
	}
	n.granted[id] = ms
	n.grantLog = append(n.grantLog, ms)
	return true
}

func (n *Notary) mintToLocked(to peer.ID, amount uint64, ref string, now time.Time) ([]*pb.Block, error) {
	if amount == 0 || to == n.id {
		return nil, fmt.Errorf("%w: mint amount or receiver", ErrBadRequest)
	}
	m, err := n.ownBlockLocked(&pb.Block{Kind: pb.BlockKind_BLOCK_MINT, Amount: amount, Reference: ref}, now)
	if err != nil {
		return nil, err
	}
	o, err := n.ownBlockLocked(&pb.Block{Kind: pb.BlockKind_BLOCK_TRANSFER_OUT, Amount: amount, Counterparty: []byte(to), Reference: ref}, now)
	if err != nil {
		return nil, err
	}
	return []*pb.Block{m, o}, nil
}

// Mint creates points for req.To: only an operator (from) may. The Output
// holds the authority's MINT and TRANSFER_OUT; the receiver claims the
// latter with TRANSFER_IN (its source).
func (n *Notary) Mint(req *pb.MintRequest, from peer.ID, now time.Time) (Output, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.operators[from] {
		return Output{}, ErrNotOperator
	}
	to, err := peer.IDFromBytes(req.GetTo())
	if err != nil {
		return Output{}, fmt.Errorf("%w: receiver", ErrBadRequest)
	}
	if len(req.GetReference()) > MaxReferenceLen {
		return Output{}, fmt.Errorf("%w: reference too long", ErrBadRequest)
	}
	blocks, err := n.mintToLocked(to, req.GetAmount(), req.GetReference(), now)
	return Output{Blocks: blocks}, err
}

// openEscrowsLocked counts the escrows held here that client locked and
// that still hold points (remaining, including receipts filed or disputed
// against them). An account hands over only when this is zero: the escrows
// stay with the authority that holds them, and a hand-over ends the old
// home's responsibility for the account.
func (n *Notary) openEscrowsLocked(client peer.ID) (count int, amount uint64) {
	for k, e := range n.escrows {
		if k.Client == client && e.remaining > 0 {
			count++
			amount += e.remaining
		}
	}
	return count, amount
}
