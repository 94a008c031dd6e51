package ledger

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Settle pays workers for delivered jobs. Each claim is a worker-signed
// receipt for a job under an escrow held here. It is paid now if the
// client acknowledged it (claim.client_ack) or it was filed at least the
// dispute window ago and not disputed; otherwise it is filed (pending) and
// its price reserved. Payable claims are batched: one ESCROW_RELEASE per
// worker on the authority's own chain (reference = hex Merkle root of the
// receipt hashes, lines per escrow) with its pb.Settlement beside it. The
// release names the worker's home (req.Home, else the home held here) as
// the only place to claim it.
func (n *Notary) Settle(req *pb.SettleRequest, now time.Time) (Output, SettleResult, error) {
	return n.SettleFrom(req, "", now)
}

// SettleFrom is Settle for a request from the authenticated peer from:
// req.Home names the home of from's own releases only, so that no one
// else can send a worker's payment where the worker cannot claim it.
func (n *Notary) SettleFrom(req *pb.SettleRequest, from peer.ID, now time.Time) (Output, SettleResult, error) {
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
	var home peer.ID
	if len(req.GetHome()) > 0 {
		var err error
		if home, err = peer.IDFromBytes(req.GetHome()); err != nil || !n.trust.Has(home) {
			return Output{}, SettleResult{}, fmt.Errorf("%w: worker's home is not a trusted authority", ErrBadRequest)
		}
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
			if from != "" && from != e.worker && n.accounts[e.worker] == nil {
				// Only the worker knows (and names) its home when it is not
				// held here: settled by anyone else, the release would name
				// this authority, where the worker cannot claim it, and its
				// own settlement would then be refused as already paid.
				return fmt.Errorf("%w: only the worker settles the receipts of a worker homed elsewhere", ErrBadRequest)
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
		var wh peer.ID // the worker's home: as the worker names it, else as held here
		if from == "" || from == w {
			wh = home
		}
		if wa := n.accounts[w]; wh == "" && wa != nil {
			wh = wa.st.Home
		}
		b := &pb.Block{Kind: pb.BlockKind_BLOCK_ESCROW_RELEASE, Counterparty: []byte(w), Reference: hex.EncodeToString(MerkleRoot(p.hashes)), Authority: n.nameHome(wh)}
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

// EscrowState is an escrow as the notary holds it.
type EscrowState struct {
	Key                        EscrowKey
	Worker                     peer.ID
	ExpiresMs                  int64
	LockSeq                    uint64 // the lock's seq on the client's chain
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
	return EscrowState{Key: k, Worker: e.worker, ExpiresMs: e.expiresMs, LockSeq: e.lockSeq, Remaining: e.remaining, Pending: e.pending, Frozen: e.frozen}, true
}
