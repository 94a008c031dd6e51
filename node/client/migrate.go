package client

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"
)

// errMoved ends a job stream that ran over a relay once a direct
// connection to its worker appeared: its jobs in flight finished on the
// relay, and the dispatcher opens the next stream, which libp2p puts on
// the direct connection. Not an error of the worker's.
var errMoved = errors.New("client: job stream moves to a direct connection")

// directAppears returns a channel closed when st, a stream over a relay,
// could move: a direct connection to its peer exists. It is nil (never
// ready) for a direct stream. stop releases the watch; call it when the
// stream ends.
//
// Hole punches and reversals can finish after dispatch gave up waiting
// (DirectWait), for instance on a lossy path; without this, a long series
// would stay on the relay to its end, paying the relay's latency and
// limits for nothing.
func (c *Client) directAppears(st network.Stream) (ready <-chan struct{}, stop func()) {
	if connKind(st.Conn()) == "direct" {
		return nil, func() {}
	}
	p := st.Conn().RemotePeer()
	ch := make(chan struct{})
	var once sync.Once
	fire := func() { once.Do(func() { close(ch) }) }
	nb := &network.NotifyBundle{ConnectedF: func(_ network.Network, cn network.Conn) {
		if cn.RemotePeer() == p && connKind(cn) == "direct" {
			fire()
		}
	}}
	c.h.Network().Notify(nb)
	// libp2p puts a new stream on a direct connection when there is one;
	// if it chose the relay although one exists, a new stream would not do
	// better, and moving would only spin: keep this stream where it is.
	if slices.ContainsFunc(c.h.Network().ConnsToPeer(p), func(cn network.Conn) bool { return connKind(cn) == "direct" }) {
		c.h.Network().StopNotify(nb)
		return nil, func() {}
	}
	return ch, func() { c.h.Network().StopNotify(nb) }
}

// either returns a channel closed when a or b is, or ctx ends; nil b is
// never ready. The goroutine ends with the first of the three.
func either(ctx context.Context, a, b <-chan struct{}) <-chan struct{} {
	if b == nil {
		return a
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		select {
		case <-a:
		case <-b:
		case <-ctx.Done():
		}
	}()
	return ch
}
