package protocols

import (
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"
)

// Protocol IDs. Each protocol is versioned; versions live side by side.
// Dialers offer the newest first and adapt to what was chosen
// (network.Stream.Protocol()).
const (
	Register protocol.ID = "/p2pjobs/register/1.0.0"
	Discover protocol.ID = "/p2pjobs/discover/1.0.0"
	Bid10    protocol.ID = "/p2pjobs/bid/1.0.0"
	Bid11    protocol.ID = "/p2pjobs/bid/1.1.0"
	Job      protocol.ID = "/p2pjobs/job/1.0.0"
	Solicit  protocol.ID = "/p2pjobs/solicit/1.0.0"
	Overlay  protocol.ID = "/p2pjobs/overlay/1.0.0"
	Ledger   protocol.ID = "/p2pjobs/ledger/1.0.0"
	// Reverse is connection reversal between NATed peers (node/reach):
	// libp2p's DCUtR messages (holepunch/pb) on a protocol of our own.
	Reverse protocol.ID = "/p2pjobs/reverse/1.0.0"

	// DHTPrefix makes the Kademlia DHT private to p2pjobs nodes.
	DHTPrefix protocol.ID = "/p2pjobs"
)

// BidVersions lists the bid protocol versions, newest first.
var BidVersions = []protocol.ID{Bid11, Bid10}

// Maximum message sizes, per protocol. Large payloads (modules) are chunked.
const (
	MaxRegisterMsg = 16 << 10
	MaxDiscoverMsg = 1 << 20
	MaxBidMsg      = 16 << 10
	// MaxJobMsg bounds one job request or result, inline inputs and outputs
	// included. Modules travel as chunks of at most ModuleChunkSize.
	MaxJobMsg       = 8 << 20
	ModuleChunkSize = 256 << 10
	// MaxModuleSize bounds a whole module a worker will accept.
	MaxModuleSize = 64 << 20
	// MaxSolicitMsg bounds a solicitation and an aggregated proffer (a few
	// hundred signed bids).
	MaxSolicitMsg = 1 << 20
	// MaxLedgerMsg bounds one /p2pjobs/ledger request or response (a whole
	// chain arriving by hand-over travels in one request); it equals
	// ledger.MaxRequestSize.
	MaxLedgerMsg  = 4 << 20
	MaxOverlayMsg = 1 << 10
	// MaxReverseMsg bounds a reversal message: a few addresses.
	MaxReverseMsg = 4 << 10
)

// Stream deadlines.
const (
	RegisterTimeout = 10 * time.Second
	DiscoverTimeout = 15 * time.Second
	BidTimeout      = 10 * time.Second
	OverlayTimeout  = 10 * time.Second
	// LedgerTimeout bounds one ledger request/response exchange.
	LedgerTimeout = 30 * time.Second
	// JobIdleTimeout bounds how long a job stream may stay silent in either
	// direction; the deadline is pushed forward on every message.
	JobIdleTimeout = 2 * time.Minute
)
