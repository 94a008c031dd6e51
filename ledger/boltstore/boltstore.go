// Package boltstore is the durable ledger.Store: one bbolt file, fsync on
// every commit (bbolt's default), so a block acknowledged by Commit survives
// a crash or SIGKILL. One Commit is one transaction and one fsync however
// many blocks it holds; concurrent Commits are coalesced by bbolt's Batch.
// Node services open it; nothing else should.
//
// Layout: bucket "accounts"/<peer ID> holds "state" (ledger.ChainState
// binary), sub-bucket "blocks" (u64 big-endian seq → canonical block) and
// "refs" (used references); top-level buckets "escrows", "settlements",
// "notes", "evidence", "unpaid" (a worker's receipts not paid yet: receipt
// hash → lp(client) || ReceiptClaim).
package boltstore

import (
	"encoding/binary"
	"errors"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

var (
	bAccounts    = []byte("accounts")
	bEscrows     = []byte("escrows")
	bSettlements = []byte("settlements")
	bNotes       = []byte("notes")
	bEvidence    = []byte("evidence")
	bUnpaid      = []byte("unpaid")
	kState       = []byte("state")
	bBlocks      = []byte("blocks")
	bRefs        = []byte("refs")
)

// Store is a bbolt-backed ledger.Store.
type Store struct {
	db    *bolt.DB
	trust ledger.TrustSet
}

var (
	_ ledger.Store       = (*Store)(nil)
	_ ledger.UnpaidStore = (*Store)(nil)
)

// Open opens (creating if needed) the store at path. Blocks are validated
// against trust before they are stored.
func Open(path string, trust ledger.TrustSet) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	db.MaxBatchDelay = 2 * time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bAccounts, bEscrows, bSettlements, bNotes, bEvidence, bUnpaid} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db, trust: trust}, nil
}

type txn struct {
	tx  *bolt.Tx
	err error // first error of a Refs write
}

func (t *txn) acct(id peer.ID, create bool) (*bolt.Bucket, error) {
	root := t.tx.Bucket(bAccounts)
	if b := root.Bucket([]byte(id)); b != nil || !create {
		return b, nil
	}
	b, err := root.CreateBucket([]byte(id))
	if err != nil {
		return nil, err
	}
	if _, err := b.CreateBucket(bBlocks); err != nil {
		return nil, err
	}
	if _, err := b.CreateBucket(bRefs); err != nil {
		return nil, err
	}
	return b, nil
}

func (t *txn) LoadState(id peer.ID) (ledger.ChainState, bool, error) {
	var st ledger.ChainState
	b, err := t.acct(id, false)
	if err != nil || b == nil {
		return st, false, err
	}
	return st, true, st.UnmarshalBinary(b.Get(kState))
}

func (t *txn) SaveState(st ledger.ChainState) error {
	b, err := t.acct(st.Account, true)
	if err != nil {
		return err
	}
	enc, _ := st.MarshalBinary()
	return b.Put(kState, enc)
}

type refs struct {
	t  *txn
	id peer.ID
}

func (r refs) HasRef(k string) bool {
	b, err := r.t.acct(r.id, false)
	return err == nil && b != nil && b.Bucket(bRefs).Get([]byte(k)) != nil
}

func (r refs) AddRef(k string) {
	b, err := r.t.acct(r.id, true)
	if err == nil {
		err = b.Bucket(bRefs).Put([]byte(k), nil)
	}
	if err != nil && r.t.err == nil {
		r.t.err = err
	}
}

func (t *txn) Refs(id peer.ID) ledger.Refs { return refs{t, id} }

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func (t *txn) PutBlock(b *pb.Block, enc []byte) error {
	a, err := t.acct(peer.ID(b.Account), true)
	if err != nil {
		return err
	}
	return a.Bucket(bBlocks).Put(seqKey(b.Seq), enc)
}

func (t *txn) Escrow(k ledger.EscrowKey) (uint64, bool, error) {
	v := t.tx.Bucket(bEscrows).Get(ledger.EscrowKeyBytes(k))
	if len(v) != 8 {
		return 0, false, nil
	}
	return binary.BigEndian.Uint64(v), true, nil
}

func (t *txn) SetEscrow(k ledger.EscrowKey, rem uint64) error {
	if rem == 0 {
		return t.tx.Bucket(bEscrows).Delete(ledger.EscrowKeyBytes(k))
	}
	return t.tx.Bucket(bEscrows).Put(ledger.EscrowKeyBytes(k), binary.BigEndian.AppendUint64(nil, rem))
}

func (t *txn) PutSettlement(s *pb.Settlement, enc []byte) error {
	return t.tx.Bucket(bSettlements).Put(s.BlockHash, enc)
}

func (t *txn) PutNote(n *ledger.Note, enc []byte) error {
	return t.tx.Bucket(bNotes).Put(n.Hash, enc)
}

func (t *txn) PutEvidence(_ *pb.ForkEvidence, enc []byte) error {
	b := t.tx.Bucket(bEvidence)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	return b.Put(seqKey(seq), enc)
}

// errRollback carries a validation error out of a bolt.Batch call without
// making Batch retry the function alone (a validation error is final).
type errRollback struct{ err error }

func (e errRollback) Error() string { return e.err.Error() }

// Commit implements ledger.Store. Concurrent commits share a transaction
// and an fsync (bolt.DB.Batch); a commit whose validation fails is retried
// alone by Batch, so it never spoils the others.
func (s *Store) Commit(out ledger.Output) error {
	err := s.db.Batch(func(tx *bolt.Tx) error {
		t := &txn{tx: tx}
		if err := ledger.ApplyOutput(t, out, s.trust); err != nil {
			return err
		}
		return t.err
	})
	var rb errRollback
	if errors.As(err, &rb) {
		return rb.err
	}
	return err
}

// AppendBatch implements ledger.Store.
func (s *Store) AppendBatch(blocks []*pb.Block) error { return s.Commit(ledger.Output{Blocks: blocks}) }

// State implements ledger.Store.
func (s *Store) State(id peer.ID) (st ledger.ChainState, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		var ok bool
		st, ok, err = (&txn{tx: tx}).LoadState(id)
		if err == nil && !ok {
			err = ledger.ErrNotFound
		}
		return err
	})
	return st, err
}

// Chain implements ledger.Store.
func (s *Store) Chain(id peer.ID, from uint64, limit int) ([]*pb.Block, error) {
	var out []*pb.Block
	err := s.db.View(func(tx *bolt.Tx) error {
		a := tx.Bucket(bAccounts).Bucket([]byte(id))
		if a == nil {
			return ledger.ErrNotFound
		}
		c := a.Bucket(bBlocks).Cursor()
		for k, v := c.Seek(seqKey(from)); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			b, err := ledger.DecodeBlock(v) // copies: v is only valid in the tx
			if err != nil {
				return err
			}
			out = append(out, b)
		}
		return nil
	})
	return out, err
}

// Accounts implements ledger.Store.
func (s *Store) Accounts() ([]peer.ID, error) {
	var ids []peer.ID
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bAccounts).ForEachBucket(func(k []byte) error {
			ids = append(ids, peer.ID(k))
			return nil
		})
	})
	slices.Sort(ids)
	return ids, err
}

// OpenEscrows implements ledger.Store.
func (s *Store) OpenEscrows() ([]ledger.OpenEscrow, error) {
	var out []ledger.OpenEscrow
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bEscrows).ForEach(func(k, v []byte) error {
			key, err := ledger.ParseEscrowKey(slices.Clone(k))
			if err != nil {
				return err
			}
			out = append(out, ledger.OpenEscrow{Key: key, Remaining: binary.BigEndian.Uint64(v)})
			return nil
		})
	})
	ledger.SortEscrows(out)
	return out, err
}

// Settlement implements ledger.Store.
func (s *Store) Settlement(h []byte) (*pb.Settlement, error) {
	st := new(pb.Settlement)
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bSettlements).Get(h)
		if v == nil {
			return ledger.ErrNotFound
		}
		return ledger.DecodeProto(slices.Clone(v), st)
	})
	return st, err
}

// Notes implements ledger.Store.
func (s *Store) Notes() ([]*ledger.Note, error) {
	var out []*ledger.Note
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bNotes).ForEach(func(_, v []byte) error {
			n := new(ledger.Note)
			if err := n.UnmarshalBinary(slices.Clone(v)); err != nil {
				return err
			}
			out = append(out, n)
			return nil
		})
	})
	return out, err
}

// Evidence implements ledger.Store.
func (s *Store) Evidence() ([]*pb.ForkEvidence, error) {
	var out []*pb.ForkEvidence
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bEvidence).ForEach(func(_, v []byte) error {
			ev := new(pb.ForkEvidence)
			if err := ledger.DecodeProto(slices.Clone(v), ev); err != nil {
				return err
			}
			out = append(out, ev)
			return nil
		})
	})
	return out, err
}

// Close implements ledger.Store.
func (s *Store) Close() error { return s.db.Close() }

// SaveUnpaid implements ledger.UnpaidStore: one transaction, one fsync.
func (s *Store) SaveUnpaid(put []ledger.Unpaid, del [][]byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bUnpaid)
		for _, h := range del {
			if err := b.Delete(h); err != nil {
				return err
			}
		}
		for _, u := range put {
			enc, err := ledger.EncodeProto(u.Claim)
			if err != nil {
				return err
			}
			v := binary.BigEndian.AppendUint32(nil, uint32(len(u.Client)))
			v = append(append(v, u.Client...), enc...)
			if err := b.Put(ledger.ReceiptHash(u.Claim.GetReceipt()), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// Unpaid implements ledger.UnpaidStore.
func (s *Store) Unpaid() ([]ledger.Unpaid, error) {
	var out []ledger.Unpaid
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bUnpaid).ForEach(func(_, v []byte) error {
			if len(v) < 4 || uint64(len(v)-4) < uint64(binary.BigEndian.Uint32(v)) {
				return errors.New("boltstore: short unpaid record")
			}
			n := binary.BigEndian.Uint32(v)
			c := new(pb.ReceiptClaim)
			if err := ledger.DecodeProto(v[4+n:], c); err != nil {
				return err
			}
			out = append(out, ledger.Unpaid{Client: peer.ID(v[4 : 4+n]), Claim: c})
			return nil
		})
	})
	return out, err
}
