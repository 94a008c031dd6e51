package ledger

import (
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// MemStore is an in-memory Store for tests. It keeps encoded blocks, so
// callers never share data with it.
type MemStore struct {
	trust TrustSet

	mu sync.Mutex
	// guarded by mu
	states      map[peer.ID]ChainState
	refs        map[peer.ID]MapRefs
	blocks      map[peer.ID][][]byte
	escrows     map[EscrowKey]uint64
	settlements map[string][]byte
	notes       map[string][]byte
	evidence    [][]byte
	closed      bool
}

// NewMemStore returns an empty store validating with trust.
func NewMemStore(trust TrustSet) *MemStore {
	return &MemStore{
		trust: trust, states: map[peer.ID]ChainState{}, refs: map[peer.ID]MapRefs{},
		blocks: map[peer.ID][][]byte{}, escrows: map[EscrowKey]uint64{},
		settlements: map[string][]byte{}, notes: map[string][]byte{},
	}
}

// memTx stages writes; they reach the MemStore only on success.
type memTx struct {
	s           *MemStore
	states      map[peer.ID]ChainState
	refs        map[peer.ID]*overlayRefs
	blocks      map[peer.ID][][]byte
	escrows     map[EscrowKey]uint64
	settlements map[string][]byte
	notes       map[string][]byte
	evidence    [][]byte
}

type overlayRefs struct {
	base  MapRefs
	added MapRefs
}

func (o *overlayRefs) HasRef(k string) bool { return o.base.HasRef(k) || o.added.HasRef(k) }
func (o *overlayRefs) AddRef(k string)      { o.added.AddRef(k) }

func (t *memTx) LoadState(id peer.ID) (ChainState, bool, error) {
	if st, ok := t.states[id]; ok {
		return st, true, nil
	}
	st, ok := t.s.states[id]
	return st, ok, nil
}
func (t *memTx) SaveState(st ChainState) error { t.states[st.Account] = st; return nil }
func (t *memTx) Refs(id peer.ID) Refs {
	r := t.refs[id]
	if r == nil {
		r = &overlayRefs{base: t.s.refs[id], added: MapRefs{}}
		t.refs[id] = r
	}
	return r
}
func (t *memTx) PutBlock(b *pb.Block, enc []byte) error {
	id := peer.ID(b.Account)
	t.blocks[id] = append(t.blocks[id], enc)
	return nil
}
func (t *memTx) Escrow(k EscrowKey) (uint64, bool, error) {
	if v, ok := t.escrows[k]; ok {
		return v, v > 0, nil
	}
	v, ok := t.s.escrows[k]
	return v, ok, nil
}
func (t *memTx) SetEscrow(k EscrowKey, v uint64) error { t.escrows[k] = v; return nil }
func (t *memTx) PutSettlement(s *pb.Settlement, enc []byte) error {
	t.settlements[string(s.BlockHash)] = enc
	return nil
}
func (t *memTx) PutNote(n *Note, enc []byte) error { t.notes[string(n.Hash)] = enc; return nil }
func (t *memTx) PutEvidence(_ *pb.ForkEvidence, enc []byte) error {
	t.evidence = append(t.evidence, enc)
	return nil
}

// Commit implements Store.
func (s *MemStore) Commit(out Output) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	t := &memTx{s: s, states: map[peer.ID]ChainState{}, refs: map[peer.ID]*overlayRefs{},
		blocks: map[peer.ID][][]byte{}, escrows: map[EscrowKey]uint64{},
		settlements: map[string][]byte{}, notes: map[string][]byte{}}
	if err := ApplyOutput(t, out, s.trust); err != nil {
		return err
	}
	for id, st := range t.states {
		s.states[id] = st
	}
	for id, r := range t.refs {
		if s.refs[id] == nil {
			s.refs[id] = MapRefs{}
		}
		for k := range r.added {
			s.refs[id][k] = struct{}{}
		}
	}
	for id, bs := range t.blocks {
		s.blocks[id] = append(s.blocks[id], bs...)
	}
	for k, v := range t.escrows {
		if v == 0 {
			delete(s.escrows, k)
		} else {
			s.escrows[k] = v
		}
	}
	for k, v := range t.settlements {
		s.settlements[k] = v
	}
	for k, v := range t.notes {
		s.notes[k] = v
	}
	s.evidence = append(s.evidence, t.evidence...)
	return nil
}

// AppendBatch implements Store.
func (s *MemStore) AppendBatch(blocks []*pb.Block) error { return s.Commit(Output{Blocks: blocks}) }

// State implements Store.
func (s *MemStore) State(id peer.ID) (ChainState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.states[id]
	if !ok {
		return ChainState{}, ErrNotFound
	}
	st.Head = slices.Clone(st.Head)
	return st, nil
}

// Chain implements Store.
func (s *MemStore) Chain(id peer.ID, from uint64, limit int) ([]*pb.Block, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	bs, ok := s.blocks[id]
	if !ok {
		return nil, ErrNotFound
	}
	var out []*pb.Block
	for i := from; i < uint64(len(bs)) && (limit <= 0 || len(out) < limit); i++ {
		b, err := DecodeBlock(bs[i])
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Accounts implements Store.
func (s *MemStore) Accounts() ([]peer.ID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]peer.ID, 0, len(s.states))
	for id := range s.states {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// OpenEscrows implements Store.
func (s *MemStore) OpenEscrows() ([]OpenEscrow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []OpenEscrow
	for k, v := range s.escrows {
		out = append(out, OpenEscrow{k, v})
	}
	SortEscrows(out)
	return out, nil
}

// SortEscrows orders escrows by client then id.
func SortEscrows(es []OpenEscrow) {
	slices.SortFunc(es, func(a, b OpenEscrow) int {
		if a.Key.Client != b.Key.Client {
			if a.Key.Client < b.Key.Client {
				return -1
			}
			return 1
		}
		if a.Key.Escrow < b.Key.Escrow {
			return -1
		}
		if a.Key.Escrow > b.Key.Escrow {
			return 1
		}
		return 0
	})
}

// Settlement implements Store.
func (s *MemStore) Settlement(h []byte) (*pb.Settlement, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	enc, ok := s.settlements[string(h)]
	if !ok {
		return nil, ErrNotFound
	}
	st := new(pb.Settlement)
	return st, DecodeProto(enc, st)
}

// Notes implements Store.
func (s *MemStore) Notes() ([]*Note, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.notes))
	for k := range s.notes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []*Note
	for _, k := range keys {
		n := new(Note)
		if err := n.UnmarshalBinary(s.notes[k]); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// Evidence implements Store.
func (s *MemStore) Evidence() ([]*pb.ForkEvidence, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*pb.ForkEvidence
	for _, enc := range s.evidence {
		ev := new(pb.ForkEvidence)
		if err := DecodeProto(enc, ev); err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// Close implements Store.
func (s *MemStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
