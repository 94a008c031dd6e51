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
// (its last block is the HANDOVER to this authority). from is the
// authenticated remote peer. The Output holds the countersigned genesis
// and, when the grant policy gives one, the authority's MINT and
// TRANSFER_OUT to the account (which the account claims with TRANSFER_IN).
//
// A request is judged in full before anything changes: a retry gets its
// original answer in Output.Reply and persists nothing; a chain this
// notary already holds, or one carrying blocks it countersigned but does
// not hold, is refused. Nothing of an arriving chain is ever applied
// twice, so no escrow is opened again.
func (n *Notary) Register(req *pb.RegisterAccountRequest, from peer.ID, now time.Time) (Output, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	chain := req.GetChain()
	if len(chain) == 0 || chain[0] == nil {
		return Output{}, fmt.Errorf("%w: empty chain", ErrBadRequest)
	}
	acct := peer.ID(chain[0].Account)
	old := n.accounts[acct]
	if old != nil && old.refused {
		return Output{}, ErrAccountRefused
	}
	if len(chain) == 1 {
		return n.registerGenesisLocked(chain[0], old, now)
	}
	// Arrival by hand-over. 1: the chain verifies on its own; nothing of
	// the notary's state is touched.
	var st ChainState
	for _, b := range chain {
		if err := st.Apply(b, n.trust, MapRefs{}); err != nil {
			return Output{}, blockErr(b, err)
		}
	}
	last := chain[len(chain)-1]
	if st.Home != n.id || last.Kind != pb.BlockKind_BLOCK_HANDOVER {
		return Output{}, fmt.Errorf("%w: a chain arrives by its hand-over to this authority as its last block", ErrWrongNotary)
	}
	// 2: against what this notary holds of the account.
	start := uint64(0) // the first seq this notary does not hold
	if old != nil {
		common := min(old.st.Seq, st.Seq)
		if !bytes.Equal(old.digests[common], ownerDigest(chain[common])) {
			return Output{}, blockErr(chain[common], fmt.Errorf("%w: the chain differs from the one held here", ErrStaleHead))
		}
		if st.Seq <= old.st.Seq {
			if old.st.Home == n.id && st.Seq == old.st.Seq {
				// Arrived before and nothing since: a retry.
				return Output{Reply: cloneBlocks(chain)}, nil
			}
			return Output{}, blockErr(last, fmt.Errorf("%w: hand-over already taken", ErrReplay))
		}
		if old.st.Home == n.id {
			return Output{}, blockErr(chain[old.st.Seq+1], fmt.Errorf("%w: blocks after the head this home knows", ErrStaleHead))
		}
		start = old.st.Seq + 1 // back to a former home
	}
	for _, b := range chain[start:] {
		if peer.ID(b.Notary) == n.id {
			// Countersigned here, yet not held here: never re-applied.
			return Output{}, blockErr(b, fmt.Errorf("%w: block countersigned here before", ErrReplay))
		}
	}
	// 3: install. Every check passed; applying cannot fail, and locks this
	// notary countersigned before stay as they are (applyLocked).
	a := &account{refs: MapRefs{}}
	for _, b := range chain {
		if err := n.applyLocked(a, b); err != nil {
			return Output{}, blockErr(b, err)
		}
	}
	n.accounts[acct] = a
	return Output{Blocks: cloneBlocks(chain[start:])}, nil
}

// registerGenesisLocked opens a new account from its genesis, or answers
// a retried registration again.
func (n *Notary) registerGenesisLocked(genesis *pb.Block, old *account, now time.Time) (Output, error) {
	acct := peer.ID(genesis.Account)
	g := Clone(genesis)
	g.Notary, g.NotarySig = nil, nil
	if peer.ID(g.Authority) != n.id {
		return Output{}, fmt.Errorf("%w: genesis names another home", ErrWrongNotary)
	}
	if old != nil {
		if len(old.digests) > 0 && old.mine[0] && bytes.Equal(old.digests[0], ownerDigest(g)) && old.st.Seq == 0 {
			if err := Countersign(g, n.key); err != nil { // Ed25519: the same signature again
				return Output{}, err
			}
			return Output{Reply: []*pb.Block{g}}, nil // retry
		}
		return Output{}, ErrAccountExists
	}
	if err := Countersign(g, n.key); err != nil {
		return Output{}, err
	}
	a := &account{refs: MapRefs{}}
	if err := n.applyLocked(a, g); err != nil {
		return Output{}, blockErr(g, err)
	}
	n.accounts[acct] = a
	out := Output{Blocks: []*pb.Block{Clone(g)}}
	if n.grantAllowedLocked(acct, now) {
		more, err := n.mintToLocked(acct, "", n.grant.Amount, "grant", now)
		if err != nil {
			return Output{}, err
		}
		out.Blocks = append(out.Blocks, more...)
	}
	return out, nil
}

func cloneBlocks(bs []*pb.Block) []*pb.Block {
	out := make([]*pb.Block, len(bs))
	for i, b := range bs {
		out[i] = Clone(b)
	}
	return out
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

// mintToLocked mints amount and pays it to to, claimable at home (empty:
// here).
func (n *Notary) mintToLocked(to, home peer.ID, amount uint64, ref string, now time.Time) ([]*pb.Block, error) {
	if amount == 0 || to == n.id {
		return nil, fmt.Errorf("%w: mint amount or receiver", ErrBadRequest)
	}
	m, err := n.ownBlockLocked(&pb.Block{Kind: pb.BlockKind_BLOCK_MINT, Amount: amount, Reference: ref}, now)
	if err != nil {
		return nil, err
	}
	o, err := n.ownBlockLocked(&pb.Block{Kind: pb.BlockKind_BLOCK_TRANSFER_OUT, Amount: amount, Counterparty: []byte(to), Reference: ref, Authority: n.nameHome(home)}, now)
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
	var home peer.ID
	if len(req.GetHome()) > 0 {
		if home, err = peer.IDFromBytes(req.GetHome()); err != nil || !n.trust.Has(home) {
			return Output{}, fmt.Errorf("%w: receiver's home is not a trusted authority", ErrBadRequest)
		}
	}
	if ta := n.accounts[to]; home == "" && ta != nil {
		home = ta.st.Home // it may have moved on from here
	}
	blocks, err := n.mintToLocked(to, home, req.GetAmount(), req.GetReference(), now)
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

// nameHome is the authority field of an out-block of the authority's own
// chain paid to an account homed at home: empty when that is here (the
// writer is the claim home by default, ClaimHome).
func (n *Notary) nameHome(home peer.ID) []byte {
	if home == "" || home == n.id {
		return nil
	}
	return []byte(home)
}
