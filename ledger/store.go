package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Store persists chains. Implementations: MemStore (tests) and
// ledger/boltstore (bbolt, fsync'd). Every implementation passes
// ledger/storetest.
//
// Every block is re-validated against the stored chain before it is stored
// (ChainState.Apply with the store's TrustSet); a batch is atomic: if any
// block is bad, nothing of the batch is stored and the error is a
// *BlockError naming it. Once Commit returns nil the batch is durable.
//
// Ownership: blocks and records passed in are not retained (the store keeps
// its own encoding) and not modified; everything returned is a fresh copy
// owned by the caller. ErrNotFound means the account (or record) is absent.
// Methods are safe for concurrent use.
type Store interface {
	// Commit stores a notary Output (or any blocks) atomically, in one
	// transaction and one fsync: blocks in order (of any accounts),
	// settlements, receipt notes, fork evidence.
	Commit(out Output) error
	// AppendBatch is Commit(Output{Blocks: blocks}).
	AppendBatch(blocks []*pb.Block) error
	// State is the account's chain state (head, balance, home, totals).
	State(account peer.ID) (ChainState, error)
	// Chain returns up to limit blocks (limit <= 0: all) from seq from.
	Chain(account peer.ID, from uint64, limit int) ([]*pb.Block, error)
	// Accounts lists the accounts held, sorted.
	Accounts() ([]peer.ID, error)
	// OpenEscrows lists escrows locked on chains held here minus the
	// release/refund lines of authority chains held here.
	OpenEscrows() ([]OpenEscrow, error)
	Settlement(blockHash []byte) (*pb.Settlement, error)
	Notes() ([]*Note, error)
	Evidence() ([]*pb.ForkEvidence, error)
	Close() error
}

// OpenEscrow is an escrow with points still locked.
type OpenEscrow struct {
	Key       EscrowKey
	Remaining uint64
}

// StoreTx is one transaction of a Store implementation; ApplyOutput drives
// it so that every implementation validates the same way.
type StoreTx interface {
	LoadState(account peer.ID) (ChainState, bool, error)
	SaveState(st ChainState) error
	Refs(account peer.ID) Refs
	PutBlock(b *pb.Block, encoded []byte) error
	// Escrow returns the remaining amount of an open escrow (0, false if
	// none); SetEscrow with 0 deletes it.
	Escrow(k EscrowKey) (uint64, bool, error)
	SetEscrow(k EscrowKey, remaining uint64) error
	PutSettlement(s *pb.Settlement, encoded []byte) error
	PutNote(n *Note, encoded []byte) error
	PutEvidence(ev *pb.ForkEvidence, encoded []byte) error
}

// ApplyOutput validates and writes out through tx. The caller commits the
// transaction if it returns nil and rolls it back otherwise.
func ApplyOutput(tx StoreTx, out Output, trust TrustSet) error {
	states := map[peer.ID]*ChainState{}
	for _, b := range out.Blocks {
		if b == nil {
			return blockErr(nil, ErrMalformed)
		}
		id := peer.ID(b.Account)
		st := states[id]
		if st == nil {
			s, _, err := tx.LoadState(id)
			if err != nil {
				return err
			}
			st = &s
			states[id] = st
		}
		if err := st.Apply(b, trust, tx.Refs(id)); err != nil {
			return blockErr(b, err)
		}
		enc, err := EncodeBlock(b)
		if err != nil {
			return blockErr(b, fmt.Errorf("%w: %v", ErrMalformed, err))
		}
		if err := tx.PutBlock(b, enc); err != nil {
			return err
		}
		switch b.Kind {
		case pb.BlockKind_BLOCK_ESCROW_LOCK:
			if err := tx.SetEscrow(EscrowKey{id, b.Reference}, b.Amount); err != nil {
				return err
			}
		case pb.BlockKind_BLOCK_ESCROW_RELEASE, pb.BlockKind_BLOCK_ESCROW_REFUND:
			for _, l := range b.Lines {
				k := EscrowKey{peer.ID(l.Client), l.Escrow}
				rem, ok, err := tx.Escrow(k)
				if err != nil {
					return err
				}
				if ok {
					if l.Amount > rem { // never clamp: a store must not hide an overdraft
						return blockErr(b, fmt.Errorf("%w: escrow %s/%s holds %d, line debits %d", ErrOverdraft, k.Client, k.Escrow, rem, l.Amount))
					}
					if err := tx.SetEscrow(k, rem-l.Amount); err != nil {
						return err
					}
				}
			}
		}
	}
	for _, st := range states {
		if err := tx.SaveState(*st); err != nil {
			return err
		}
	}
	for _, s := range out.Settlements {
		enc, err := EncodeProto(s)
		if err != nil {
			return err
		}
		if err := tx.PutSettlement(s, enc); err != nil {
			return err
		}
	}
	for _, n := range out.Notes {
		enc, err := n.MarshalBinary()
		if err != nil {
			return err
		}
		if err := tx.PutNote(n, enc); err != nil {
			return err
		}
	}
	if out.Evidence != nil {
		enc, err := EncodeProto(out.Evidence)
		if err != nil {
			return err
		}
		if err := tx.PutEvidence(out.Evidence, enc); err != nil {
			return err
		}
	}
	return nil
}

// MarshalBinary encodes the state for a store.
func (s ChainState) MarshalBinary() ([]byte, error) {
	b := appendLP(nil, []byte(s.Account))
	b = appendLP(b, []byte(s.Home))
	b = appendLP(b, s.Head)
	for _, v := range []uint64{s.Seq, s.Balance, uint64(s.LastMs), s.Blocks, s.Minted, s.In, s.Out, s.Locked, s.Released, s.Refunded} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b, nil
}

var errShort = errors.New("ledger: short record")

type reader struct {
	b   []byte
	err error
}

func (r *reader) lp() []byte {
	if r.err != nil || len(r.b) < 4 {
		r.err = errShort
		return nil
	}
	n := binary.BigEndian.Uint32(r.b)
	if uint64(len(r.b)-4) < uint64(n) {
		r.err = errShort
		return nil
	}
	v := r.b[4 : 4+n]
	r.b = r.b[4+n:]
	return v
}

func (r *reader) u64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.err = errShort
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// UnmarshalBinary decodes a state encoded by MarshalBinary.
func (s *ChainState) UnmarshalBinary(data []byte) error {
	r := &reader{b: data}
	s.Account = peer.ID(r.lp())
	s.Home = peer.ID(r.lp())
	if h := r.lp(); len(h) > 0 {
		s.Head = append([]byte(nil), h...)
	} else {
		s.Head = nil
	}
	var lastMs uint64
	for _, p := range []*uint64{&s.Seq, &s.Balance, &lastMs, &s.Blocks, &s.Minted, &s.In, &s.Out, &s.Locked, &s.Released, &s.Refunded} {
		*p = r.u64()
	}
	s.LastMs = int64(lastMs)
	return r.err
}

// MarshalBinary encodes a note: u64(filed_ms) || disputed byte || lp(hash)
// || claim protobuf.
func (n *Note) MarshalBinary() ([]byte, error) {
	c, err := EncodeProto(n.Claim)
	if err != nil {
		return nil, err
	}
	b := binary.BigEndian.AppendUint64(nil, uint64(n.FiledMs))
	d := byte(0)
	if n.Disputed {
		d = 1
	}
	b = append(b, d)
	b = appendLP(b, n.Hash)
	return append(b, c...), nil
}

// UnmarshalBinary decodes a note.
func (n *Note) UnmarshalBinary(data []byte) error {
	r := &reader{b: data}
	n.FiledMs = int64(r.u64())
	if r.err != nil || len(r.b) < 1 {
		return errShort
	}
	n.Disputed = r.b[0] == 1
	r.b = r.b[1:]
	n.Hash = append([]byte(nil), r.lp()...)
	if r.err != nil {
		return r.err
	}
	n.Claim = new(pb.ReceiptClaim)
	return DecodeProto(r.b, n.Claim)
}

// EscrowKeyBytes is the store key of an escrow.
func EscrowKeyBytes(k EscrowKey) []byte {
	return append(appendLP(nil, []byte(k.Client)), k.Escrow...)
}

// ParseEscrowKey inverts EscrowKeyBytes.
func ParseEscrowKey(b []byte) (EscrowKey, error) {
	r := &reader{b: b}
	c := r.lp()
	return EscrowKey{peer.ID(c), string(r.b)}, r.err
}

// Unpaid is a receipt a worker signed and has not been paid for yet, with
// the client's acknowledgement once it came (Claim.ClientAck).
type Unpaid struct {
	Client peer.ID
	Claim  *pb.ReceiptClaim
}

// UnpaidStore is implemented by stores that keep a worker's unpaid receipts
// across restarts (ledger/boltstore). Writes are meant to be batched: one
// SaveUnpaid (one transaction, one fsync) for everything that changed since
// the last one, never one per job.
type UnpaidStore interface {
	// SaveUnpaid stores put and deletes the receipts whose hashes
	// (ReceiptHash) are in del, atomically.
	SaveUnpaid(put []Unpaid, del [][]byte) error
	// Unpaid returns every stored unpaid receipt.
	Unpaid() ([]Unpaid, error)
}
