package worker

import (
	"github.com/libp2p/go-libp2p/core/peer"
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
