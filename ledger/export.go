package ledger

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// ExportMagic starts an export file. After it, each block is its canonical
// encoding (EncodeBlock) preceded by its length as an unsigned varint. Chains
// may be concatenated; each chain's blocks appear in seq order.
const ExportMagic = "p2pjobs-ledger-export/v1\n"

// Export writes blocks as a portable file.
func Export(w io.Writer, blocks []*pb.Block) error {
	bw := bufio.NewWriter(w)
	if _, err := bw.WriteString(ExportMagic); err != nil {
		return err
	}
	var lb [binary.MaxVarintLen64]byte
	for _, b := range blocks {
		enc, err := EncodeBlock(b)
		if err != nil {
			return err
		}
		bw.Write(lb[:binary.PutUvarint(lb[:], uint64(len(enc)))])
		bw.Write(enc)
	}
	return bw.Flush()
}

// Import reads an export file. Blocks are decoded strictly (DecodeBlock)
// but not verified: pass them to VerifyChain or Audit (GroupChains).
func Import(r io.Reader) ([]*pb.Block, error) {
	br := bufio.NewReader(r)
	magic := make([]byte, len(ExportMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != ExportMagic {
		return nil, fmt.Errorf("%w: not a ledger export", ErrMalformed)
	}
	var out []*pb.Block
	for {
		n, err := binary.ReadUvarint(br)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if n > MaxBlockSize {
			return nil, fmt.Errorf("%w: block of %d bytes", ErrMalformed, n)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, fmt.Errorf("%w: truncated: %v", ErrMalformed, err)
		}
		b, err := DecodeBlock(buf)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
}

// GroupChains splits blocks by account, keeping their order (for Audit).
func GroupChains(blocks []*pb.Block) map[peer.ID][]*pb.Block {
	m := map[peer.ID][]*pb.Block{}
	for _, b := range blocks {
		m[peer.ID(b.Account)] = append(m[peer.ID(b.Account)], b)
	}
	return m
}
