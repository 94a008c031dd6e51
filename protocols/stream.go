package protocols

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"google.golang.org/protobuf/proto"
)

// Exchange is one request/response protocol's shape: its maximum message
// size and its stream deadline, and who hears of each message.
type Exchange struct {
	Max     int
	Timeout time.Duration
	Trace   Tracer // may be nil
	// Service names the resource-manager service a served stream is
	// attached to ("" leaves it in the protocol's scope only).
	Service string
}

// Tracer hears of every message sent ("out") or received ("in"): the event
// log and metrics hang off it. It must be cheap and must not block.
type Tracer func(dir string, p peer.ID, proto protocol.ID, size int, err error)

func (x Exchange) trace(dir string, p peer.ID, id protocol.ID, m proto.Message, err error) {
	if x.Trace != nil {
		x.Trace(dir, p, id, proto.Size(m), err)
	}
}

// Serve handles one request/response stream the way every handler here
// does: deadline, size-limited read, handle, write, close; reset on error
// and on panic. A request that cannot be decoded is answered with
// bad(err) so the peer learns why, then the stream is closed. It returns
// the handling error for the caller's metrics and event log.
func Serve[Req proto.Message, Resp proto.Message](s network.Stream, x Exchange, req Req,
	handle func(Req) Resp, bad func(error) Resp) (err error) {
	defer func() {
		if r := recover(); r != nil {
			_ = s.Reset()
			err = fmt.Errorf("protocols: panic in %s handler: %v", s.Protocol(), r)
		}
	}()
	_ = s.SetDeadline(time.Now().Add(x.Timeout))
	// Attach to the service's scope and reserve the request and response
	// buffers before reading anything (go-libp2p's holepunch and identify
	// handlers do the same).
	if x.Service != "" {
		if err := s.Scope().SetService(x.Service); err != nil {
			_ = s.Reset()
			return fmt.Errorf("protocols: attach %s to service %s: %w", s.Protocol(), x.Service, err)
		}
	}
	release, err := Reserve(s, x.Max, network.ReservationPriorityAlways)
	if err != nil {
		_ = s.Reset()
		return err
	}
	defer release()
	var resp Resp
	remote := s.Conn().RemotePeer()
	rerr := NewReader(s, x.Max).Read(req)
	x.trace("in", remote, s.Protocol(), req, rerr)
	if rerr != nil {
		if !errors.Is(rerr, ErrTooLarge) && !errors.Is(rerr, ErrMalformed) {
			_ = s.Reset()
			return rerr
		}
		resp, err = bad(rerr), rerr
	} else {
		resp = handle(req)
	}
	werr := NewWriter(s, x.Max).Write(resp)
	x.trace("out", remote, s.Protocol(), resp, errors.Join(FromPB(errorOf(resp)), werr))
	if werr != nil {
		_ = s.Reset()
		return errors.Join(err, werr)
	}
	return errors.Join(err, s.Close())
}

// Call opens a stream to p offering protos (newest first), sends req and
// reads resp. It returns the protocol the peer chose.
func Call(ctx context.Context, h host.Host, p peer.ID, protos []protocol.ID, x Exchange, req, resp proto.Message) (protocol.ID, error) {
	ctx, cancel := context.WithTimeout(ctx, x.Timeout)
	defer cancel()
	s, err := h.NewStream(ctx, p, protos...)
	if err != nil {
		return "", fmt.Errorf("open %s to %s: %w", protos[0], shortID(p), err)
	}
	deadline, _ := ctx.Deadline()
	_ = s.SetDeadline(deadline)
	// Close the stream when ctx ends early, so a blocked read returns.
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	err = NewWriter(s, x.Max).Write(req)
	x.trace("out", p, s.Protocol(), req, err)
	if err != nil {
		_ = s.Reset()
		return s.Protocol(), fmt.Errorf("%s to %s: send: %w", s.Protocol(), shortID(p), err)
	}
	_ = s.CloseWrite()
	err = NewReader(s, x.Max).Read(resp)
	x.trace("in", p, s.Protocol(), resp, errors.Join(err, FromPB(errorOf(resp))))
	if err != nil {
		_ = s.Reset()
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return s.Protocol(), fmt.Errorf("%s to %s: receive: %w", s.Protocol(), shortID(p), err)
	}
	_ = s.Close()
	return s.Protocol(), nil
}

// errorOf finds the typed error field a response carries, if any: every
// response message here has one (error, or decline for bids).
func errorOf(m proto.Message) *pb.Error {
	switch m := m.(type) {
	case interface{ GetError() *pb.Error }:
		return m.GetError()
	case interface{ GetDecline() *pb.Error }:
		return m.GetDecline()
	}
	return nil
}

func shortID(p peer.ID) string {
	s := p.String()
	if len(s) > 12 {
		return s[len(s)-8:]
	}
	return s
}

// Handle wraps a stream handler the way go-libp2p's own protocols start
// theirs: the stream is attached to the service's resource-manager scope
// (so its memory and stream counts are accounted and limited per service),
// and a panic in fn resets the stream instead of killing the process. fn
// returns nil after closing or resetting the stream itself; an error resets
// it. onErr (may be nil) hears of errors and panics.
func Handle(service string, fn func(network.Stream) error, onErr func(network.Stream, error)) network.StreamHandler {
	return func(s network.Stream) {
		err := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("protocols: panic in %s handler: %v", s.Protocol(), r)
				}
			}()
			if service != "" {
				if err := s.Scope().SetService(service); err != nil {
					return fmt.Errorf("protocols: attach %s to service %s: %w", s.Protocol(), service, err)
				}
			}
			return fn(s)
		}()
		if err != nil {
			_ = s.Reset()
			if onErr != nil {
				onErr(s, err)
			}
		}
	}
}

// Reserve reserves n bytes of memory for what s buffers, from its
// resource-manager scope (and so from its service's, peer's and the
// system's). The returned release gives them back; it is safe to call
// once. A refused reservation is the resource manager saying the node is
// at its limit: the caller answers RATE_LIMITED or resets, and buffers
// nothing.
func Reserve(s network.Stream, n int, prio uint8) (release func(), err error) {
	if n <= 0 {
		return func() {}, nil
	}
	if err := s.Scope().ReserveMemory(n, prio); err != nil {
		return nil, fmt.Errorf("protocols: reserve %d bytes for %s: %w", n, s.Protocol(), err)
	}
	var once sync.Once
	return func() { once.Do(func() { s.Scope().ReleaseMemory(n) }) }, nil
}

// Go runs f in a new goroutine that recovers a panic into onPanic (which
// may be nil), so a bug reached by one peer's input ends that work, not the
// node. The caller still owns the goroutine (WaitGroup and context).
func Go(f func(), onPanic func(error)) {
	go func() {
		defer func() {
			if r := recover(); r != nil && onPanic != nil {
				onPanic(fmt.Errorf("protocols: panic: %v", r))
			}
		}()
		f()
	}()
}
