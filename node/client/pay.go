package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/protocols/pb"
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

// reserve checks, before anything is dispatched, that the balance covers
// every award (price × allocated jobs of each chosen worker) and sets each
// worker's budget of paid jobs.
func (d *dispatch) reserve(ctx context.Context, chosen []peer.ID, alloc map[string]int) error {
	p := d.c.o.payer
	if p == nil {
		return nil
	}
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
	d.budget = map[peer.ID]int{}
	d.spent = map[peer.ID]int{}
	for _, id := range chosen {
		d.budget[id] = alloc[id.String()]
	}
	return nil
}

// budgetLocked sets the budget of a worker started late (the next bid
// after others failed): the jobs still unfinished.
func (d *dispatch) budgetLocked(id peer.ID) {
	if d.budget == nil {
		return
	}
	if _, ok := d.budget[id]; !ok {
		st := d.sched.Stats()
		d.budget[id] = st.Pending + st.InFlight
	}
}

// lockAward locks the worker's award in escrow before its first job.
func (d *dispatch) lockAward(ctx context.Context, off Offer) error {
	p := d.c.o.payer
	if p == nil {
		return nil
	}
	d.mu.Lock()
	n := d.budget[off.Worker]
	d.mu.Unlock()
	if n == 0 {
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

// mayTakeLocked reports whether worker's escrow covers one more job.
func (d *dispatch) mayTakeLocked(worker peer.ID) bool {
	return d.budget == nil || d.spent[worker] < d.budget[worker]
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
func (d *dispatch) awardedLocked(worker peer.ID, rc *pb.Receipt) bool {
	off, ok := d.offers[worker]
	return ok && off.Bid != nil && bytes.Equal(rc.BidId, off.Bid.BidId) && rc.Price == off.Bid.PricePerJob
}

// dispute files a dispute, with the receipt as evidence, for a receipt
// the client did not expect: the worker cannot be paid for it.
func (d *dispatch) dispute(sr *pb.SignedReceipt) {
	if p, ok := d.c.o.payer.(Disputer); ok && sr != nil {
		p.Dispute(sr)
	}
}
