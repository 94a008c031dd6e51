package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Dispute marks a filed receipt as disputed by its client, within the
// dispute window: its price stays frozen in escrow until the client
// acknowledges it, and the receipt is never paid without that
// acknowledgement (a lost dispute pays nothing). A receipt the worker has
// not filed yet is filed disputed when the request carries it as
// evidence (req.Receipt): the worker's later filing is refused
// (ErrDisputed). A replayed dispute changes nothing.
func (n *Notary) Dispute(req *pb.DisputeRequest, now time.Time) (Output, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	rs := n.receipts[string(req.GetReceiptHash())]
	if rs == nil && req.GetReceipt() != nil {
		return n.disputeUnfiledLocked(req, now)
	}
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

// disputeUnfiledLocked files the receipt req carries as disputed.
func (n *Notary) disputeUnfiledLocked(req *pb.DisputeRequest, now time.Time) (Output, error) {
	r, err := VerifyReceipt(req.Receipt)
	if err != nil {
		return Output{}, err
	}
	h := ReceiptHash(req.Receipt)
	if !bytes.Equal(h, req.GetReceiptHash()) {
		return Output{}, fmt.Errorf("%w: evidence does not match the receipt hash", ErrBadRequest)
	}
	k := EscrowKey{peer.ID(r.Client), EscrowID(r.BidId)}
	if peer.ID(req.GetClient()) != k.Client || !verifyBy(k.Client, DisputeBytes(h), req.ClientSig) {
		return Output{}, fmt.Errorf("%w: dispute not signed by the receipt's client", ErrBadSignature)
	}
	e := n.escrows[k]
	if e == nil {
		return Output{}, ErrUnknownEscrow // nothing it could be paid from
	}
	if r.Price > e.remaining-e.pending-e.frozen {
		return Output{}, fmt.Errorf("%w: the receipt could never be paid from escrow %s", ErrOverdraft, e.id)
	}
	// As Settle files it, then as Dispute marks it (Restore replays the
	// note the same way).
	claim := &pb.ReceiptClaim{Receipt: req.Receipt}
	n.receipts[string(h)] = &receiptState{claim: claim, price: r.Price, key: k, filedMs: now.UnixMilli(), disputed: true}
	e.frozen += r.Price
	e.jobs[r.JobId] = true
	return Output{Notes: []*Note{{Hash: h, Claim: claim, FiledMs: now.UnixMilli(), Disputed: true}}}, nil
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
	var home peer.ID // the client's home now (it may have moved since its lock)
	if ca := n.accounts[k.Client]; ca != nil {
		home = ca.st.Home
	}
	b := &pb.Block{Kind: pb.BlockKind_BLOCK_ESCROW_REFUND, Amount: amount, Counterparty: []byte(k.Client), Reference: ref, Authority: n.nameHome(home),
		Lines: []*pb.EscrowLine{{Client: []byte(k.Client), Escrow: k.Escrow, Amount: amount}}}
	rb, err := n.ownBlockLocked(b, now)
	if err != nil {
		return Output{}, err
	}
	e.remaining -= amount
	return Output{Blocks: []*pb.Block{rb}}, nil
}
