package ledger

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// DefaultDisputeWindow is how long a client has to acknowledge or dispute a
// filed receipt before it is paid without its acknowledgement.
const DefaultDisputeWindow = 10 * time.Minute

// DefaultMinLockLifetime is the shortest escrow lock a notary accepts.
const DefaultMinLockLifetime = 30 * time.Second

// GrantPolicy gives new accounts points at registration. Off when Amount is
// zero (the default). Each identity gets at most one grant per PerIdentity
// (zero: once ever); at most MaxPerHour grants are given per hour in total.
type GrantPolicy struct {
	Amount      uint64
	PerIdentity time.Duration
	MaxPerHour  int
}

// NotaryConfig configures an authority's notary.
type NotaryConfig struct {
	Key crypto.PrivKey // the authority's identity key
	// Trust: the authorities whose countersignatures and out-blocks this
	// notary accepts (it always trusts itself).
	Trust TrustSet
	// Operators may mint (default: the authority itself).
	Operators     []peer.ID
	DisputeWindow time.Duration
	Grant         GrantPolicy
	// MinLockLifetime: an ESCROW_LOCK must expire at least this long
	// after the notary sees it (default DefaultMinLockLifetime), so that
	// a worker has time to run and settle before the client can take the
	// points back. A negative value turns the check off (tests only).
	MinLockLifetime time.Duration
}

// Note is notary state that is not a block: a receipt filed for payment
// after the dispute window, or disputed. Persist it with the Output.
type Note struct {
	Hash     []byte
	Claim    *pb.ReceiptClaim
	FiledMs  int64
	Disputed bool
}

// Output is what a notary decision asks the caller to persist, in order and
// atomically, before it replies (persist before you send): blocks of the
// accounts involved and of the authority's own chain, settlements to store
// beside their release blocks, receipt notes and fork evidence. If
// persisting fails the Notary is ahead of the store: discard it and Restore
// a new one.
type Output struct {
	Blocks      []*pb.Block
	Settlements []*pb.Settlement
	Notes       []*Note
	Evidence    *pb.ForkEvidence
	// Reply holds blocks decided and persisted before, returned again to
	// a retried request (its original answer). It is not persisted: the
	// caller only waits until what was queued before it is durable.
	Reply []*pb.Block
}

// Empty reports whether there is nothing to persist.
func (o Output) Empty() bool {
	return len(o.Blocks) == 0 && len(o.Settlements) == 0 && len(o.Notes) == 0 && o.Evidence == nil
}

// SettleResult says what happened to each claim of a Settle request.
type SettleResult struct {
	Released [][]byte // receipt hashes paid now
	Pending  [][]byte // filed; payable after the dispute window unless disputed
	Rejected []error  // per claim, nil when released or pending
}

type account struct {
	st      ChainState
	refs    MapRefs
	digests [][]byte // per seq: sha256 of the owner-signed bytes and signature
	// mine[seq]: this notary countersigned the block (a retry of it is
	// answered again; a block another home countersigned is not).
	mine []bool
	// homes: the account's home authorities, now and before a hand-over
	// (where its out-blocks may be claimed, ClaimHome).
	homes   map[peer.ID]bool
	refused bool
}

type escrow struct {
	client, worker peer.ID
	id             string
	expiresMs      int64
	lockSeq        uint64 // the ESCROW_LOCK's seq on the client's chain
	remaining      uint64 // locked minus released and refunded
	pending        uint64 // reserved for filed receipts
	frozen         uint64 // reserved for disputed receipts
	// jobs holds the jobs that have a receipt filed or paid: one receipt
	// per job is paid, a re-run's second receipt is refused.
	jobs map[string]bool
}

type receiptState struct {
	claim    *pb.ReceiptClaim
	price    uint64
	key      EscrowKey
	filedMs  int64
	disputed bool
	paid     bool
}

// Notary is an authority's notary: a deterministic state machine of (state,
// request, now) → (Output, error). It holds every account homed at this
// authority (head, balance, used references), the escrows it holds and the
// receipts filed with it. It performs no I/O; the caller persists Output.
// Methods are safe for concurrent use.
type Notary struct {
	key       crypto.PrivKey
	id        peer.ID
	trust     TrustSet
	operators map[peer.ID]bool
	window    time.Duration
	minLock   time.Duration
	grant     GrantPolicy

	mu sync.Mutex
	// guarded by mu
	accounts  map[peer.ID]*account
	escrows   map[EscrowKey]*escrow
	receipts  map[string]*receiptState
	granted   map[peer.ID]int64 // last grant, unix ms
	grantLog  []int64           // grant times in the last hour
	evidence  []*pb.ForkEvidence
	restoring bool
}

// NewNotary builds a notary with no state. Call Restore with what the store
// holds, or Genesis for a new authority.
func NewNotary(cfg NotaryConfig) (*Notary, error) {
	id, err := peer.IDFromPrivateKey(cfg.Key)
	if err != nil {
		return nil, err
	}
	n := &Notary{
		key: cfg.Key, id: id, trust: NewTrustSet(id), operators: map[peer.ID]bool{id: true},
		window: cfg.DisputeWindow, minLock: cfg.MinLockLifetime, grant: cfg.Grant,
		accounts: map[peer.ID]*account{}, escrows: map[EscrowKey]*escrow{},
		receipts: map[string]*receiptState{}, granted: map[peer.ID]int64{},
	}
	for t := range cfg.Trust {
		n.trust[t] = struct{}{}
	}
	for _, o := range cfg.Operators {
		n.operators[o] = true
	}
	if n.window <= 0 {
		n.window = DefaultDisputeWindow
	}
	if n.minLock == 0 {
		n.minLock = DefaultMinLockLifetime
	}
	return n, nil
}

// ID is the authority's peer ID.
func (n *Notary) ID() peer.ID { return n.id }

// Trust returns the notary's trust set (do not modify).
func (n *Notary) Trust() TrustSet { return n.trust }

func ownerDigest(b *pb.Block) []byte {
	h := sha256.New()
	h.Write(OwnerSigningBytes(b))
	h.Write(b.OwnerSig)
	return h.Sum(nil)
}

// applyLocked validates b against the account's state and applies it.
// An escrow lock this notary countersigned opens its escrow, unless the
// escrow is known already (an account moving back to a former home
// brings its old locks with it: they must not be opened again). When
// restoring, the authority's own release and refund blocks debit the
// escrows they name; a line that debits an unknown escrow or more than it
// holds is a store that fails the audit: refused.
func (n *Notary) applyLocked(a *account, b *pb.Block) error {
	if n.restoring && (b.Kind == pb.BlockKind_BLOCK_ESCROW_RELEASE || b.Kind == pb.BlockKind_BLOCK_ESCROW_REFUND) && peer.ID(b.Account) == n.id {
		need := map[EscrowKey]uint64{}
		for _, l := range b.Lines {
			if l == nil {
				return ErrMalformed
			}
			k := EscrowKey{peer.ID(l.Client), l.Escrow}
			e := n.escrows[k]
			if e == nil {
				return fmt.Errorf("%w: %s/%s", ErrUnknownEscrow, k.Client, k.Escrow)
			}
			s, err := add(need[k], l.Amount)
			if err != nil {
				return err
			}
			if s > e.remaining {
				return fmt.Errorf("%w: escrow %s/%s holds %d, lines debit %d", ErrOverdraft, k.Client, k.Escrow, e.remaining, s)
			}
			need[k] = s
		}
		if err := a.st.Apply(b, n.trust, a.refs); err != nil {
			return err
		}
		for k, amt := range need {
			n.escrows[k].remaining -= amt
		}
	} else if err := a.st.Apply(b, n.trust, a.refs); err != nil {
		return err
	}
	a.digests = append(a.digests, ownerDigest(b))
	a.mine = append(a.mine, peer.ID(b.Notary) == n.id)
	if b.Kind == pb.BlockKind_BLOCK_GENESIS || b.Kind == pb.BlockKind_BLOCK_HANDOVER {
		if a.homes == nil {
			a.homes = map[peer.ID]bool{}
		}
		a.homes[peer.ID(b.Authority)] = true
	}
	if b.Kind == pb.BlockKind_BLOCK_ESCROW_LOCK && peer.ID(b.Notary) == n.id {
		k := EscrowKey{peer.ID(b.Account), b.Reference}
		if n.escrows[k] == nil {
			n.escrows[k] = &escrow{
				client: k.Client, worker: peer.ID(b.Counterparty), id: b.Reference,
				expiresMs: b.ExpiresMs, lockSeq: b.Seq, remaining: b.Amount, jobs: map[string]bool{},
			}
		}
	}
	return nil
}

// Genesis opens the authority's own chain (self-homed, self-notarised).
func (n *Notary) Genesis(now time.Time) (Output, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.accounts[n.id] != nil {
		return Output{}, ErrAccountExists
	}
	b := &pb.Block{Kind: pb.BlockKind_BLOCK_GENESIS, Authority: []byte(n.id), TimestampMs: now.UnixMilli()}
	if err := SignOwner(b, n.key); err != nil {
		return Output{}, err
	}
	a := &account{refs: MapRefs{}}
	if err := n.applyLocked(a, b); err != nil {
		return Output{}, err
	}
	n.accounts[n.id] = a
	return Output{Blocks: []*pb.Block{Clone(b)}}, nil
}

// RestoreState is what a notary is rebuilt from after a restart.
type RestoreState struct {
	Chains      [][]*pb.Block // every chain the store holds, own chain included
	Settlements []*pb.Settlement
	Notes       []*Note
	Evidence    []*pb.ForkEvidence
}

// Restore rebuilds the notary state from stored data, verifying every
// chain. Call it once, on a new Notary.
func (n *Notary) Restore(rs RestoreState) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.restoring = true
	defer func() { n.restoring = false }()
	var own []*pb.Block
	for _, chain := range rs.Chains {
		if len(chain) == 0 {
			continue
		}
		if peer.ID(chain[0].Account) == n.id {
			own = chain // after the locks it debits
			continue
		}
		if err := n.restoreChainLocked(chain); err != nil {
			return err
		}
	}
	if own != nil {
		if err := n.restoreChainLocked(own); err != nil {
			return err
		}
	}
	for _, s := range rs.Settlements {
		for _, c := range s.Claims {
			r, err := VerifyReceipt(c.Receipt)
			if err != nil {
				return err
			}
			k := EscrowKey{peer.ID(r.Client), EscrowID(r.BidId)}
			h := ReceiptHash(c.Receipt)
			n.receipts[string(h)] = &receiptState{claim: c, price: r.Price, key: k, paid: true}
			if e := n.escrows[k]; e != nil {
				e.jobs[r.JobId] = true
			}
		}
	}
	for _, nt := range rs.Notes {
		r, err := VerifyReceipt(nt.Claim.GetReceipt())
		if err != nil {
			return err
		}
		if rs := n.receipts[string(nt.Hash)]; rs != nil && rs.paid {
			continue
		}
		k := EscrowKey{peer.ID(r.Client), EscrowID(r.BidId)}
		prev := n.receipts[string(nt.Hash)]
		e := n.escrows[k]
		if e != nil {
			if prev == nil {
				e.pending += r.Price
				e.jobs[r.JobId] = true
			}
			if nt.Disputed && (prev == nil || !prev.disputed) {
				e.pending -= r.Price
				e.frozen += r.Price
			}
		}
		n.receipts[string(nt.Hash)] = &receiptState{claim: nt.Claim, price: r.Price, key: k, filedMs: nt.FiledMs, disputed: nt.Disputed}
	}
	for _, ev := range rs.Evidence {
		if a := n.accounts[peer.ID(ev.GetSecond().GetAccount())]; a != nil {
			a.refused = true
		}
		n.evidence = append(n.evidence, ev)
	}
	return nil
}

func (n *Notary) restoreChainLocked(chain []*pb.Block) error {
	a := &account{refs: MapRefs{}}
	for _, b := range chain {
		if err := n.applyLocked(a, b); err != nil {
			return blockErr(b, err)
		}
	}
	n.accounts[a.st.Account] = a
	return nil
}

// ownBlockLocked signs and appends a block to the authority's own chain.
func (n *Notary) ownBlockLocked(b *pb.Block, now time.Time) (*pb.Block, error) {
	own := n.accounts[n.id]
	if own == nil {
		return nil, fmt.Errorf("%w: authority chain has no genesis", ErrUnknownAccount)
	}
	b.Account = []byte(n.id)
	b.Seq = own.st.Next()
	b.Prev = own.st.Head
	b.TimestampMs = max(now.UnixMilli(), own.st.LastMs)
	if err := SignOwner(b, n.key); err != nil {
		return nil, err
	}
	if err := n.applyLocked(own, b); err != nil {
		return nil, blockErr(b, err)
	}
	return Clone(b), nil
}

// Head returns what the notary knows of an account.
func (n *Notary) Head(id peer.ID) (*pb.AccountHead, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a := n.accounts[id]
	if a == nil {
		return nil, ErrUnknownAccount
	}
	return &pb.AccountHead{Account: []byte(id), Seq: a.st.Seq, Hash: bytes.Clone(a.st.Head), Balance: a.st.Balance, Home: []byte(a.st.Home)}, nil
}

// Refused reports whether an account is refused after a fork.
func (n *Notary) Refused(id peer.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	a := n.accounts[id]
	return a != nil && a.refused
}
