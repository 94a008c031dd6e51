package ledger

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Wallet is the owner's side of a chain: it builds and signs the next block
// and, once the home authority countersigned it, accepts it. Pure: the
// caller sends blocks to the notary and persists accepted ones. Not safe for
// concurrent use.
type Wallet struct {
	key    crypto.PrivKey
	id     peer.ID
	trust  TrustSet
	st     ChainState
	refs   MapRefs
	blocks []*pb.Block
}

// NewWallet loads a wallet from its stored chain (nil for a new account).
func NewWallet(key crypto.PrivKey, trust TrustSet, chain []*pb.Block) (*Wallet, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	w := &Wallet{key: key, id: id, trust: trust, refs: MapRefs{}}
	for _, b := range chain {
		if err := w.Accept(b); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// ID is the account.
func (w *Wallet) ID() peer.ID { return w.id }

// State is the chain state after the accepted blocks.
func (w *Wallet) State() ChainState { return w.st }

// Blocks returns the accepted chain (shared; do not modify).
func (w *Wallet) Blocks() []*pb.Block { return w.blocks }

func (w *Wallet) next(b *pb.Block, now time.Time) (*pb.Block, error) {
	b.Account = []byte(w.id)
	b.Seq = w.st.Next()
	b.Prev = w.st.Head
	b.TimestampMs = max(now.UnixMilli(), w.st.LastMs)
	if err := SignOwner(b, w.key); err != nil {
		return nil, err
	}
	return b, nil
}

// Genesis returns the signed genesis naming home (to Notary.Register).
func (w *Wallet) Genesis(home peer.ID, now time.Time) (*pb.Block, error) {
	if !w.st.Empty() {
		return nil, ErrAccountExists
	}
	return w.next(&pb.Block{Kind: pb.BlockKind_BLOCK_GENESIS, Authority: []byte(home)}, now)
}

func (w *Wallet) spend(amount uint64) error {
	if amount > w.st.Balance {
		return fmt.Errorf("%w: balance %d, need %d", ErrOverdraft, w.st.Balance, amount)
	}
	return nil
}

// Transfer returns a signed TRANSFER_OUT to an account homed at the
// payer's own home (it names none: ClaimHome is the countersigning home).
func (w *Wallet) Transfer(to peer.ID, amount uint64, ref string, now time.Time) (*pb.Block, error) {
	return w.TransferTo(to, "", amount, ref, now)
}

// TransferTo returns a signed TRANSFER_OUT naming the receiver's home:
// only that authority accepts the claim (credited once, doc.go). An empty
// home names none (the payer's home).
func (w *Wallet) TransferTo(to, home peer.ID, amount uint64, ref string, now time.Time) (*pb.Block, error) {
	if err := w.spend(amount); err != nil {
		return nil, err
	}
	b := &pb.Block{Kind: pb.BlockKind_BLOCK_TRANSFER_OUT, Amount: amount, Counterparty: []byte(to), Reference: ref}
	if home != "" && home != w.st.Home {
		b.Authority = []byte(home)
	}
	return w.next(b, now)
}

// Lock returns a signed ESCROW_LOCK of amount for worker under escrow id
// (EscrowID of the bid), expiring at expires.
func (w *Wallet) Lock(worker peer.ID, escrow string, amount uint64, expires, now time.Time) (*pb.Block, error) {
	if err := w.spend(amount); err != nil {
		return nil, err
	}
	return w.next(&pb.Block{Kind: pb.BlockKind_BLOCK_ESCROW_LOCK, Amount: amount, Counterparty: []byte(worker), Reference: escrow, ExpiresMs: expires.UnixMilli()}, now)
}

// Claim returns the countersign request for a TRANSFER_IN claiming src (a
// transfer, release or refund paid to this account).
func (w *Wallet) Claim(src *pb.Block, now time.Time) (*pb.CountersignRequest, error) {
	if src == nil || peer.ID(src.Counterparty) != w.id {
		return nil, ErrTransferMismatch
	}
	b, err := w.next(&pb.Block{Kind: pb.BlockKind_BLOCK_TRANSFER_IN, Amount: src.Amount, Counterparty: src.Account, Reference: HashRef(src)}, now)
	if err != nil {
		return nil, err
	}
	return &pb.CountersignRequest{Block: b, Source: src}, nil
}

// Handover returns a signed HANDOVER to newHome, for the current home to
// countersign (doc.go, "Hand-over"). newHome must be trusted and not the
// current home (ErrUntrustedNotary, ErrBadRequest); an authority's own
// chain is never handed over (ErrBadKind).
func (w *Wallet) Handover(newHome peer.ID, now time.Time) (*pb.Block, error) {
	switch {
	case w.st.Empty():
		return nil, fmt.Errorf("%w: no account to hand over", ErrUnknownAccount)
	case w.st.SelfHomed():
		return nil, fmt.Errorf("%w: an authority cannot hand over its own chain", ErrBadKind)
	case newHome == w.st.Home:
		return nil, fmt.Errorf("%w: %s is already the home", ErrBadRequest, newHome)
	case !w.trust.Has(newHome):
		return nil, fmt.Errorf("%w: new home %s", ErrUntrustedNotary, newHome)
	}
	return w.next(&pb.Block{Kind: pb.BlockKind_BLOCK_HANDOVER, Authority: []byte(newHome)}, now)
}

// Accept validates a countersigned block as the next one and appends it.
func (w *Wallet) Accept(b *pb.Block) error {
	if err := w.st.Apply(b, w.trust, w.refs); err != nil {
		return blockErr(b, err)
	}
	w.blocks = append(w.blocks, b)
	return nil
}
