package overlay

import (
	"errors"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Stats are a service's counters since it started.
type Stats struct {
	Received   int64            // well-formed solicitations received, duplicates included
	Duplicates int64            // of those, floods already handled with as many hops left
	Forwarded  int64            // solicitations sent on to neighbours
	Bids       int64            // own bids made for solicitations
	ForgedBids int64            // bids in received aggregates dropped as forged or misdirected
	Rejected   map[string]int64 // refused solicitations and links, by error code name
	Closed     int64            // connections opened by probes and closed as not needed
}

// counters is the live form of Stats.
type counters struct {
	received, duplicates, forwarded, bids, forged, closed atomic.Int64

	mu       sync.Mutex // guards rejected
	rejected map[string]int64
}

func (c *counters) reject(err error) {
	var re *protocols.RemoteError
	code := pb.ErrorCode_INTERNAL
	if errors.As(err, &re) {
		code = re.Code
	} else if e := protocols.ToPB(err); e != nil {
		code = e.Code
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rejected == nil {
		c.rejected = map[string]int64{}
	}
	c.rejected[protocols.CodeName(code)]++
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	rej := maps.Clone(c.rejected)
	c.mu.Unlock()
	if rej == nil {
		rej = map[string]int64{}
	}
	return Stats{Received: c.received.Load(), Duplicates: c.duplicates.Load(), Forwarded: c.forwarded.Load(),
		Bids: c.bids.Load(), ForgedBids: c.forged.Load(), Rejected: rej, Closed: c.closed.Load()}
}
