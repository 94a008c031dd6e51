package ledgersvc

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Protocol constants.
const (
	// ID is the ledger protocol.
	ID = protocols.Ledger
	// MaxMsg bounds one request or response frame.
	MaxMsg = protocols.MaxLedgerMsg
	// StreamTimeout bounds one request/response exchange.
	StreamTimeout = protocols.LedgerTimeout
	// ServiceName is the resource-manager scope of the service.
	ServiceName = "p2pjobs.ledger"
	// maxGroup bounds the notary outputs committed in one transaction.
	maxGroup = 512
)

// Errors of the service.
var (
	ErrClosed  = errors.New("ledgersvc: service closed")
	ErrTooBig  = errors.New("ledgersvc: frame too large")
	ErrBadFram = errors.New("ledgersvc: malformed frame")
)

// Option configures a Service.
type Option func(*svcOptions)

type svcOptions struct {
	log *events.Log
	now func() time.Time
}

// WithEvents sets the event log (forks, the authority's own blocks).
func WithEvents(l *events.Log) Option { return func(o *svcOptions) { o.log = l } }

// WithClock injects time (tests).
func WithClock(now func() time.Time) Option { return func(o *svcOptions) { o.now = now } }

// Service is an authority's ledger service: its notary behind
// /p2pjobs/ledger/1.0.0, persisting every decision before it replies.
type Service struct {
	h     host.Host
	store ledger.Store
	cfg   ledger.NotaryConfig
	o     svcOptions

	mu sync.Mutex // the notary lock: Handle and enqueue happen in one order
	// guarded by mu
	n *ledger.Notary

	qmu sync.Mutex // guards queue
	// guarded by qmu
	queue []*pending

	wake     chan struct{} // capacity 1: the committer has work
	stop     chan struct{} // closed by Close after the handlers ended
	done     chan struct{} // closed when the committer ends
	closeMu  sync.RWMutex  // guards closed and handlers.Add
	closed   bool
	handlers sync.WaitGroup
}

// pending is one notary output waiting for its commit.
type pending struct {
	out  ledger.Output
	done chan error // capacity 1
}

// New restores the notary from store (or opens the authority's chain with
// a genesis on first start), starts the committer and serves the protocol
// on h. store stays the caller's: Close does not close it.
func New(h host.Host, store ledger.Store, cfg ledger.NotaryConfig, opts ...Option) (*Service, error) {
	o := svcOptions{now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	s := &Service{h: h, store: store, cfg: cfg, o: o, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	n, err := Restore(store, cfg, o.now())
	if err != nil {
		return nil, err
	}
	s.n = n
	go s.commitLoop()
	h.SetStreamHandler(ID, s.handleStream)
	return s, nil
}

// Restore builds a notary from what store holds, verifying every chain; on
// an empty store it writes the authority's genesis.
func Restore(store ledger.Store, cfg ledger.NotaryConfig, now time.Time) (*ledger.Notary, error) {
	n, err := ledger.NewNotary(cfg)
	if err != nil {
		return nil, fmt.Errorf("ledgersvc: notary: %w", err)
	}
	ids, err := store.Accounts()
	if err != nil {
		return nil, fmt.Errorf("ledgersvc: restore: %w", err)
	}
	var rs ledger.RestoreState
	haveOwn := false
	for _, id := range ids {
		chain, err := store.Chain(id, 0, 0)
		if err != nil {
			return nil, fmt.Errorf("ledgersvc: restore %s: %w", id, err)
		}
		rs.Chains = append(rs.Chains, chain)
		if id != n.ID() {
			continue
		}
		haveOwn = len(chain) > 0
		for _, b := range chain {
			if b.Kind != pb.BlockKind_BLOCK_ESCROW_RELEASE {
				continue
			}
			st, err := store.Settlement(ledger.Hash(b))
			if err != nil {
				return nil, fmt.Errorf("ledgersvc: restore settlement of #%d: %w", b.Seq, err)
			}
			rs.Settlements = append(rs.Settlements, st)
		}
	}
	if rs.Notes, err = store.Notes(); err != nil {
		return nil, fmt.Errorf("ledgersvc: restore notes: %w", err)
	}
	if rs.Evidence, err = store.Evidence(); err != nil {
		return nil, fmt.Errorf("ledgersvc: restore evidence: %w", err)
	}
	if err := n.Restore(rs); err != nil {
		return nil, fmt.Errorf("ledgersvc: restore: %w", err)
	}
	if !haveOwn {
		out, err := n.Genesis(now)
		if err != nil {
			return nil, fmt.Errorf("ledgersvc: genesis: %w", err)
		}
		if err := store.Commit(out); err != nil {
			return nil, fmt.Errorf("ledgersvc: genesis: %w", err)
		}
	}
	return n, nil
}

// ID is the authority's peer ID.
func (s *Service) ID() peer.ID { return s.h.ID() }

// Store is the service's store (read it; write only through Do).
func (s *Service) Store() ledger.Store { return s.store }

// Do decides one request from the authenticated peer from, waits until
// its output is committed and returns the reply. Local callers (mint from
// the operator's API, benchmarks) use it as the stream handler does.
func (s *Service) Do(ctx context.Context, req *pb.LedgerRequest, from peer.ID) *pb.LedgerResponse {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return &pb.LedgerResponse{Error: &pb.Error{Code: pb.ErrorCode_SHUTTING_DOWN, Message: ErrClosed.Error()}}
	}
	s.handlers.Add(1)
	s.closeMu.RUnlock()
	defer s.handlers.Done()
	return s.do(ctx, req, from)
}

func (s *Service) do(ctx context.Context, req *pb.LedgerRequest, from peer.ID) *pb.LedgerResponse {
	if r, ok := req.GetReq().(*pb.LedgerRequest_Register); ok && len(r.Register.GetChain()) == 1 && from != s.h.ID() {
		if err := s.homedElsewhere(ctx, peer.ID(r.Register.Chain[0].GetAccount())); err != nil {
			return &pb.LedgerResponse{Error: ledger.ToPB(err)}
		}
	}
	s.mu.Lock()
	if s.n == nil { // a failed commit could not be recovered from
		s.mu.Unlock()
		return internal(errors.New("ledgersvc: notary unavailable after a storage failure"))
	}
	resp, out := ledger.Handle(s.n, s.store, req, from, s.o.now())
	var p *pending
	// A retry's answer (out.Reply) persists nothing, but it is sent only
	// after what was queued before it is durable: it waits its turn.
	if !out.Empty() || len(out.Reply) > 0 {
		p = &pending{out: out, done: make(chan error, 1)}
		s.qmu.Lock()
		s.queue = append(s.queue, p)
		s.qmu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	if p == nil {
		return resp
	}
	// The committer always answers (Close waits for handlers before it
	// stops the committer), so this wait is bounded by one commit.
	if err := <-p.done; err != nil {
		return internal(err)
	}
	if out.Evidence != nil {
		s.o.log.Emit(events.Event{Kind: events.Error, Peer: from.String(), Proto: string(ID),
			Err: "ledger fork: " + resp.GetError().GetMessage(), Attrs: map[string]any{"fork": true,
				"account": peer.ID(out.Evidence.GetSecond().GetAccount()).String(), "seq": out.Evidence.GetSecond().GetSeq()}})
	}
	s.emitOwn(out.Blocks)
	_ = ctx
	return resp
}

// homeCheckTimeout bounds the question to another authority.
const homeCheckTimeout = 3 * time.Second

// homedElsewhere refuses a genesis for an account another trusted
// authority already holds ("one account, one home"). An authority that
// does not answer is skipped: points stay credited once without this
// check (an out-block names the one home that may claim it, doc.go); it
// only spares a user an account split over two homes.
func (s *Service) homedElsewhere(ctx context.Context, account peer.ID) error {
	if s.notaryHolds(account) {
		return nil // a retry here: the notary answers it
	}
	for t := range s.cfg.Trust {
		if t == s.h.ID() || len(s.h.Peerstore().Addrs(t)) == 0 && s.h.Network().Connectedness(t) != network.Connected {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, homeCheckTimeout)
		resp, err := Call(cctx, s.h, t, &pb.LedgerRequest{Req: &pb.LedgerRequest_GetHead{GetHead: &pb.GetHeadRequest{Account: []byte(account)}}})
		cancel()
		if err == nil && resp.GetHead() != nil {
			return fmt.Errorf("%w: %s is homed at %s (hand it over from there instead)", ledger.ErrHomedElsewhere, account, peer.ID(resp.GetHead().GetHome()))
		}
	}
	return nil
}

// notaryHolds reports whether the notary holds account.
func (s *Service) notaryHolds(account peer.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		return false
	}
	_, err := s.n.Head(account)
	return err == nil
}

func internal(err error) *pb.LedgerResponse {
	return &pb.LedgerResponse{Error: &pb.Error{Code: pb.ErrorCode_INTERNAL, Message: err.Error()}}
}

// emitOwn logs the authority's own blocks (mint, release, refund).
func (s *Service) emitOwn(blocks []*pb.Block) {
	if s.o.log == nil {
		return
	}
	for _, b := range blocks {
		if peer.ID(b.Account) == s.h.ID() {
			emitBlock(s.o.log, b, 0, false)
		}
	}
}

// emitBlock logs one block of the node's own chain.
func emitBlock(l *events.Log, b *pb.Block, balance uint64, withBalance bool) {
	if l == nil {
		return
	}
	attrs := map[string]any{"seq": b.Seq, "kind": KindName(b.Kind), "amount": b.Amount}
	if withBalance {
		attrs["balance"] = balance
	}
	if len(b.Counterparty) > 0 {
		attrs["counterparty"] = peer.ID(b.Counterparty).String()
	}
	if b.Reference != "" {
		attrs["ref"] = b.Reference
	}
	l.Emit(events.Event{Kind: events.LedgerBlock, Attrs: attrs})
}

// KindName is a block kind as the event log and the CLI name it
// ("escrow_lock").
func KindName(k pb.BlockKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "BLOCK_"))
}

// commitLoop commits queued outputs in order, many per transaction.
func (s *Service) commitLoop() {
	defer close(s.done)
	for {
		select {
		case <-s.wake:
		case <-s.stop:
			s.commitQueued() // handlers have ended; nothing is left, normally
			return
		}
		s.commitQueued()
	}
}

func (s *Service) commitQueued() {
	for {
		s.qmu.Lock()
		n := 0
		for n < len(s.queue) && n < maxGroup {
			n++
			if s.queue[n-1].out.Evidence != nil {
				break // one evidence record per commit
			}
		}
		group := s.queue[:n:n]
		s.queue = s.queue[n:]
		s.qmu.Unlock()
		if len(group) == 0 {
			return
		}
		var merged ledger.Output
		for _, p := range group {
			merged.Blocks = append(merged.Blocks, p.out.Blocks...)
			merged.Settlements = append(merged.Settlements, p.out.Settlements...)
			merged.Notes = append(merged.Notes, p.out.Notes...)
			if p.out.Evidence != nil {
				merged.Evidence = p.out.Evidence
			}
		}
		var err error
		if !merged.Empty() {
			err = s.store.Commit(merged)
		}
		if err == nil {
			for _, p := range group {
				p.done <- nil
			}
			continue
		}
		s.recoverFrom(group, fmt.Errorf("ledgersvc: commit: %w", err))
	}
}

// recoverFrom fails the group whose commit failed and every output queued
// after it (they were decided on the state the failed commit would have
// made), then rebuilds the notary from the store.
func (s *Service) recoverFrom(group []*pending, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.qmu.Lock()
	rest := s.queue
	s.queue = nil
	s.qmu.Unlock()
	for _, p := range append(group, rest...) {
		p.done <- err
	}
	n, rerr := Restore(s.store, s.cfg, s.o.now())
	if rerr != nil {
		s.o.log.Emit(events.Event{Kind: events.Error, Proto: string(ID), Err: fmt.Sprintf("%v; restore: %v", err, rerr)})
		s.n = nil
		return
	}
	s.n = n
}

// Close stops serving: it removes the handler, waits for the requests in
// progress and their commits, and stops the committer. The store stays
// open.
func (s *Service) Close() error {
	s.h.RemoveStreamHandler(ID)
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.closeMu.Unlock()
	s.handlers.Wait()
	close(s.stop)
	<-s.done
	return nil
}

// handleStream serves one request: service scope, deadline, size-capped
// read, decide, commit, reply; reset on transport errors and panics.
func (s *Service) handleStream(st network.Stream) {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		_ = st.Reset()
		return
	}
	s.handlers.Add(1)
	s.closeMu.RUnlock()
	defer s.handlers.Done()
	defer func() {
		if r := recover(); r != nil {
			_ = st.Reset()
			s.o.log.Emit(events.Event{Kind: events.Error, Peer: st.Conn().RemotePeer().String(), Proto: string(ID),
				Err: fmt.Sprintf("ledgersvc: panic: %v", r)})
		}
	}()
	if err := st.Scope().SetService(ServiceName); err != nil {
		_ = st.Reset()
		return
	}
	_ = st.SetDeadline(time.Now().Add(StreamTimeout))
	from := st.Conn().RemotePeer()
	req, err := ReadRequest(bufio.NewReader(st), func(n int) error {
		return st.Scope().ReserveMemory(n, network.ReservationPriorityAlways)
	})
	var resp *pb.LedgerResponse
	switch {
	case err == nil:
		ctx, cancel := context.WithTimeout(context.Background(), StreamTimeout)
		resp = s.do(ctx, req, from)
		cancel()
	case errors.Is(err, ErrTooBig):
		resp = &pb.LedgerResponse{Error: &pb.Error{Code: pb.ErrorCode_TOO_LARGE, Message: err.Error()}}
	case errors.Is(err, ErrBadFram), errors.Is(err, ledger.ErrBadRequest):
		resp = &pb.LedgerResponse{Error: &pb.Error{Code: pb.ErrorCode_BAD_REQUEST, Message: err.Error()}}
	default: // transport: deadline, reset, EOF before a frame
		_ = st.Reset()
		return
	}
	fitResponse(resp)
	if err := protocols.NewWriter(st, MaxMsg).Write(resp); err != nil {
		_ = st.Reset()
		return
	}
	_ = st.Close()
}

// fitResponse shortens a chain page that would not fit in one frame.
func fitResponse(resp *pb.LedgerResponse) {
	for proto.Size(resp) > MaxMsg && len(resp.Blocks) > 1 {
		resp.Blocks = resp.Blocks[:len(resp.Blocks)/2]
	}
	if proto.Size(resp) > MaxMsg {
		*resp = pb.LedgerResponse{Error: &pb.Error{Code: pb.ErrorCode_TOO_LARGE, Message: "response over the frame cap"}}
	}
}

// ReadRequest reads one length-delimited ledger request with protocols'
// reader (size-capped: frames over MaxMsg are refused before they are
// read). reserve (may be nil) is asked for the frame's memory first.
// Errors: ErrTooBig, ErrBadFram for hostile bytes; the reader's own error
// (io.EOF, deadline, reset) for transport failures.
func ReadRequest(r *bufio.Reader, reserve func(int) error) (*pb.LedgerRequest, error) {
	if reserve != nil {
		// Peek the length prefix one byte at a time: a short request must
		// not wait for bytes that never come.
		for i := 1; i <= binary.MaxVarintLen64; i++ {
			head, err := r.Peek(i)
			if err != nil {
				break // the reader below reports it
			}
			if head[i-1] < 0x80 {
				if n, k := protowire.ConsumeVarint(head); k > 0 && n <= MaxMsg {
					if err := reserve(int(n)); err != nil {
						return nil, err
					}
				}
				break
			}
		}
	}
	req := new(pb.LedgerRequest)
	err := protocols.NewReader(r, MaxMsg).Read(req)
	switch {
	case err == nil:
		return req, nil
	case errors.Is(err, protocols.ErrTooLarge):
		return nil, fmt.Errorf("%w: %w", ErrTooBig, err)
	case errors.Is(err, protocols.ErrMalformed):
		return nil, fmt.Errorf("%w: %w", ErrBadFram, err)
	case err == io.EOF:
		return nil, err
	case isTransport(err), errors.Is(err, os.ErrDeadlineExceeded):
		return nil, err
	}
	return nil, fmt.Errorf("%w: %w", ErrBadFram, err)
}

func isTransport(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) || errors.Is(err, network.ErrReset) || errors.Is(err, io.ErrClosedPipe)
}
