package protocols

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"google.golang.org/protobuf/proto"
)

// Domain-separation prefixes: a signature over a bid can never be replayed
// as a receipt, and neither as a ledger block.
const (
	bidDomain     = "p2pjobs-bid:"
	receiptDomain = "p2pjobs-receipt:"
)

// ErrBadSignature means a bid or receipt is not signed by the peer it names.
var ErrBadSignature = errors.New("protocols: bad signature")

var deterministic = proto.MarshalOptions{Deterministic: true}

// SignBid serialises b and signs it with key. b.Worker must be key's peer ID.
func SignBid(key crypto.PrivKey, b *pb.Bid) (*pb.SignedBid, error) {
	raw, err := deterministic.Marshal(b)
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(append([]byte(bidDomain), raw...))
	if err != nil {
		return nil, err
	}
	return &pb.SignedBid{Bid: raw, Signature: sig}, nil
}

// VerifyBid decodes sb and checks that the worker it names signed it. The
// returned bid is only as trustworthy as that worker.
func VerifyBid(sb *pb.SignedBid) (*pb.Bid, peer.ID, error) {
	if sb == nil {
		return nil, "", fmt.Errorf("%w: no bid", ErrMalformed)
	}
	var b pb.Bid
	if err := proto.Unmarshal(sb.Bid, &b); err != nil {
		return nil, "", fmt.Errorf("%w: bid: %w", ErrMalformed, err)
	}
	id, err := verify(b.Worker, bidDomain, sb.Bid, sb.Signature)
	if err != nil {
		return nil, "", err
	}
	return &b, id, nil
}

// SignReceipt serialises r and signs it with key.
func SignReceipt(key crypto.PrivKey, r *pb.Receipt) (*pb.SignedReceipt, error) {
	raw, err := deterministic.Marshal(r)
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(append([]byte(receiptDomain), raw...))
	if err != nil {
		return nil, err
	}
	return &pb.SignedReceipt{Receipt: raw, Signature: sig}, nil
}

// VerifyReceipt decodes sr and checks the worker's signature.
func VerifyReceipt(sr *pb.SignedReceipt) (*pb.Receipt, peer.ID, error) {
	if sr == nil {
		return nil, "", fmt.Errorf("%w: no receipt", ErrMalformed)
	}
	var r pb.Receipt
	if err := proto.Unmarshal(sr.Receipt, &r); err != nil {
		return nil, "", fmt.Errorf("%w: receipt: %w", ErrMalformed, err)
	}
	id, err := verify(r.Worker, receiptDomain, sr.Receipt, sr.Signature)
	if err != nil {
		return nil, "", err
	}
	return &r, id, nil
}

func verify(signer []byte, domain string, raw, sig []byte) (peer.ID, error) {
	id, err := peer.IDFromBytes(signer)
	if err != nil {
		return "", fmt.Errorf("%w: signer: %w", ErrMalformed, err)
	}
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return "", fmt.Errorf("%w: signer %s has no inline key: %w", ErrBadSignature, id, err)
	}
	ok, err := pub.Verify(append([]byte(domain), raw...), sig)
	if err != nil || !ok {
		return "", fmt.Errorf("%w: by %s", ErrBadSignature, id)
	}
	return id, nil
}

// DecodeReceipt decodes a receipt without checking its signature. For a
// receiver on an authenticated stream from the worker named in it, who
// only needs the fields: whoever settles verifies the signature.
func DecodeReceipt(sr *pb.SignedReceipt) (*pb.Receipt, error) {
	if sr == nil || len(sr.Signature) == 0 {
		return nil, fmt.Errorf("%w: no receipt", ErrMalformed)
	}
	var r pb.Receipt
	if err := proto.Unmarshal(sr.Receipt, &r); err != nil {
		return nil, fmt.Errorf("%w: receipt: %w", ErrMalformed, err)
	}
	return &r, nil
}

// ResultHash is what a receipt commits to: the exit code, stdout, stderr and
// each output file, length-prefixed so no two results hash alike.
func ResultHash(r *pb.JobResult) []byte {
	h := sha256.New()
	var n [8]byte
	put := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	binary.BigEndian.PutUint64(n[:], uint64(uint32(r.ExitCode)))
	h.Write(n[:])
	put(r.Stdout)
	put(r.Stderr)
	for _, f := range r.Outputs {
		put([]byte(f.Name))
		put(f.Data)
	}
	return h.Sum(nil)
}
