package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Prefixes of the statements workers and clients sign about jobs.
const (
	ReceiptPrefix = "p2pjobs-receipt:" // worker: over the serialized pb.Receipt
	AckPrefix     = "p2pjobs-ack:"     // client: over the receipt hash
	DisputePrefix = "p2pjobs-dispute:" // client: over the receipt hash
	RefundPrefix  = "p2pjobs-refund:"  // worker: see RefundConsentBytes
)

// EscrowID is the escrow id (ESCROW_LOCK reference) of an award: receipts
// name their award by bid_id.
func EscrowID(bidID []byte) string { return "bid:" + hex.EncodeToString(bidID) }

// ReceiptHash identifies a signed receipt: sha256 of its serialized receipt.
func ReceiptHash(sr *pb.SignedReceipt) []byte {
	h := sha256.Sum256(sr.GetReceipt())
	return h[:]
}

// SignReceipt serializes and signs r with the worker's key.
func SignReceipt(r *pb.Receipt, key crypto.PrivKey) (*pb.SignedReceipt, error) {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(append([]byte(ReceiptPrefix), raw...))
	if err != nil {
		return nil, err
	}
	return &pb.SignedReceipt{Receipt: raw, Signature: sig}, nil
}

// VerifyReceipt checks the worker's signature and returns the receipt.
func VerifyReceipt(sr *pb.SignedReceipt) (*pb.Receipt, error) {
	if sr == nil || len(sr.Receipt) == 0 || len(sr.Receipt) > 64<<10 {
		return nil, fmt.Errorf("%w: missing or oversized", ErrBadReceipt)
	}
	r := new(pb.Receipt)
	if err := proto.Unmarshal(sr.Receipt, r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadReceipt, err)
	}
	_, pk, err := pubKey(r.Worker)
	if err != nil {
		return nil, fmt.Errorf("%w: worker: %v", ErrBadReceipt, err)
	}
	if !validPeer(r.Client) || r.Price == 0 || len(r.BidId) == 0 || r.JobId == "" {
		return nil, fmt.Errorf("%w: client, price, bid or job missing", ErrBadReceipt)
	}
	if ok, err := pk.Verify(append([]byte(ReceiptPrefix), sr.Receipt...), sr.Signature); err != nil || !ok {
		return nil, fmt.Errorf("%w: %w", ErrBadReceipt, ErrBadSignature)
	}
	return r, nil
}

// ClientAckBytes is what a client signs to acknowledge a delivered result.
func ClientAckBytes(receiptHash []byte) []byte { return append([]byte(AckPrefix), receiptHash...) }

// DisputeBytes is what a client signs to dispute a receipt.
func DisputeBytes(receiptHash []byte) []byte { return append([]byte(DisputePrefix), receiptHash...) }

// RefundConsentBytes is what a worker signs to let the client take amount
// back from an escrow before it expires (e.g. jobs the worker failed). A
// consent is good for one refund.
func RefundConsentBytes(client peer.ID, escrow string, amount uint64) []byte {
	b := appendLP([]byte(RefundPrefix), []byte(client))
	b = appendLP(b, []byte(escrow))
	return binary.BigEndian.AppendUint64(b, amount)
}

func verifyBy(id peer.ID, msg, sig []byte) bool {
	pk, err := id.ExtractPublicKey()
	if err != nil || pk == nil {
		return false
	}
	ok, err := pk.Verify(msg, sig)
	return err == nil && ok
}

// Merkle tree over receipt hashes (batch settlement): leaf = sha256(0x00 ||
// h), node = sha256(0x01 || left || right); a node without a sibling moves up
// unchanged.

func merkleLeaf(h []byte) []byte {
	s := sha256.Sum256(append([]byte{0}, h...))
	return s[:]
}

func merkleNode(l, r []byte) []byte {
	s := sha256.New()
	s.Write([]byte{1})
	s.Write(l)
	s.Write(r)
	return s.Sum(nil)
}

func merkleLevel(level [][]byte) [][]byte {
	next := make([][]byte, 0, (len(level)+1)/2)
	for i := 0; i < len(level); i += 2 {
		if i+1 < len(level) {
			next = append(next, merkleNode(level[i], level[i+1]))
		} else {
			next = append(next, level[i])
		}
	}
	return next
}

// MerkleRoot is the root over the given receipt hashes (nil for none).
func MerkleRoot(hashes [][]byte) []byte {
	if len(hashes) == 0 {
		return nil
	}
	level := make([][]byte, len(hashes))
	for i, h := range hashes {
		level[i] = merkleLeaf(h)
	}
	for len(level) > 1 {
		level = merkleLevel(level)
	}
	return level[0]
}

// MerkleProof returns the sibling path proving hashes[i] under MerkleRoot.
func MerkleProof(hashes [][]byte, i int) [][]byte {
	level := make([][]byte, len(hashes))
	for j, h := range hashes {
		level[j] = merkleLeaf(h)
	}
	var proof [][]byte
	for len(level) > 1 {
		if s := i ^ 1; s < len(level) {
			proof = append(proof, level[s])
		}
		level = merkleLevel(level)
		i /= 2
	}
	return proof
}

// VerifyMerkleProof checks that receipt hash h is leaf i of n under root.
func VerifyMerkleProof(root, h []byte, i, n int, proof [][]byte) bool {
	if i < 0 || i >= n {
		return false
	}
	cur := merkleLeaf(h)
	for n > 1 {
		if s := i ^ 1; s < n {
			if len(proof) == 0 {
				return false
			}
			if i%2 == 0 {
				cur = merkleNode(cur, proof[0])
			} else {
				cur = merkleNode(proof[0], cur)
			}
			proof = proof[1:]
		}
		i /= 2
		n = (n + 1) / 2
	}
	return len(proof) == 0 && bytes.Equal(cur, root)
}

// VerifySettlement checks that the receipts stored beside a release block
// are the ones it paid: every receipt is worker-signed, to the block's
// worker, under an escrow the block's lines debit, and their Merkle root is
// the block's reference and their prices sum to its amount.
func VerifySettlement(b *pb.Block, s *pb.Settlement) error {
	if b.Kind != pb.BlockKind_BLOCK_ESCROW_RELEASE {
		return fmt.Errorf("%w: not a release", ErrBadRequest)
	}
	lines := map[EscrowKey]uint64{}
	for _, l := range b.Lines {
		lines[EscrowKey{peer.ID(l.Client), l.Escrow}] += l.Amount
	}
	hashes := make([][]byte, 0, len(s.GetClaims()))
	var sum uint64
	for _, c := range s.GetClaims() {
		r, err := VerifyReceipt(c.GetReceipt())
		if err != nil {
			return err
		}
		k := EscrowKey{peer.ID(r.Client), EscrowID(r.BidId)}
		if !bytes.Equal(r.Worker, b.Counterparty) || lines[k] < r.Price {
			return fmt.Errorf("%w: receipt not covered by the release", ErrBadReceipt)
		}
		lines[k] -= r.Price
		sum += r.Price
		hashes = append(hashes, ReceiptHash(c.Receipt))
	}
	if sum != b.Amount || hex.EncodeToString(MerkleRoot(hashes)) != b.Reference {
		return fmt.Errorf("%w: settlement does not match the release", ErrBadReceipt)
	}
	return nil
}

// LockCheck is what a worker needs of an award's escrow before it runs a
// job ("work only against money", doc.go).
type LockCheck struct {
	Client, Worker peer.ID
	BidID          []byte
	Need           uint64    // price × jobs taken under the award so far
	Until          time.Time // the escrow must not expire before (now + settlement horizon)
}

// CheckLock verifies an escrow's lock for c: an ESCROW_LOCK signed by the
// client, countersigned by an authority of trust, for this worker and
// award, of at least c.Need points, expiring after c.Until. The error
// wraps ErrUnknownEscrow, ErrEscrowMismatch, ErrOverdraft or
// ErrEscrowExpired (or a signature error).
func CheckLock(lock *pb.Block, c LockCheck, trust TrustSet) error {
	if lock == nil || lock.Kind != pb.BlockKind_BLOCK_ESCROW_LOCK {
		return fmt.Errorf("%w: no lock", ErrUnknownEscrow)
	}
	if err := verifySigs(lock); err != nil {
		return err
	}
	if len(lock.Notary) == 0 || !trust.Has(peer.ID(lock.Notary)) {
		return fmt.Errorf("%w: lock not countersigned by a trusted authority", ErrUntrustedNotary)
	}
	if peer.ID(lock.Account) != c.Client || peer.ID(lock.Counterparty) != c.Worker || lock.Reference != EscrowID(c.BidID) {
		return fmt.Errorf("%w: lock of another client, worker or award", ErrEscrowMismatch)
	}
	if lock.Amount < c.Need {
		return fmt.Errorf("%w: lock of %d points, the award needs %d", ErrOverdraft, lock.Amount, c.Need)
	}
	if lock.ExpiresMs < c.Until.UnixMilli() {
		return fmt.Errorf("%w: lock expires at %d, before the settlement horizon %d", ErrEscrowExpired, lock.ExpiresMs, c.Until.UnixMilli())
	}
	return nil
}
