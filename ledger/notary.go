package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// DefaultDisputeWindow is how long a client has to acknowledge or dispute a
// filed receipt before it is paid without its acknowledgement.
const DefaultDisputeWindow = 10 * time.Minute

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
	refused bool
}

type escrow struct {
	client, worker peer.ID
	id             string
	expiresMs      int64
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
		window: cfg.DisputeWindow, grant: cfg.Grant,
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
func (n *Notary) applyLocked(a *account, b *pb.Block) error {
	if err := a.st.Apply(b, n.trust, a.refs); err != nil {
		return err
	}
	a.digests = append(a.digests, ownerDigest(b))
	if b.Kind == pb.BlockKind_BLOCK_ESCROW_LOCK && peer.ID(b.Notary) == n.id {
		k := EscrowKey{peer.ID(b.Account), b.Reference}
		n.escrows[k] = &escrow{
			client: k.Client, worker: peer.ID(b.Counterparty), id: b.Reference,
			expiresMs: b.ExpiresMs, remaining: b.Amount, jobs: map[string]bool{},
		}
	}
	// Settle and Refund debit escrows themselves; replaying the own chain
	// does it here.
	if n.restoring && (b.Kind == pb.BlockKind_BLOCK_ESCROW_RELEASE || b.Kind == pb.BlockKind_BLOCK_ESCROW_REFUND) && peer.ID(b.Account) == n.id {
		for _, l := range b.Lines {
			if e := n.escrows[EscrowKey{peer.ID(l.Client), l.Escrow}]; e != nil {
				e.remaining -= min(l.Amount, e.remaining)
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

// Countersign countersigns an owner-signed block of an account homed here.
// It countersigns only a block that extends the head it knows (seq =
// head+1, prev = head hash) and keeps the balance non-negative; a
// TRANSFER_IN must come with its source out-block, countersigned (or
// authored) by a trusted authority, paid to this account and not claimed
// before. A block already countersigned is countersigned again (retries are
// idempotent); a different owner-signed block at a known seq is a fork: the
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
			if err := Countersign(c, n.key); err != nil {
				return Output{}, err
			}
			return Output{Blocks: []*pb.Block{c}}, nil
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
		if err := n.checkSource(c, req.GetSource()); err != nil {
			return Output{}, blockErr(c, err)
		}
	case pb.BlockKind_BLOCK_ESCROW_LOCK:
		if n.escrows[EscrowKey{peer.ID(c.Account), c.Reference}] != nil {
			return Output{}, blockErr(c, ErrReplay)
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

func (n *Notary) checkSource(in, src *pb.Block) error {
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
	return nil
}

// Settle pays workers for delivered jobs. Each claim is a worker-signed
// receipt for a job under an escrow held here. It is paid now if the
// client acknowledged it (claim.client_ack) or it was filed at least the
// dispute window ago and not disputed; otherwise it is filed (pending) and
// its price reserved. Payable claims are batched: one ESCROW_RELEASE per
// worker on the authority's own chain (reference = hex Merkle root of the
// receipt hashes, lines per escrow) with its pb.Settlement beside it.
func (n *Notary) Settle(req *pb.SettleRequest, now time.Time) (Output, SettleResult, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out Output
	var res SettleResult
	type pay struct {
		claims []*pb.ReceiptClaim
		hashes [][]byte
		lines  map[EscrowKey]uint64
		order  []EscrowKey
	}
	byWorker := map[peer.ID]*pay{}
	var workers []peer.ID
	ms := now.UnixMilli()
	seen := map[string]bool{}
	for _, c := range req.GetClaims() {
		err := func() error {
			r, err := VerifyReceipt(c.GetReceipt())
			if err != nil {
				return err
			}
			h := ReceiptHash(c.Receipt)
			if seen[string(h)] {
				return ErrReplay
			}
			seen[string(h)] = true
			k := EscrowKey{peer.ID(r.Client), EscrowID(r.BidId)}
			e := n.escrows[k]
			if e == nil {
				return ErrUnknownEscrow
			}
			if e.worker != peer.ID(r.Worker) {
				return fmt.Errorf("%w: receipt from another worker", ErrEscrowMismatch)
			}
			rs := n.receipts[string(h)]
			if rs != nil && rs.paid {
				return ErrAlreadyPaid
			}
			if rs == nil && e.jobs[r.JobId] {
				return fmt.Errorf("%w: job %q already has a receipt filed or paid", ErrReplay, r.JobId)
			}
			acked := len(c.ClientAck) > 0 && verifyBy(e.client, ClientAckBytes(h), c.ClientAck)
			if rs == nil {
				if r.Price > e.remaining-e.pending-e.frozen {
					return fmt.Errorf("%w: escrow %s", ErrOverdraft, e.id)
				}
				if !acked {
					rs = &receiptState{claim: c, price: r.Price, key: k, filedMs: ms}
					n.receipts[string(h)] = rs
					e.pending += r.Price
					e.jobs[r.JobId] = true
					out.Notes = append(out.Notes, &Note{Hash: h, Claim: c, FiledMs: ms})
					res.Pending = append(res.Pending, h)
					return nil
				}
				rs = &receiptState{claim: c, price: r.Price, key: k, filedMs: ms}
				n.receipts[string(h)] = rs
			} else {
				switch {
				case acked && rs.disputed:
					e.frozen -= rs.price
				case acked:
					e.pending -= rs.price
				case rs.disputed:
					return ErrDisputed
				case ms-rs.filedMs < n.window.Milliseconds():
					res.Pending = append(res.Pending, h)
					return nil
				default:
					e.pending -= rs.price
				}
				if acked {
					rs.claim = c
				}
			}
			rs.paid = true
			e.remaining -= rs.price
			e.jobs[r.JobId] = true
			p := byWorker[e.worker]
			if p == nil {
				p = &pay{lines: map[EscrowKey]uint64{}}
				byWorker[e.worker] = p
				workers = append(workers, e.worker)
			}
			if _, ok := p.lines[k]; !ok {
				p.order = append(p.order, k)
			}
			p.lines[k] += rs.price
			p.claims = append(p.claims, rs.claim)
			p.hashes = append(p.hashes, h)
			res.Released = append(res.Released, h)
			return nil
		}()
		res.Rejected = append(res.Rejected, err)
	}
	for _, w := range workers {
		p := byWorker[w]
		b := &pb.Block{Kind: pb.BlockKind_BLOCK_ESCROW_RELEASE, Counterparty: []byte(w), Reference: hex.EncodeToString(MerkleRoot(p.hashes))}
		for _, k := range p.order {
			b.Lines = append(b.Lines, &pb.EscrowLine{Client: []byte(k.Client), Escrow: k.Escrow, Amount: p.lines[k]})
			b.Amount += p.lines[k]
		}
		rb, err := n.ownBlockLocked(b, now)
		if err != nil {
			return out, res, err // unreachable unless state is corrupt
		}
		out.Blocks = append(out.Blocks, rb)
		out.Settlements = append(out.Settlements, &pb.Settlement{BlockHash: Hash(rb), Claims: p.claims})
	}
	return out, res, nil
}

// Dispute marks a filed receipt as disputed by its client, within the
// dispute window: its price stays frozen in escrow until the client
// acknowledges it.
func (n *Notary) Dispute(req *pb.DisputeRequest, now time.Time) (Output, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	rs := n.receipts[string(req.GetReceiptHash())]
	if rs == nil {
		return Output{}, fmt.Errorf("%w: receipt not filed", ErrNotFound)
	}
	if rs.paid {
		return Output{}, ErrAlreadyPaid
	}
	if peer.ID(req.GetClient()) != rs.key.Client || !verifyBy(rs.key.Client, DisputeBytes(req.ReceiptHash), req.ClientSig) {
		return Output{}, fmt.Errorf("%w: dispute not signed by the client", ErrBadSignature)
	}
	if rs.disputed {
		return Output{}, nil
	}
	if now.UnixMilli()-rs.filedMs >= n.window.Milliseconds() {
		return Output{}, fmt.Errorf("%w: dispute window closed", ErrBadRequest)
	}
	rs.disputed = true
	if e := n.escrows[rs.key]; e != nil {
		e.pending -= rs.price
		e.frozen += rs.price
	}
	return Output{Notes: []*Note{{Hash: req.ReceiptHash, Claim: rs.claim, FiledMs: rs.filedMs, Disputed: true}}}, nil
}

// Refund returns the unreserved rest of an escrow to its client: after
// expiry, or before with the worker's signed consent for req.Amount. The
// Output holds an ESCROW_REFUND on the authority's chain, which the client
// claims with TRANSFER_IN.
func (n *Notary) Refund(req *pb.RefundRequest, now time.Time) (Output, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := EscrowKey{peer.ID(req.GetClient()), req.GetEscrow()}
	e := n.escrows[k]
	if e == nil {
		return Output{}, ErrUnknownEscrow
	}
	avail := e.remaining - e.pending - e.frozen
	amount := avail
	if len(req.WorkerConsent) > 0 {
		if !verifyBy(e.worker, RefundConsentBytes(k.Client, k.Escrow, req.Amount), req.WorkerConsent) {
			return Output{}, fmt.Errorf("%w: worker consent", ErrBadSignature)
		}
		if req.Amount > avail {
			return Output{}, fmt.Errorf("%w: escrow %s", ErrOverdraft, k.Escrow)
		}
		amount = req.Amount
	} else if now.UnixMilli() < e.expiresMs {
		return Output{}, ErrEscrowNotExpired
	}
	if amount == 0 {
		return Output{}, fmt.Errorf("%w: nothing to refund", ErrBadRequest)
	}
	own := n.accounts[n.id]
	if own == nil {
		return Output{}, fmt.Errorf("%w: authority chain has no genesis", ErrUnknownAccount)
	}
	ref := "refund:" + k.Escrow + ":" + strconv.FormatUint(own.st.Next(), 10)
	if len(req.WorkerConsent) > 0 {
		// A consent pays one refund: its reference, unique on the
		// chain (ErrReplay), names it.
		h := sha256.Sum256(append(RefundConsentBytes(k.Client, k.Escrow, req.Amount), req.WorkerConsent...))
		ref = "consent:" + hex.EncodeToString(h[:])
	}
	b := &pb.Block{Kind: pb.BlockKind_BLOCK_ESCROW_REFUND, Amount: amount, Counterparty: []byte(k.Client), Reference: ref,
		Lines: []*pb.EscrowLine{{Client: []byte(k.Client), Escrow: k.Escrow, Amount: amount}}}
	rb, err := n.ownBlockLocked(b, now)
	if err != nil {
		return Output{}, err
	}
	e.remaining -= amount
	return Output{Blocks: []*pb.Block{rb}}, nil
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

// EscrowState is an escrow as the notary holds it.
type EscrowState struct {
	Key                        EscrowKey
	Worker                     peer.ID
	ExpiresMs                  int64
	Remaining, Pending, Frozen uint64
}

// Escrow returns an escrow held here.
func (n *Notary) Escrow(k EscrowKey) (EscrowState, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.escrows[k]
	if e == nil {
		return EscrowState{}, false
	}
	return EscrowState{Key: k, Worker: e.worker, ExpiresMs: e.expiresMs, Remaining: e.remaining, Pending: e.pending, Frozen: e.frozen}, true
}

// Refused reports whether an account is refused after a fork.
func (n *Notary) Refused(id peer.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	a := n.accounts[id]
	return a != nil && a.refused
}
