package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/node/schedule"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"google.golang.org/protobuf/proto"
)

// Payer pays for awarded jobs through escrow (node/ledgersvc.Account is
// the implementation). Lock locks a worker's award before any job goes to
// it; Ack signs the acknowledgement of a delivered result, which the worker
// presents with its receipt to be paid.
type Payer interface {
	Balance(ctx context.Context) (uint64, error)
	Lock(ctx context.Context, worker peer.ID, bidID []byte, amount uint64, expires time.Time) error
	Ack(sr *pb.SignedReceipt) (hash, sig []byte, err error)
}

// refunder is a Payer that can take back the unpaid rest of its expired
// escrows (ledgersvc.Account).
type refunder interface {
	RefundExpired(ctx context.Context) (uint64, error)
}

// refundExpired takes back, before a series, what expired escrows of
// earlier series (a crashed run's among them: the account rebuilds its
// escrows from its chain) did not pay out: a client that only runs
// `submit` would otherwise never ask, as only a long-running node's
// refund loop does. Best effort: a failure is logged, the series runs.
func (c *Client) refundExpired(ctx context.Context) {
	r, ok := c.o.payer.(refunder)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got, err := r.RefundExpired(ctx)
	if err != nil {
		c.log.Emit(events.Event{Kind: events.Error, Err: "refund expired escrow: " + err.Error()})
	}
	if got > 0 {
		c.log.Emit(events.Event{Kind: "escrow_refunded", Attrs: map[string]any{"points": got}})
	}
}

// WithPayer makes the client pay for the jobs it awards.
func WithPayer(p Payer) Option { return func(o *options) { o.payer = p } }

// WithEscrowTTL sets how long an award's escrow stays locked before the
// client may take back what was not paid out (default 30 minutes).
func WithEscrowTTL(d time.Duration) Option { return func(o *options) { o.escrowTTL = d } }

// ErrInsufficientFunds means the client cannot pay for the awards.
var ErrInsufficientFunds = errors.New("client: not enough points")

// FundsError says how many points a series needs and how many the client
// has. Nothing was dispatched.
type FundsError struct{ Need, Have uint64 }

func (e *FundsError) Error() string {
	return fmt.Sprintf("client: not enough points: need %d points, have %d", e.Need, e.Have)
}

func (e *FundsError) Unwrap() error { return ErrInsufficientFunds }

// award is jobs a worker may run under one of its bids: paid for by an
// escrow under the bid's id when the client pays (locked: the escrow is
// in place). The machine's budget of a worker is the sum of its awards.
type award struct {
	offer  Offer
	left   int // jobs not yet sent under it
	locked bool
}

// reserve checks, before anything is dispatched, that the balance covers
// every award (price × allocated jobs of each chosen worker) and sets each
// worker's award.
func (d *dispatch) reserve(ctx context.Context, chosen []peer.ID, alloc map[string]int) error {
	if p := d.c.o.payer; p != nil {
		var need uint64
		for _, id := range chosen {
			need += d.offers[id].Bid.PricePerJob * uint64(alloc[id.String()])
		}
		have, err := p.Balance(ctx)
		if err != nil && have < need {
			return fmt.Errorf("client: ledger: %w", err)
		}
		if have < need {
			return &FundsError{Need: need, Have: have}
		}
	}
	for _, id := range chosen {
		d.awards[id] = []*award{{offer: d.offers[id], left: alloc[id.String()], locked: d.c.o.payer == nil}}
	}
	return nil
}

// lockAwards locks in escrow the worker's awards not yet locked, before
// its first job.
func (d *dispatch) lockAwards(ctx context.Context, id peer.ID) error {
	d.mu.Lock()
	var todo []*award
	for _, a := range d.awards[id] {
		if !a.locked {
			todo = append(todo, a)
		}
	}
	d.mu.Unlock()
	for _, a := range todo {
		if err := d.lock(ctx, a.offer, a.left); err != nil {
			return err
		}
		d.mu.Lock()
		a.locked = true
		d.mu.Unlock()
	}
	return nil
}

func (d *dispatch) lock(ctx context.Context, off Offer, n int) error {
	p := d.c.o.payer
	if p == nil || n == 0 {
		return nil
	}
	ttl := d.c.o.escrowTTL
	if ttl <= 0 {
		ttl = 30 * time.Minute
	}
	amount := off.Bid.PricePerJob * uint64(n)
	if err := p.Lock(ctx, off.Worker, off.Bid.BidId, amount, d.c.o.now().Add(ttl)); err != nil {
		return fmt.Errorf("client: escrow for %s: %w", short(off.Worker), err)
	}
	return nil
}

// extendLocked carries out the machine's Extend: n more jobs for worker,
// under its bid not yet awarded if it has one, else a fresh bid; a paying
// client locks the escrow for them first (an escrow's id is its bid's, and
// each is locked once). The answer goes to the machine as an Award, or
// ExtendFailed.
func (d *dispatch) extendLocked(id peer.ID, n int) {
	off, have := d.fresh[id]
	delete(d.fresh, id)
	if d.c.o.payer == nil && have {
		a := &award{offer: off, left: min(n, int(off.Bid.MaxJobs)), locked: true}
		d.grantLocked(id, a)
		return
	}
	if d.c.o.payer == nil {
		// Unpaid, under the bid in use: the worker counts its jobs up to
		// the bid's MaxJobs, which the machine's capacity respects.
		if as := d.awards[id]; len(as) > 0 {
			a := as[len(as)-1]
			a.left += n
			d.c.log.Emit(events.Event{Kind: "award_extended", Peer: id.String(), Series: d.s.ID, Attrs: map[string]any{"jobs": n}})
			d.applyLocked(d.m.Award(d.name(id), schedule.Award{Budget: n,
				Slots: int(max(1, a.offer.Bid.Slots)), EstJob: time.Duration(a.offer.Bid.EstJobMs) * time.Millisecond}))
			return
		}
	}
	d.aux.Add(1)
	go func() {
		defer d.aux.Done()
		a, err := d.extend(d.ctx, id, off, have, n)
		d.mu.Lock()
		defer d.mu.Unlock()
		if err != nil {
			d.lastErr[id] = err
			d.c.log.Emit(events.Event{Kind: events.Error, Peer: id.String(), Series: d.s.ID, Err: err.Error()})
			d.applyLocked(d.m.ExtendFailed(d.name(id)))
			return
		}
		d.grantLocked(id, a)
	}()
}

// grantLocked adds an award to worker and tells the machine.
func (d *dispatch) grantLocked(id peer.ID, a *award) {
	b, _ := d.m.Budget(d.name(id))
	d.awards[id] = append(d.awards[id], a)
	d.offers[id] = a.offer
	d.c.log.Emit(events.Event{Kind: events.Award, Peer: id.String(), Series: d.s.ID, Price: a.offer.Bid.PricePerJob,
		Attrs: map[string]any{"jobs": a.left, "extension": true}})
	d.applyLocked(d.m.Award(d.name(id), schedule.Award{Budget: a.left, Capacity: b + int(a.offer.Bid.MaxJobs),
		Slots: int(max(1, a.offer.Bid.Slots)), EstJob: time.Duration(a.offer.Bid.EstJobMs) * time.Millisecond}))
}

// extend gets n more paid jobs from worker: a fresh bid unless have, then
// the escrow for them.
func (d *dispatch) extend(ctx context.Context, id peer.ID, off Offer, have bool, n int) (*award, error) {
	if !have {
		req := proto.Clone(d.req).(*pb.BidRequest)
		req.JobCount = uint32(max(n, 1))
		var err error
		if off, err = d.c.askBid(ctx, Candidate{ID: id, Route: d.offers[id].Route}, req); err != nil {
			return nil, fmt.Errorf("client: fresh bid: %w", err)
		}
	}
	k := min(n, int(off.Bid.MaxJobs))
	if err := d.lock(ctx, off, k); err != nil {
		return nil, err
	}
	return &award{offer: off, left: k, locked: true}, nil
}

// takeAwardLocked picks the award a job sent to worker goes under.
func (d *dispatch) takeAwardLocked(id peer.ID) *award {
	as := d.awards[id]
	for _, a := range as {
		if a.left > 0 {
			a.left--
			return a
		}
	}
	if len(as) > 0 {
		return as[len(as)-1] // the machine's budget says it may: never here
	}
	a := &award{offer: d.offers[id]}
	d.awards[id] = append(d.awards[id], a)
	return a
}

// returnAwardLocked gives back a job's place under its award (it failed:
// not paid).
func (d *dispatch) returnAwardLocked(a *award) {
	if a != nil {
		a.left++
	}
}

// ack signs the acknowledgement of a delivered result (nil without a
// payer).
func (d *dispatch) ack(r *pb.JobResult) *pb.JobStreamMsg {
	p := d.c.o.payer
	if p == nil || r.Receipt == nil {
		return nil
	}
	h, sig, err := p.Ack(r.Receipt)
	if err != nil {
		return nil
	}
	return &pb.JobStreamMsg{Msg: &pb.JobStreamMsg_Ack{Ack: &pb.ReceiptAck{ReceiptHash: h, ClientSig: sig}}}
}

// Disputer is a Payer that can dispute a receipt (node/ledgersvc.Account
// is one). Dispute must return at once: it is called on the job path.
type Disputer interface {
	Dispute(sr *pb.SignedReceipt)
}

// awardedLocked reports whether a receipt names the award the client made
// to worker: its bid and the bid's price. A receipt naming another bid
// (another award's escrow) or another price is never acknowledged.
//
// It must name the very bid the job was sent to that worker under (an
// extension's fresh bid, not any bid of the worker's), or, on a resumed
// run, the bid the crashed run sent it under (a result the worker kept).
func (d *dispatch) awardedLocked(idx int, worker peer.ID, rc *pb.Receipt) bool {
	if b := d.sentBid[sentKey{idx, worker}]; b != nil && bytes.Equal(rc.BidId, b.BidId) && rc.Price == b.PricePerJob {
		return true
	}
	return slices.ContainsFunc(d.s.Prior[idx], func(p PriorSend) bool {
		return p.Worker == worker && len(p.BidID) > 0 && bytes.Equal(rc.BidId, p.BidID) && rc.Price == p.Price
	})
}

// sentKey names one job sent to one worker.
type sentKey struct {
	job    int
	worker peer.ID
}

// dispute files a dispute, with the receipt as evidence, for a receipt
// the client did not expect: the worker cannot be paid for it.
func (d *dispatch) dispute(sr *pb.SignedReceipt) {
	if p, ok := d.c.o.payer.(Disputer); ok && sr != nil {
		p.Dispute(sr)
	}
}
