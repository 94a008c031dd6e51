package worker

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Payee gets the worker paid (node/ledgersvc.Account is the
// implementation): it keeps each receipt the worker signs, the client's
// acknowledgement when it comes over the job stream, and presents them to
// the escrow's authority in batches of its own timing. Its methods must
// return at once: they are called on the job path.
type Payee interface {
	Receipt(client peer.ID, sr *pb.SignedReceipt)
	AckReceipt(client peer.ID, receiptHash, sig []byte)
	// FlushClient: client's job stream ended; present its receipts now.
	FlushClient(client peer.ID)
}

// WithPayee makes the worker claim payment for the jobs it runs.
func WithPayee(p Payee) Option { return func(o *options) { o.payee = p } }

// EscrowChecker verifies, with the escrow's authority, that a client
// locked the points of an award (node/ledgersvc.Account implements it):
// a countersigned ESCROW_LOCK for this worker and bid of at least need
// points, expiring after until. It returns the lock's amount and expiry.
type EscrowChecker interface {
	CheckEscrow(ctx context.Context, client peer.ID, bidID []byte, need uint64, until time.Time) (locked uint64, expires time.Time, err error)
}

// WithEscrowCheck makes the worker run a job only against money: before
// the first job of an award (and whenever the jobs taken outgrow what it
// saw locked) it checks the client's lock with c; the lock must outlive
// now + horizon, the time the worker needs to file its receipts. Without
// it (no ledger) jobs are not checked.
func WithEscrowCheck(c EscrowChecker, horizon time.Duration) Option {
	return func(o *options) { o.escrow, o.horizon = c, horizon }
}

// escrowCheckTimeout bounds the question to the escrow's authority.
const escrowCheckTimeout = 10 * time.Second

// checkEscrow declines a job (NO_ESCROW) that the client's escrow does not
// cover: price × jobs taken under the bid, until the settlement horizon.
func (s *Service) checkEscrow(client peer.ID, bidID []byte) error {
	c := s.o.escrow
	if c == nil {
		return nil
	}
	now := s.o.now()
	until := now.Add(s.o.horizon)
	s.mu.Lock()
	b := s.bids[string(bidID)]
	if b == nil {
		s.mu.Unlock()
		return protocols.Errorf(pb.ErrorCode_NO_AWARD, "no open bid %x", bidID)
	}
	need := b.price * uint64(b.used)
	ok := need <= b.locked && !b.lockExpires.Before(until)
	s.mu.Unlock()
	if ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, escrowCheckTimeout)
	defer cancel()
	locked, expires, err := c.CheckEscrow(ctx, client, bidID, need, until)
	if err != nil {
		return protocols.Errorf(pb.ErrorCode_NO_ESCROW, "no escrow of %d points for bid %x lasting past %s: %v", need, bidID, until.UTC().Format(time.RFC3339), err)
	}
	s.mu.Lock()
	if b := s.bids[string(bidID)]; b != nil {
		b.locked, b.lockExpires = locked, expires
	}
	s.mu.Unlock()
	return nil
}
