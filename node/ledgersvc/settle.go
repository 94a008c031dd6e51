package ledgersvc

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// settler is a worker's side of escrow: it keeps the receipts it signed,
// with the clients' acknowledgements as they arrive, and presents them to
// the escrow's authority in batches (one Settle, one fsync there, for many
// jobs), then claims the release blocks at its own home. Nothing on the
// job path waits for it. When the store is a ledger.UnpaidStore the
// unpaid receipts survive a restart: what changed is written once per
// settlement round (one fsync for all the jobs of the round), before the
// round presents anything.
type settler struct {
	a *Account

	mu sync.Mutex // guards the fields below
	// guarded by mu
	claims map[string]*claimState // by receipt hash
	ready  int                    // acknowledged, not yet presented
	force  map[peer.ID]bool       // clients whose streams ended: present all
	final  bool                   // closing: the last attempt ignores retry back-offs
	homes  map[peer.ID]peer.ID    // client -> its home authority (the escrow holder)
	paid   uint64                 // points released to us so far
	dirty  map[string]bool        // receipts added or acknowledged since the last save
	gone   [][]byte               // receipts paid or refused since the last save

	kick chan struct{} // capacity 1
}

type claimState struct {
	client  peer.ID
	sr      *pb.SignedReceipt
	ack     []byte
	added   time.Time
	filed   time.Time // presented without ack and filed; zero before
	retryAt time.Time
}

func newSettler(a *Account) *settler {
	s := &settler{a: a, claims: map[string]*claimState{}, force: map[peer.ID]bool{}, homes: map[peer.ID]peer.ID{},
		dirty: map[string]bool{}, kick: make(chan struct{}, 1)}
	if us, ok := a.store.(ledger.UnpaidStore); ok {
		saved, err := us.Unpaid()
		if err != nil {
			a.o.log.Emit(events.Event{Kind: events.Error, Proto: string(ID), Err: "settle: load unpaid receipts: " + err.Error()})
		}
		now := a.o.now()
		for _, u := range saved {
			sr := u.Claim.GetReceipt()
			if sr == nil {
				continue
			}
			s.claims[string(ledger.ReceiptHash(sr))] = &claimState{client: u.Client, sr: sr, ack: u.Claim.ClientAck, added: now}
		}
	}
	return s
}

// save writes what changed since the last save (one transaction).
func (s *settler) save() {
	us, ok := s.a.store.(ledger.UnpaidStore)
	if !ok {
		return
	}
	s.mu.Lock()
	var put []ledger.Unpaid
	for h := range s.dirty {
		if c := s.claims[h]; c != nil {
			put = append(put, ledger.Unpaid{Client: c.client, Claim: &pb.ReceiptClaim{Receipt: c.sr, ClientAck: c.ack}})
		}
	}
	del := s.gone
	dirty := s.dirty
	s.dirty, s.gone = map[string]bool{}, nil
	s.mu.Unlock()
	if len(put) == 0 && len(del) == 0 {
		return
	}
	if err := us.SaveUnpaid(put, del); err != nil {
		s.a.o.log.Emit(events.Event{Kind: events.Error, Proto: string(ID), Err: "settle: save unpaid receipts: " + err.Error()})
		s.mu.Lock() // try again next round
		for h := range dirty {
			s.dirty[h] = true
		}
		s.gone = append(s.gone, del...)
		s.mu.Unlock()
	}
}

func (s *settler) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Receipt records a receipt this worker signed for client.
func (a *Account) Receipt(client peer.ID, sr *pb.SignedReceipt) {
	s := a.settle
	s.mu.Lock()
	defer s.mu.Unlock()
	h := string(ledger.ReceiptHash(sr))
	if s.claims[h] == nil {
		s.claims[h] = &claimState{client: client, sr: sr, added: a.o.now()}
		s.dirty[h] = true
	}
}

// AckReceipt records a client's acknowledgement of one of our receipts.
func (a *Account) AckReceipt(client peer.ID, receiptHash, sig []byte) {
	s := a.settle
	s.mu.Lock()
	c := s.claims[string(receiptHash)]
	if c == nil || c.client != client || c.ack != nil || !verifyAck(client, receiptHash, sig) {
		s.mu.Unlock()
		return
	}
	c.ack = sig
	s.dirty[string(receiptHash)] = true
	s.ready++
	full := s.ready >= a.o.settleBatch
	s.mu.Unlock()
	if full {
		s.poke()
	}
}

func verifyAck(client peer.ID, h, sig []byte) bool {
	pk, err := client.ExtractPublicKey()
	if err != nil || pk == nil {
		return false
	}
	ok, err := pk.Verify(ledger.ClientAckBytes(h), sig)
	return err == nil && ok
}

// FlushClient presents everything of client's now: its job stream ended,
// so no more acknowledgements will come over it.
func (a *Account) FlushClient(client peer.ID) {
	s := a.settle
	s.mu.Lock()
	s.force[client] = true
	s.mu.Unlock()
	s.poke()
}

// Unsettled counts receipts not yet paid.
func (a *Account) Unsettled() int {
	s := a.settle
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.claims)
}

// Earned is the points released to this worker by settlements so far.
func (a *Account) Earned() uint64 {
	s := a.settle
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paid
}

func (s *settler) loop(ctx context.Context) {
	t := time.NewTicker(s.a.o.settleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// A last attempt for what is acknowledged, briefly.
			// A claim whose last attempt failed (its authority was
			// restarting, say) is tried again now, back-off or not: it
			// would otherwise wait for the next start.
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s.mu.Lock()
			s.final = true
			s.mu.Unlock()
			s.save()
			s.flush(fctx)
			cancel()
			s.save()
			return
		case <-t.C:
		case <-s.kick:
		}
		s.save()
		s.flush(ctx)
	}
}

// due picks the claims to present now, grouped by client.
func (s *settler) due(now time.Time) map[peer.ID][]*claimState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[peer.ID][]*claimState{}
	for _, c := range s.claims {
		switch {
		case now.Before(c.retryAt) && !s.final:
		case c.ack != nil:
			out[c.client] = append(out[c.client], c)
		case s.force[c.client] || now.Sub(c.added) >= s.a.o.ackGrace:
			out[c.client] = append(out[c.client], c)
		}
	}
	s.force = map[peer.ID]bool{}
	s.ready = 0
	return out
}

func (s *settler) flush(ctx context.Context) {
	now := s.a.o.now()
	for client, cs := range s.due(now) {
		if err := s.present(ctx, client, cs, now); err != nil && ctx.Err() == nil {
			s.a.o.log.Emit(events.Event{Kind: events.Error, Peer: client.String(), Proto: string(ID), Err: "settle: " + err.Error()})
		}
	}
}

// homeOf finds the client's home authority (which holds its escrows).
func (s *settler) homeOf(ctx context.Context, client peer.ID) (peer.ID, error) {
	s.mu.Lock()
	h, ok := s.homes[client]
	s.mu.Unlock()
	if ok {
		return h, nil
	}
	return s.lookupHome(ctx, client)
}

// lookupHome asks the trusted authorities which of them is the client's
// home now (a client may have moved home since it was cached).
func (s *settler) lookupHome(ctx context.Context, client peer.ID) (peer.ID, error) {
	var errs []error
	for _, auth := range s.a.auths {
		resp, err := Call(ctx, s.a.h, auth, &pb.LedgerRequest{Req: &pb.LedgerRequest_GetHead{GetHead: &pb.GetHeadRequest{Account: []byte(client)}}})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		home := peer.ID(resp.GetHead().GetHome())
		if home == auth {
			s.mu.Lock()
			s.homes[client] = home
			s.mu.Unlock()
			return home, nil
		}
	}
	return "", errors.Join(append(errs, errors.New("ledgersvc: no trusted authority holds the client's account"))...)
}

// present sends one Settle for cs to the escrow holder and claims the
// release.
func (s *settler) present(ctx context.Context, client peer.ID, cs []*claimState, now time.Time) error {
	home, err := s.homeOf(ctx, client)
	if err != nil {
		return err
	}
	// The release names our home: only there can it be claimed.
	req := &pb.SettleRequest{Home: []byte(s.a.Home())}
	s.mu.Lock() // AckReceipt may set c.ack while we read it
	for _, c := range cs {
		req.Claims = append(req.Claims, &pb.ReceiptClaim{Receipt: c.sr, ClientAck: c.ack})
	}
	s.mu.Unlock()
	resp, err := Call(ctx, s.a.h, home, &pb.LedgerRequest{Req: &pb.LedgerRequest_Settle{Settle: req}})
	if err != nil {
		s.mu.Lock()
		for _, c := range cs {
			c.retryAt = now.Add(s.a.o.settleEvery)
		}
		s.mu.Unlock()
		return err
	}
	// An escrow unknown to the home we cached may be held by the client's
	// new home (it moved home since): present those again there.
	moved := false
	for _, r := range resp.Rejected {
		if errors.Is(protocols.FromPB(r), protocols.Code(pb.ErrorCode_NOT_FOUND)) {
			fresh, ferr := s.lookupHome(ctx, client)
			moved = ferr == nil && fresh != home
			break
		}
	}
	s.mu.Lock()
	for i, c := range cs {
		h := string(ledger.ReceiptHash(c.sr))
		var rej error
		if i < len(resp.Rejected) {
			rej = protocols.FromPB(resp.Rejected[i])
		}
		switch {
		case moved && errors.Is(rej, protocols.Code(pb.ErrorCode_NOT_FOUND)):
			c.retryAt = now
		case rej == nil && inList(resp.Pending, h):
			if c.filed.IsZero() {
				c.filed = now
			}
			c.retryAt = now.Add(s.a.o.retryFiled)
		case rej == nil: // released
			delete(s.claims, h)
			s.gone = append(s.gone, []byte(h))
		case errors.Is(rej, protocols.Code(pb.ErrorCode_LEDGER_INSUFFICIENT_FUNDS)), errors.Is(rej, protocols.Code(pb.ErrorCode_INTERNAL)):
			c.retryAt = now.Add(s.a.o.retryFiled)
		default: // already paid, disputed, unknown escrow, bad receipt: final here
			delete(s.claims, h)
			s.gone = append(s.gone, []byte(h))
			s.a.o.log.Emit(events.Event{Kind: events.Error, Peer: client.String(), Proto: string(ID), Err: "settle: receipt refused: " + rej.Error()})
		}
	}
	s.mu.Unlock()
	var errs []error
	for _, b := range resp.Blocks {
		if b.Kind != pb.BlockKind_BLOCK_ESCROW_RELEASE || peer.ID(b.Counterparty) != s.a.id {
			continue
		}
		if err := s.a.Claim(ctx, b); err != nil {
			errs = append(errs, err) // Sync picks it up later from the authority's chain
			continue
		}
		s.mu.Lock()
		s.paid += b.Amount
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

func inList(l [][]byte, h string) bool {
	for _, x := range l {
		if string(x) == h {
			return true
		}
	}
	return false
}
