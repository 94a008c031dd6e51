package ledger

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/bits"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Limits on untrusted block contents.
const (
	MaxReferenceLen = 256
	MaxLines        = 4096
)

// TrustSet is the set of authorities whose signatures count: only they can
// mint or notarise. A node fills it from its bootstrap peer IDs.
type TrustSet map[peer.ID]struct{}

// NewTrustSet builds a TrustSet.
func NewTrustSet(ids ...peer.ID) TrustSet {
	t := make(TrustSet, len(ids))
	for _, id := range ids {
		t[id] = struct{}{}
	}
	return t
}

// Has reports whether id is trusted.
func (t TrustSet) Has(id peer.ID) bool { _, ok := t[id]; return ok }

// Refs records the references a chain has used, for replay detection
// (escrow ids locked, out-blocks claimed, settlements released, refunds). Keys are
// opaque strings. The store keeps them in its transaction.
type Refs interface {
	HasRef(key string) bool
	AddRef(key string)
}

// MapRefs is an in-memory Refs.
type MapRefs map[string]struct{}

func (m MapRefs) HasRef(k string) bool { _, ok := m[k]; return ok }
func (m MapRefs) AddRef(k string)      { m[k] = struct{}{} }

// ChainState is the state of one chain after its blocks were applied: the
// incremental form of VerifyChain. The zero value is an empty chain.
type ChainState struct {
	Account peer.ID
	Home    peer.ID // current home authority
	Seq     uint64  // seq of the head
	Head    []byte  // hash of the head; nil for an empty chain
	Balance uint64
	LastMs  int64
	Blocks  uint64
	// Totals over the chain.
	Minted, In, Out, Locked, Released, Refunded uint64
}

// Summary is what VerifyChain learns of a valid chain.
type Summary = ChainState

// Empty reports whether no block was applied.
func (s *ChainState) Empty() bool { return s.Head == nil }

// SelfHomed reports whether the account is its own home (an authority's
// chain).
func (s *ChainState) SelfHomed() bool { return s.Home != "" && s.Home == s.Account }

// Next is the seq the next block must carry.
func (s *ChainState) Next() uint64 {
	if s.Empty() {
		return 0
	}
	return s.Seq + 1
}

func refKey(kind pb.BlockKind, ref string) string {
	switch kind {
	case pb.BlockKind_BLOCK_ESCROW_LOCK:
		return "lock:" + ref
	case pb.BlockKind_BLOCK_TRANSFER_IN:
		return "in:" + ref
	case pb.BlockKind_BLOCK_ESCROW_RELEASE:
		return "rel:" + ref
	case pb.BlockKind_BLOCK_ESCROW_REFUND:
		return "refund:" + ref
	}
	return ""
}

func validPeer(raw []byte) bool {
	_, err := peer.IDFromBytes(raw)
	return err == nil && len(raw) > 0
}

// Check validates b as the next block of the chain without changing s.
// refs may be nil for an empty chain.
func (s *ChainState) Check(b *pb.Block, trust TrustSet, refs Refs) error {
	_, err := s.check(b, trust, refs)
	return err
}

// Apply validates b as the next block and, if valid, applies it to s and
// records its reference in refs. An invalid block changes nothing. The
// error is a sentinel (wrap it in a BlockError to name the block).
func (s *ChainState) Apply(b *pb.Block, trust TrustSet, refs Refs) error {
	next, err := s.check(b, trust, refs)
	if err != nil {
		return err
	}
	if k := refKey(b.Kind, b.Reference); k != "" {
		refs.AddRef(k)
	}
	*s = next
	return nil
}

func (s *ChainState) check(b *pb.Block, trust TrustSet, refs Refs) (ChainState, error) {
	n := *s
	if b == nil {
		return n, ErrMalformed
	}
	if len(b.Reference) > MaxReferenceLen || len(b.Lines) > MaxLines {
		return n, fmt.Errorf("%w: oversized field", ErrMalformed)
	}
	home := s.Home
	if s.Empty() {
		if b.Kind != pb.BlockKind_BLOCK_GENESIS || b.Seq != 0 || len(b.Prev) != 0 || b.Amount != 0 {
			return n, ErrBadGenesis
		}
		if !validPeer(b.Authority) {
			return n, fmt.Errorf("%w: no home authority", ErrBadGenesis)
		}
		n.Account = peer.ID(b.Account)
		home = peer.ID(b.Authority)
		n.Home = home
	} else {
		if !bytes.Equal(b.Account, []byte(s.Account)) {
			return n, fmt.Errorf("%w: block of another account", ErrBrokenLink)
		}
		if b.Seq != s.Seq+1 {
			return n, fmt.Errorf("%w: seq %d after %d", ErrBadSeq, b.Seq, s.Seq)
		}
		if !bytes.Equal(b.Prev, s.Head) {
			return n, ErrBrokenLink
		}
		if b.Kind == pb.BlockKind_BLOCK_GENESIS {
			return n, ErrBadGenesis
		}
		if b.TimestampMs < s.LastMs {
			return n, ErrBadTimestamp
		}
	}
	if err := verifySigs(b); err != nil {
		return n, err
	}
	// Countersignature: every block by the home authority; an authority's
	// own chain is self-notarised.
	self := home == n.Account
	if self {
		if !trust.Has(home) {
			return n, ErrUntrustedNotary
		}
		if len(b.Notary) != 0 || len(b.NotarySig) != 0 {
			return n, fmt.Errorf("%w: self-notarised chain carries a countersignature", ErrMalformed)
		}
	} else {
		if len(b.Notary) == 0 || len(b.NotarySig) == 0 {
			return n, ErrMissingCountersig
		}
		if peer.ID(b.Notary) != home {
			return n, ErrWrongNotary
		}
		if !trust.Has(home) {
			return n, ErrUntrustedNotary
		}
	}
	if err := applyKind(&n, b, self, refs); err != nil {
		return *s, err
	}
	n.Seq = b.Seq
	n.Head = Hash(b)
	n.LastMs = b.TimestampMs
	n.Blocks++
	return n, nil
}

func add(a, b uint64) (uint64, error) {
	s, c := bits.Add64(a, b, 0)
	if c != 0 {
		return 0, ErrOverflow
	}
	return s, nil
}

func applyKind(n *ChainState, b *pb.Block, self bool, refs Refs) error {
	var err error
	used := func() bool {
		k := refKey(b.Kind, b.Reference)
		return refs != nil && refs.HasRef(k)
	}
	if b.Kind != pb.BlockKind_BLOCK_ESCROW_RELEASE && b.Kind != pb.BlockKind_BLOCK_ESCROW_REFUND && len(b.Lines) > 0 {
		return fmt.Errorf("%w: lines on a %s block", ErrMalformed, b.Kind)
	}
	switch b.Kind {
	case pb.BlockKind_BLOCK_GENESIS:
		return nil
	case pb.BlockKind_BLOCK_MINT:
		if !self {
			return ErrUntrustedMint
		}
		if b.Amount == 0 {
			return fmt.Errorf("%w: zero amount", ErrMalformed)
		}
		if n.Balance, err = add(n.Balance, b.Amount); err != nil {
			return err
		}
		n.Minted, err = add(n.Minted, b.Amount)
		return err
	case pb.BlockKind_BLOCK_TRANSFER_OUT, pb.BlockKind_BLOCK_ESCROW_LOCK:
		if b.Kind == pb.BlockKind_BLOCK_TRANSFER_OUT && len(b.Authority) > 0 && !validPeer(b.Authority) {
			return fmt.Errorf("%w: receiver's home", ErrMalformed)
		}
		if b.Amount == 0 || !validPeer(b.Counterparty) || peer.ID(b.Counterparty) == n.Account {
			return fmt.Errorf("%w: amount or counterparty", ErrMalformed)
		}
		if b.Amount > n.Balance {
			return ErrOverdraft
		}
		n.Balance -= b.Amount
		if b.Kind == pb.BlockKind_BLOCK_TRANSFER_OUT {
			n.Out += b.Amount
			return nil
		}
		if b.Reference == "" || b.ExpiresMs <= 0 {
			return fmt.Errorf("%w: escrow id or expiry missing", ErrMalformed)
		}
		if used() {
			return ErrReplay
		}
		n.Locked += b.Amount
		return nil
	case pb.BlockKind_BLOCK_TRANSFER_IN:
		if b.Amount == 0 || !validPeer(b.Counterparty) {
			return fmt.Errorf("%w: amount or counterparty", ErrMalformed)
		}
		if h, err := hex.DecodeString(b.Reference); err != nil || len(h) != HashSize {
			return fmt.Errorf("%w: reference is not a block hash", ErrMalformed)
		}
		if used() {
			return ErrReplay
		}
		if n.Balance, err = add(n.Balance, b.Amount); err != nil {
			return err
		}
		n.In, err = add(n.In, b.Amount)
		return err
	case pb.BlockKind_BLOCK_ESCROW_RELEASE, pb.BlockKind_BLOCK_ESCROW_REFUND:
		if !self {
			return ErrNotAuthority
		}
		if b.Amount == 0 || !validPeer(b.Counterparty) || len(b.Lines) == 0 {
			return fmt.Errorf("%w: amount, counterparty or lines", ErrMalformed)
		}
		if len(b.Authority) > 0 && !validPeer(b.Authority) {
			return fmt.Errorf("%w: receiver's home", ErrMalformed)
		}
		var sum uint64
		for _, l := range b.Lines {
			if l == nil || l.Amount == 0 || l.Escrow == "" || len(l.Escrow) > MaxReferenceLen || !validPeer(l.Client) {
				return fmt.Errorf("%w: bad escrow line", ErrMalformed)
			}
			if b.Kind == pb.BlockKind_BLOCK_ESCROW_REFUND && !bytes.Equal(l.Client, b.Counterparty) {
				return fmt.Errorf("%w: refund to another client", ErrEscrowMismatch)
			}
			if sum, err = add(sum, l.Amount); err != nil {
				return err
			}
		}
		if sum != b.Amount {
			return fmt.Errorf("%w: lines sum %d, amount %d", ErrMalformed, sum, b.Amount)
		}
		if b.Kind == pb.BlockKind_BLOCK_ESCROW_RELEASE {
			if b.Reference == "" {
				return fmt.Errorf("%w: release without receipts root", ErrMalformed)
			}
			if used() {
				return ErrReplay
			}
			n.Released += b.Amount
		} else {
			if used() {
				return ErrReplay
			}
			n.Refunded += b.Amount
		}
		return nil
	case pb.BlockKind_BLOCK_HANDOVER:
		if self {
			return fmt.Errorf("%w: an authority cannot hand over its own chain", ErrBadKind)
		}
		if b.Amount != 0 || !validPeer(b.Authority) || peer.ID(b.Authority) == n.Home || peer.ID(b.Authority) == n.Account {
			return fmt.Errorf("%w: bad hand-over", ErrMalformed)
		}
		n.Home = peer.ID(b.Authority)
		return nil
	}
	return ErrBadKind
}

// VerifyChain checks a whole chain, genesis first: every signature, hash
// link, seq continuity, countersignature by a trusted home authority, mint
// only by a trusted authority on its own chain, non-negative balance at
// every step, no reference used twice. The error is a *BlockError naming
// the first bad block.
func VerifyChain(blocks []*pb.Block, trust TrustSet) (Summary, error) {
	var s ChainState
	refs := MapRefs{}
	for _, b := range blocks {
		if err := s.Apply(b, trust, refs); err != nil {
			return s, blockErr(b, err)
		}
	}
	if s.Empty() {
		return s, &BlockError{Err: fmt.Errorf("%w: empty chain", ErrBadGenesis)}
	}
	return s, nil
}

// ClaimHome is the authority where the out-block src may be claimed
// ("credited once", doc.go): the receiver's home the block names in its
// authority field, or, when it names none, the authority that
// countersigned it (or wrote it, on an authority's own chain). A claim
// is accepted only on the receiver's chain that has this authority as its
// home, now or before a hand-over; an authority holds at most one chain
// per account, so at most one chain can claim src.
func ClaimHome(src *pb.Block) peer.ID {
	switch {
	case len(src.Authority) > 0:
		return peer.ID(src.Authority)
	case len(src.Notary) > 0:
		return peer.ID(src.Notary)
	}
	return peer.ID(src.Account)
}
