package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Domain-separation prefixes of the signed and hashed bytes (see doc.go).
const (
	bodyPrefix   = "p2pjobs/ledger/block/v1\x00"
	ownerPrefix  = "p2pjobs/ledger/owner/v1\x00"
	notaryPrefix = "p2pjobs/ledger/notary/v1\x00"
	hashPrefix   = "p2pjobs/ledger/hash/v1\x00"
)

// MaxBlockSize bounds one encoded block (a batch release with its lines).
const MaxBlockSize = 1 << 20

// HashSize is the length of a block hash.
const HashSize = sha256.Size

func appendLP(b, x []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(x)))
	return append(b, x...)
}

// BodyBytes returns the body layout of b (doc.go, "Signed bytes").
func BodyBytes(b *pb.Block) []byte {
	out := make([]byte, 0, 160+len(b.Reference)+len(b.Lines)*64)
	out = append(out, bodyPrefix...)
	out = appendLP(out, b.Account)
	out = binary.BigEndian.AppendUint64(out, b.Seq)
	out = appendLP(out, b.Prev)
	out = binary.BigEndian.AppendUint32(out, uint32(b.Kind))
	out = binary.BigEndian.AppendUint64(out, b.Amount)
	out = appendLP(out, b.Counterparty)
	out = appendLP(out, []byte(b.Reference))
	out = appendLP(out, b.Authority)
	out = binary.BigEndian.AppendUint64(out, uint64(b.TimestampMs))
	out = binary.BigEndian.AppendUint64(out, uint64(b.ExpiresMs))
	out = binary.BigEndian.AppendUint32(out, uint32(len(b.Lines)))
	for _, l := range b.Lines {
		out = appendLP(out, l.Client)
		out = appendLP(out, []byte(l.Escrow))
		out = binary.BigEndian.AppendUint64(out, l.Amount)
	}
	return out
}

// OwnerSigningBytes is what the account owner signs.
func OwnerSigningBytes(b *pb.Block) []byte {
	return append([]byte(ownerPrefix), BodyBytes(b)...)
}

// NotarySigningBytes is what the countersigning authority signs.
func NotarySigningBytes(b *pb.Block) []byte {
	out := append([]byte(notaryPrefix), BodyBytes(b)...)
	out = appendLP(out, b.OwnerSig)
	return appendLP(out, b.Notary)
}

// Hash is the block hash: prev links and TRANSFER_IN references use it.
func Hash(b *pb.Block) []byte {
	h := sha256.New()
	h.Write([]byte(hashPrefix))
	h.Write(BodyBytes(b))
	var lp [4]byte
	for _, x := range [][]byte{b.OwnerSig, b.Notary, b.NotarySig} {
		binary.BigEndian.PutUint32(lp[:], uint32(len(x)))
		h.Write(lp[:])
		h.Write(x)
	}
	return h.Sum(nil)
}

// HashRef is the reference a TRANSFER_IN uses to claim out-block b.
func HashRef(b *pb.Block) string { return hex.EncodeToString(Hash(b)) }

// SignOwner signs b as its owner: it sets b.Account from key if empty and
// b.OwnerSig. b is modified.
func SignOwner(b *pb.Block, key crypto.PrivKey) error {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return err
	}
	if len(b.Account) == 0 {
		b.Account = []byte(id)
	} else if !bytes.Equal(b.Account, []byte(id)) {
		return fmt.Errorf("ledger: signing key is not the account owner")
	}
	b.Notary, b.NotarySig = nil, nil
	sig, err := key.Sign(OwnerSigningBytes(b))
	if err != nil {
		return err
	}
	b.OwnerSig = sig
	return nil
}

// Countersign adds key's countersignature to the owner-signed block b. b is
// modified.
func Countersign(b *pb.Block, key crypto.PrivKey) error {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return err
	}
	b.Notary = []byte(id)
	sig, err := key.Sign(NotarySigningBytes(b))
	if err != nil {
		return err
	}
	b.NotarySig = sig
	return nil
}

// pubKey extracts the public key embedded in a peer ID (Ed25519 IDs embed
// it).
func pubKey(raw []byte) (peer.ID, crypto.PubKey, error) {
	id, err := peer.IDFromBytes(raw)
	if err != nil {
		return "", nil, ErrBadPeerID
	}
	pk, err := id.ExtractPublicKey()
	if err != nil || pk == nil {
		return "", nil, ErrBadPeerID
	}
	return id, pk, nil
}

// verifySigs checks the owner signature and, if present, the notary's.
func verifySigs(b *pb.Block) error {
	_, pk, err := pubKey(b.Account)
	if err != nil {
		return err
	}
	if ok, err := pk.Verify(OwnerSigningBytes(b), b.OwnerSig); err != nil || !ok {
		return ErrBadSignature
	}
	if len(b.Notary) == 0 && len(b.NotarySig) == 0 {
		return nil
	}
	_, npk, err := pubKey(b.Notary)
	if err != nil {
		return err
	}
	if ok, err := npk.Verify(NotarySigningBytes(b), b.NotarySig); err != nil || !ok {
		return ErrBadSignature
	}
	return nil
}

// EncodeBlock is the canonical wire/storage encoding of b.
func EncodeBlock(b *pb.Block) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(b)
}

// DecodeBlock parses a block from its canonical encoding. It rejects
// oversized input, unknown fields and any non-canonical encoding (one block,
// one byte string). It does not verify signatures.
func DecodeBlock(data []byte) (*pb.Block, error) {
	if len(data) > MaxBlockSize {
		return nil, fmt.Errorf("%w: block of %d bytes", ErrMalformed, len(data))
	}
	b := new(pb.Block)
	if err := proto.Unmarshal(data, b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(b.ProtoReflect().GetUnknown()) > 0 {
		return nil, fmt.Errorf("%w: unknown fields", ErrMalformed)
	}
	for _, l := range b.Lines {
		if l == nil || len(l.ProtoReflect().GetUnknown()) > 0 {
			return nil, fmt.Errorf("%w: unknown fields", ErrMalformed)
		}
	}
	again, err := EncodeBlock(b)
	if err != nil || !bytes.Equal(again, data) {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrMalformed)
	}
	return b, nil
}

// Clone deep-copies a block.
func Clone(b *pb.Block) *pb.Block { return proto.Clone(b).(*pb.Block) }

// AccountOf returns the block's account as a peer ID (no checks).
func AccountOf(b *pb.Block) peer.ID { return peer.ID(b.Account) }
