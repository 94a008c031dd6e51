package ledgersvc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// InsufficientFundsError is the clear refusal of a client that cannot pay
// for what it is about to award.
type InsufficientFundsError struct {
	Need, Have uint64
}

func (e *InsufficientFundsError) Error() string {
	return fmt.Sprintf("not enough points: need %d points, have %d", e.Need, e.Have)
}

// Unwrap makes the error match ledger.ErrOverdraft.
func (e *InsufficientFundsError) Unwrap() error { return ledger.ErrOverdraft }

// ErrNoHome means the node knows no authority to open its account with.
var ErrNoHome = errors.New("ledgersvc: no home authority (give --bootstrap)")

// ErrNotArrived means a hand-over was countersigned by the old home but the
// new home has not taken the account yet: the account registers there
// before its next operation (and after a restart).
var ErrNotArrived = errors.New("ledgersvc: the new home has not taken the handed-over account yet")

// AccountOption configures an Account.
type AccountOption func(*accountOptions)

type accountOptions struct {
	log         *events.Log
	now         func() time.Time
	settleEvery time.Duration // flush acknowledged receipts at least this often
	settleBatch int           // ... or when this many are ready
	ackGrace    time.Duration // file an unacknowledged receipt after this
	retryFiled  time.Duration // re-present a filed receipt this often
	refundEvery time.Duration // ask for the rest of expired escrows this often
	beforeStore func(*pb.Block)
}

// WithAccountEvents sets the event log.
func WithAccountEvents(l *events.Log) AccountOption {
	return func(o *accountOptions) { o.log = l }
}

// WithAccountClock injects time (tests).
func WithAccountClock(now func() time.Time) AccountOption {
	return func(o *accountOptions) { o.now = now }
}

// WithSettlement sets the worker's settlement batching: a Settle goes out
// every `every` or when `batch` acknowledged receipts are ready; a receipt
// the client has not acknowledged after `grace` is filed without it and
// re-presented every `retry` until the authority pays it (after its
// dispute window).
func WithSettlement(every time.Duration, batch int, grace, retry time.Duration) AccountOption {
	return func(o *accountOptions) {
		o.settleEvery, o.settleBatch, o.ackGrace, o.retryFiled = every, batch, grace, retry
	}
}

// WithRefundEvery sets how often a client asks its authority for the
// unpaid rest of its expired escrows (RefundExpired; default 1 minute).
func WithRefundEvery(d time.Duration) AccountOption {
	return func(o *accountOptions) { o.refundEvery = d }
}

// WithBeforeStore calls f with each block the home authority countersigned
// for us, after its reply arrived and before the block is stored. Crash
// tests kill the process there: the authority has the block, we do not,
// and the next start must catch up (resync) before it signs anything.
func WithBeforeStore(f func(*pb.Block)) AccountOption {
	return func(o *accountOptions) { o.beforeStore = f }
}

// Account is a node's own account: its chain (in its store), opened at its
// home authority, and the operations clients and workers need. Safe for
// concurrent use; chain writes are serialised.
type Account struct {
	h     host.Host
	key   crypto.PrivKey
	id    peer.ID
	store ledger.Store
	trust ledger.TrustSet
	auths []peer.ID // trusted authorities, scanned for points paid to us
	o     accountOptions
	cur   atomic.Value // peer.ID: home, for Home without the chain lock

	mu sync.Mutex // serialises chain writes; guards the fields below
	// guarded by mu
	home    peer.ID // the chain's home (its genesis, then its last hand-over)
	w       *ledger.Wallet
	unsure  bool            // a request may have been countersigned unheard: resync first
	arrive  bool            // handed over: make sure the new home took the chain first
	claimed map[string]bool // out-blocks claimed (hex hash)
	cursor  map[peer.ID]uint64
	locks   map[string]*lockInfo // our open escrows by id

	settle *settler

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type lockInfo struct {
	authority peer.ID
	amount    uint64
	expires   time.Time
}

// OpenAccount loads the node's chain from store (which the caller owns and
// closes after Close). home is the authority the account is opened with
// (named in its genesis) and trust the authorities whose signatures count.
// It does no I/O on the network: Ready registers, and every operation
// calls it.
func OpenAccount(h host.Host, key crypto.PrivKey, store ledger.Store, trust ledger.TrustSet, home peer.ID, opts ...AccountOption) (*Account, error) {
	o := accountOptions{now: time.Now, settleEvery: 2 * time.Second, settleBatch: 256, ackGrace: 30 * time.Second,
		retryFiled: time.Minute, refundEvery: time.Minute}
	for _, f := range opts {
		f(&o)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ledgersvc: %w", err)
	}
	var chain []*pb.Block
	if c, err := store.Chain(id, 0, 0); err == nil {
		chain = c
	} else if !errors.Is(err, ledger.ErrNotFound) {
		return nil, fmt.Errorf("ledgersvc: load chain: %w", err)
	}
	w, err := ledger.NewWallet(key, trust, chain)
	if err != nil {
		return nil, fmt.Errorf("ledgersvc: stored chain: %w", err)
	}
	if st := w.State(); st.Home != "" {
		home = st.Home
	}
	if home == "" {
		return nil, ErrNoHome
	}
	a := &Account{h: h, key: key, id: id, store: store, trust: trust, home: home, o: o, w: w,
		claimed: map[string]bool{}, cursor: map[peer.ID]uint64{}, locks: map[string]*lockInfo{}}
	for t := range trust {
		a.auths = append(a.auths, t)
	}
	a.cur.Store(home)
	for _, b := range chain {
		a.noteLocked(b)
	}
	st := w.State()
	a.unsure = !st.Empty() // the last request before a stop may have been decided
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.settle = newSettler(a)
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		a.settle.loop(a.ctx)
	}()
	go func() {
		defer a.wg.Done()
		a.refundLoop(a.ctx)
	}()
	return a, nil
}

// Close stops the settlement loop (after a last flush attempt).
func (a *Account) Close() error {
	a.cancel()
	a.wg.Wait()
	return nil
}

// ID is the account.
func (a *Account) ID() peer.ID { return a.id }

// Home is the account's home authority: named in its genesis, moved by
// its last hand-over (the chain says where home is).
func (a *Account) Home() peer.ID { return a.cur.Load().(peer.ID) }

// Ready opens the account at its home authority if it is not yet, and
// catches up with the home's copy of the chain after a restart.
func (a *Account) Ready(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.readyLocked(ctx)
}

func (a *Account) readyLocked(ctx context.Context) error {
	if st := a.w.State(); st.Empty() {
		return a.registerLocked(ctx)
	}
	if a.arrive {
		if err := a.arriveLocked(ctx); err != nil {
			return err
		}
	}
	if a.unsure {
		if err := a.resyncLocked(ctx); err != nil {
			return err
		}
		if a.arrive { // the resync caught up with a hand-over
			return a.arriveLocked(ctx)
		}
	}
	return nil
}

// arriveLocked makes sure the home the chain was handed over to holds it:
// if the home does not know the account as its own, it registers the
// continuation there (the whole chain, which the new home verifies,
// including the old home's countersigned hand-over). A repeated
// registration changes nothing at the home.
func (a *Account) arriveLocked(ctx context.Context) error {
	resp, err := Call(ctx, a.h, a.home, &pb.LedgerRequest{Req: &pb.LedgerRequest_GetHead{GetHead: &pb.GetHeadRequest{Account: []byte(a.id)}}})
	switch {
	case err == nil && peer.ID(resp.GetHead().GetHome()) == a.home:
	case err == nil && resp.GetHead().GetSeq() > a.w.State().Seq:
		// The home knows more of the chain than we stored (a reply we
		// lost): the resync catches up first, hand-over included.
		a.unsure = true
		return nil
	case err == nil, errors.Is(err, protocols.Code(pb.ErrorCode_NOT_FOUND)):
		req := &pb.LedgerRequest{Req: &pb.LedgerRequest_Register{Register: &pb.RegisterAccountRequest{Chain: a.w.Blocks()}}}
		if _, err := Call(ctx, a.h, a.home, req); err != nil {
			return fmt.Errorf("%w: register at %s: %w", ErrNotArrived, a.home, err)
		}
		a.o.log.Emit(events.Event{Kind: events.LedgerBlock, Peer: a.home.String(), Proto: string(ID), Attrs: map[string]any{
			"arrived": true, "home": a.home.String(), "seq": a.w.State().Seq, "balance": a.w.State().Balance}})
	default:
		return fmt.Errorf("%w: ask %s: %w", ErrNotArrived, a.home, err)
	}
	a.arrive = false
	return nil
}

// Handover moves the account's home to the trusted authority to: it signs
// a HANDOVER naming it, has the current (old) home countersign it — the old
// home refuses while the account has escrow open (an error matching
// ledger.ErrEscrowsOpen) and serves the account no more after it — stores
// it, and registers the chain with the new home, which countersigns from
// the next block on. It returns the countersigned hand-over. If the new
// home could not be reached the error matches ErrNotArrived: the hand-over
// stands and the registration is retried before the next operation.
func (a *Account) Handover(ctx context.Context, to peer.ID) (*pb.Block, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.readyLocked(ctx); err != nil {
		return nil, err
	}
	b, err := a.w.Handover(to, a.o.now())
	if err != nil {
		return nil, fmt.Errorf("ledgersvc: hand-over: %w", err)
	}
	from := a.home
	ho, err := a.countersignLocked(ctx, &pb.CountersignRequest{Block: b})
	switch {
	case errors.Is(err, protocols.Code(pb.ErrorCode_LEDGER_ESCROWS_OPEN)):
		return nil, fmt.Errorf("ledgersvc: hand-over: %w: %w", ledger.ErrEscrowsOpen, err)
	case errors.Is(err, protocols.Code(pb.ErrorCode_LEDGER_UNTRUSTED)):
		return nil, fmt.Errorf("ledgersvc: hand-over: %w: %w", ledger.ErrUntrustedNotary, err)
	case err != nil:
		return nil, fmt.Errorf("ledgersvc: hand-over at %s: %w", from, err)
	}
	if err := a.arriveLocked(ctx); err != nil {
		return ho, err
	}
	return ho, nil
}

func (a *Account) registerLocked(ctx context.Context) error {
	g, err := a.w.Genesis(a.home, a.o.now())
	if err != nil {
		return err
	}
	resp, err := Call(ctx, a.h, a.home, &pb.LedgerRequest{Req: &pb.LedgerRequest_Register{Register: &pb.RegisterAccountRequest{Chain: []*pb.Block{g}}}})
	var re *protocols.RemoteError
	if errors.As(err, &re) && strings.Contains(re.Message, ledger.ErrAccountExists.Error()) {
		// Registered before a crash that lost the reply: read it back.
		return a.resyncLocked(ctx)
	}
	if err != nil {
		return fmt.Errorf("ledgersvc: open account at %s: %w", a.home, err)
	}
	if len(resp.Blocks) == 0 {
		return fmt.Errorf("ledgersvc: open account: %w: no genesis in reply", ledger.ErrBadRequest)
	}
	if err := a.acceptLocked(resp.Blocks[:1]); err != nil {
		return err
	}
	// A grant: the authority's TRANSFER_OUT to us, claimed at once.
	for _, b := range resp.Blocks[1:] {
		if a.paysUs(b) {
			if err := a.claimLocked(ctx, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// resyncLocked reads what the home authority holds of our chain beyond
// what we stored: blocks it countersigned whose replies we never stored.
func (a *Account) resyncLocked(ctx context.Context) error {
	st := a.w.State()
	next := st.Next()
	blocks, err := FetchChain(ctx, a.h, a.home, a.id, next)
	if err != nil {
		return fmt.Errorf("ledgersvc: catch up with %s: %w", a.home, err)
	}
	if len(blocks) > 0 {
		if err := a.acceptLocked(blocks); err != nil {
			return err
		}
	}
	a.unsure = false
	// A resync is always logged, with how far it had to catch up: blocks
	// the home countersigned whose replies never reached our store.
	a.o.log.Emit(events.Event{Kind: events.LedgerBlock, Peer: a.home.String(), Proto: string(ID), Attrs: map[string]any{
		"resync": true, "from_seq": next, "caught_up": len(blocks), "seq": a.w.State().Seq, "balance": a.w.State().Balance}})
	return nil
}

// acceptLocked validates blocks as the next of our chain and stores them
// (one fsync).
func (a *Account) acceptLocked(blocks []*pb.Block) error {
	// The store validates every block against the chain and our trust set
	// (an untrusted countersignature is refused here) before it keeps it.
	if err := a.store.AppendBatch(blocks); err != nil {
		return fmt.Errorf("ledgersvc: block from authority refused: %w", err)
	}
	for _, b := range blocks {
		if err := a.w.Accept(b); err != nil {
			return fmt.Errorf("ledgersvc: %w", err) // unreachable: the store validated it
		}
		a.noteLocked(b)
		emitBlock(a.o.log, b, a.w.State().Balance, true)
	}
	return nil
}

// noteLocked indexes one block of our chain: claimed out-blocks and our
// escrows (rebuilt from the chain after a restart, so expired ones are
// still refunded).
func (a *Account) noteLocked(b *pb.Block) {
	switch b.Kind {
	case pb.BlockKind_BLOCK_TRANSFER_IN:
		a.claimed[b.Reference] = true
	case pb.BlockKind_BLOCK_ESCROW_LOCK:
		a.locks[b.Reference] = &lockInfo{authority: peer.ID(b.Notary), amount: b.Amount, expires: time.UnixMilli(b.ExpiresMs)}
	case pb.BlockKind_BLOCK_HANDOVER:
		a.home = peer.ID(b.Authority)
		a.cur.Store(a.home)
		a.arrive = true
	}
}

// countersignLocked has the home countersign b and stores the result.
func (a *Account) countersignLocked(ctx context.Context, req *pb.CountersignRequest) (*pb.Block, error) {
	resp, err := Call(ctx, a.h, a.home, &pb.LedgerRequest{Req: &pb.LedgerRequest_Countersign{Countersign: req}})
	if err != nil {
		var te *TransportError
		if errors.As(err, &te) || errors.Is(err, protocols.Code(pb.ErrorCode_INTERNAL)) {
			a.unsure = true
		}
		return nil, err
	}
	if len(resp.Blocks) != 1 {
		a.unsure = true
		return nil, fmt.Errorf("ledgersvc: countersign: %w: %d blocks in reply", ledger.ErrBadRequest, len(resp.Blocks))
	}
	if a.o.beforeStore != nil {
		a.o.beforeStore(resp.Blocks[0])
	}
	if err := a.acceptLocked(resp.Blocks); err != nil {
		a.unsure = true
		return nil, err
	}
	return resp.Blocks[0], nil
}

func (a *Account) paysUs(b *pb.Block) bool {
	switch b.Kind {
	case pb.BlockKind_BLOCK_TRANSFER_OUT, pb.BlockKind_BLOCK_ESCROW_RELEASE, pb.BlockKind_BLOCK_ESCROW_REFUND:
		return peer.ID(b.Counterparty) == a.id
	}
	return false
}

// Claim appends a TRANSFER_IN for an out-block paid to us (a transfer,
// a release or a refund), countersigned by our home authority, which
// checks that a trusted authority wrote or countersigned src.
func (a *Account) Claim(ctx context.Context, src *pb.Block) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.readyLocked(ctx); err != nil {
		return err
	}
	return a.claimLocked(ctx, src)
}

func (a *Account) claimLocked(ctx context.Context, src *pb.Block) error {
	if a.claimed[ledger.HashRef(src)] {
		return nil
	}
	req, err := a.w.Claim(src, a.o.now())
	if err != nil {
		return fmt.Errorf("ledgersvc: claim: %w", err)
	}
	_, err = a.countersignLocked(ctx, req)
	if errors.Is(err, protocols.Code(pb.ErrorCode_LEDGER_INVALID_BLOCK)) && a.claimedUpstream(err) {
		a.claimed[ledger.HashRef(src)] = true
		return nil
	}
	return err
}

func (a *Account) claimedUpstream(err error) bool {
	var re *protocols.RemoteError
	return errors.As(err, &re) && strings.Contains(re.Message, ledger.ErrReplay.Error())
}

// Sync claims every out-block paid to us on the trusted authorities' own
// chains (mints, grants, releases, refunds) not claimed yet.
func (a *Account) Sync(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.readyLocked(ctx); err != nil {
		return err
	}
	var errs []error
	for _, auth := range a.auths {
		blocks, err := FetchChain(ctx, a.h, auth, auth, a.cursor[auth])
		for _, b := range blocks {
			if a.paysUs(b) && !a.claimed[ledger.HashRef(b)] {
				if cerr := a.claimLocked(ctx, b); cerr != nil {
					errs = append(errs, cerr)
					err = nil
					break
				}
			}
			a.cursor[auth] = b.Seq + 1
		}
		if err != nil && auth == a.home {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Balance syncs (claims what was paid to us) and returns the balance.
func (a *Account) Balance(ctx context.Context) (uint64, error) {
	err := a.Sync(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.w.State().Balance, err
}

// State is the chain state as stored (no network).
func (a *Account) State() ledger.ChainState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.w.State()
}

// Chain returns the account's blocks (copies).
func (a *Account) Chain() []*pb.Block {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*pb.Block, len(a.w.Blocks()))
	for i, b := range a.w.Blocks() {
		out[i] = ledger.Clone(b)
	}
	return out
}

// Lock locks amount in escrow for worker under the award bidID, with the
// home authority, expiring at expires. A short balance is an
// *InsufficientFundsError before anything is sent.
func (a *Account) Lock(ctx context.Context, worker peer.ID, bidID []byte, amount uint64, expires time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.readyLocked(ctx); err != nil {
		return err
	}
	esc := ledger.EscrowID(bidID)
	if have := a.w.State().Balance; amount > have {
		return &InsufficientFundsError{Need: amount, Have: have}
	}
	b, err := a.w.Lock(worker, esc, amount, expires, a.o.now())
	if err != nil {
		return fmt.Errorf("ledgersvc: lock: %w", err)
	}
	if _, err := a.countersignLocked(ctx, &pb.CountersignRequest{Block: b}); err != nil {
		if errors.Is(err, protocols.Code(pb.ErrorCode_LEDGER_INSUFFICIENT_FUNDS)) {
			return &InsufficientFundsError{Need: amount, Have: a.w.State().Balance}
		}
		return fmt.Errorf("ledgersvc: lock: %w", err)
	}
	return nil
}

// Transfer pays amount to another account; it returns the countersigned
// out-block, which the receiver claims (Claim) at its own home. The block
// names that home (asked of the trusted authorities once, then cached: a
// home the receiver has left still takes the claim, as a former home), so
// that the payment is credited at one home only.
func (a *Account) Transfer(ctx context.Context, to peer.ID, amount uint64, ref string) (*pb.Block, error) {
	home, err := a.settle.homeOf(ctx, to)
	if err != nil {
		return nil, fmt.Errorf("ledgersvc: transfer: the receiver's home: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.readyLocked(ctx); err != nil {
		return nil, err
	}
	if have := a.w.State().Balance; amount > have {
		return nil, &InsufficientFundsError{Need: amount, Have: have}
	}
	b, err := a.w.TransferTo(to, home, amount, ref, a.o.now())
	if err != nil {
		return nil, fmt.Errorf("ledgersvc: transfer: %w", err)
	}
	return a.countersignLocked(ctx, &pb.CountersignRequest{Block: b})
}

// Dispute disputes a receipt the client did not expect, with the receipt
// as evidence, at the client's home (which holds its escrows): the worker
// is never paid for it without the client's acknowledgement. It returns
// at once; the request runs on the account's own goroutine.
func (a *Account) Dispute(sr *pb.SignedReceipt) {
	h := ledger.ReceiptHash(sr)
	sig, err := a.key.Sign(ledger.DisputeBytes(h))
	if err != nil || a.ctx.Err() != nil { // closed: no new goroutine
		return
	}
	req := &pb.LedgerRequest{Req: &pb.LedgerRequest_Dispute{Dispute: &pb.DisputeRequest{ReceiptHash: h, Client: []byte(a.id), ClientSig: sig, Receipt: sr}}}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		ctx, cancel := context.WithTimeout(a.ctx, StreamTimeout)
		defer cancel()
		_, err := Call(ctx, a.h, a.Home(), req)
		msg := "disputed receipt " + fmt.Sprintf("%x", h[:8])
		if err != nil {
			msg += ": " + err.Error()
		}
		a.o.log.Emit(events.Event{Kind: events.Error, Proto: string(ID), Err: msg})
	}()
}

// Ack signs the acknowledgement of a delivered result's receipt and
// returns the receipt hash and the signature.
func (a *Account) Ack(sr *pb.SignedReceipt) (hash, sig []byte, err error) {
	hash = ledger.ReceiptHash(sr)
	sig, err = a.key.Sign(ledger.ClientAckBytes(hash))
	return hash, sig, err
}

// RefundExpired asks for the rest of every escrow of ours whose award has
// expired and claims what comes back. It returns the points refunded.
func (a *Account) RefundExpired(ctx context.Context) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.readyLocked(ctx); err != nil {
		return 0, err
	}
	var total uint64
	var errs []error
	now := a.o.now()
	for esc, l := range a.locks {
		if now.Before(l.expires) {
			continue
		}
		resp, err := Call(ctx, a.h, l.authority, &pb.LedgerRequest{Req: &pb.LedgerRequest_Refund{Refund: &pb.RefundRequest{Client: []byte(a.id), Escrow: esc}}})
		switch {
		case errors.Is(err, protocols.Code(pb.ErrorCode_BAD_REQUEST)), errors.Is(err, protocols.Code(pb.ErrorCode_NOT_FOUND)):
			delete(a.locks, esc) // nothing left (or unknown): done with it
			continue
		case err != nil:
			errs = append(errs, err)
			continue
		}
		for _, b := range resp.Blocks {
			if a.paysUs(b) {
				if err := a.claimLocked(ctx, b); err != nil {
					errs = append(errs, err)
					continue
				}
				total += b.Amount
			}
		}
	}
	return total, errors.Join(errs...)
}

// refundLoop asks for the unpaid rest of expired escrows on a schedule, so
// that what failed jobs did not use comes back to the client.
func (a *Account) refundLoop(ctx context.Context) {
	t := time.NewTicker(a.o.refundEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !a.anyExpired() {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, StreamTimeout)
		got, err := a.RefundExpired(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			a.o.log.Emit(events.Event{Kind: events.Error, Peer: a.Home().String(), Proto: string(ID), Err: "refund: " + err.Error()})
		}
		_ = got
	}
}

// anyExpired reports whether an escrow of ours has expired (no network).
func (a *Account) anyExpired() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.o.now()
	for _, l := range a.locks {
		if !now.Before(l.expires) {
			return true
		}
	}
	return false
}

// CheckEscrow asks the client's home (which holds its escrows) for the
// escrow of bid and verifies its lock for this worker
// (ledger.CheckLock): countersigned by that trusted home, at least need
// points, expiring after until, with points left. It is the worker's
// check before the first job of an award.
func (a *Account) CheckEscrow(ctx context.Context, client peer.ID, bidID []byte, need uint64, until time.Time) (uint64, time.Time, error) {
	home, err := a.settle.homeOf(ctx, client)
	if err != nil {
		return 0, time.Time{}, err
	}
	req := &pb.LedgerRequest{Req: &pb.LedgerRequest_GetEscrow{GetEscrow: &pb.GetEscrowRequest{Client: []byte(client), Escrow: ledger.EscrowID(bidID)}}}
	resp, err := Call(ctx, a.h, home, req)
	if errors.Is(err, protocols.Code(pb.ErrorCode_NOT_FOUND)) {
		// The client may have moved home since we cached it.
		if now, lerr := a.settle.lookupHome(ctx, client); lerr == nil && now != home {
			home = now
			resp, err = Call(ctx, a.h, home, req)
		}
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	e := resp.GetEscrow()
	lock := e.GetLock()
	if err := ledger.CheckLock(lock, ledger.LockCheck{Client: client, Worker: a.id, BidID: bidID, Need: need, Until: until}, a.trust); err != nil {
		return 0, time.Time{}, err
	}
	if peer.ID(lock.Notary) != home || e.GetRemaining() <= e.GetReserved() {
		return 0, time.Time{}, fmt.Errorf("%w: escrow held elsewhere or used up", ledger.ErrEscrowMismatch)
	}
	return lock.Amount, time.UnixMilli(lock.ExpiresMs), nil
}
