package ledger

import (
	"errors"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// SetReport is what VerifySet learns of a set of chains.
type SetReport struct {
	Chains    int       `json:"chains"`
	Blocks    int       `json:"blocks"`
	Conserved bool      `json:"conserved"`
	Complete  bool      `json:"complete"` // false: conservation not checked (links to chains not in the set)
	Minted    uint64    `json:"minted"`
	Balances  uint64    `json:"balances"`
	Escrow    uint64    `json:"escrow"`
	InFlight  uint64    `json:"in_flight"`
	Trusted   []peer.ID `json:"trusted"`
}

// VerifySet checks every chain of a set (VerifyChain) and, when the set is
// complete (every source and lock present), its links and the
// conservation of points (Audit). trustIDs are the trusted authorities;
// when empty, the authorities whose own chains are in the set are trusted.
// The error names the first bad block; a partial set is not an error
// (Complete is false).
func VerifySet(chains map[peer.ID][]*pb.Block, trustIDs []peer.ID) (SetReport, error) {
	r := SetReport{Chains: len(chains)}
	trust := NewTrustSet(trustIDs...)
	if len(trustIDs) == 0 {
		for id, c := range chains {
			if len(c) > 0 && c[0].Kind == pb.BlockKind_BLOCK_GENESIS && peer.ID(c[0].Authority) == id {
				trust[id] = struct{}{}
			}
		}
	}
	for id := range trust {
		r.Trusted = append(r.Trusted, id)
	}
	slices.Sort(r.Trusted)
	ids := make([]peer.ID, 0, len(chains))
	for id := range chains {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if _, err := VerifyChain(chains[id], trust); err != nil {
			return r, err
		}
		r.Blocks += len(chains[id])
	}
	rep, err := Audit(chains, trust)
	switch {
	case err == nil:
		r.Complete, r.Conserved = true, true
	case errors.Is(err, ErrUnknownSource), errors.Is(err, ErrUnknownEscrow):
		r.Complete = false // chains of a partial set: links to chains not here
	default:
		return r, err
	}
	r.Minted, r.Balances, r.Escrow, r.InFlight = rep.Minted, rep.Balances, rep.Escrow, rep.InFlight
	return r, nil
}
