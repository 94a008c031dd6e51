package authority

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Limits on what a worker may register, so a hostile peer cannot make the
// registry hold unbounded data.
const (
	maxAddrs        = 32
	maxAddrLen      = 512
	maxExecutors    = 8
	maxNameLen      = 32
	maxAgentLen     = 128
	maxDiscoverPage = 500
	defaultPage     = 100
)

// Service is the authority's registry service.
type Service struct {
	h      host.Host
	log    *events.Log
	now    func() time.Time
	cfg    options
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu  sync.Mutex // guards reg
	reg *Registry
}

type options struct {
	ttl, heartbeat     time.Duration
	maxWorkers         int
	peers              []ma.Multiaddr
	overlayDegree      uint32
	overlayRebuild     time.Duration
	maxPeerConnections uint32
	now                func() time.Time
}

// Option configures a Service.
type Option func(*options)

// WithTTL sets how long a registration lives without a heartbeat, and the
// heartbeat interval pushed to workers.
func WithTTL(ttl, heartbeat time.Duration) Option {
	return func(o *options) { o.ttl, o.heartbeat = ttl, heartbeat }
}

// WithMaxWorkers caps the registry.
func WithMaxWorkers(n int) Option { return func(o *options) { o.maxWorkers = n } }

// WithPeers names the other authorities, pushed to workers in settings.
func WithPeers(addrs []ma.Multiaddr) Option { return func(o *options) { o.peers = addrs } }

// WithOverlay sets the overlay settings pushed to workers.
func WithOverlay(degree uint32, rebuild time.Duration) Option {
	return func(o *options) { o.overlayDegree, o.overlayRebuild = degree, rebuild }
}

// WithClock injects time (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// New starts the registry service on h.
func New(h host.Host, log *events.Log, opts ...Option) *Service {
	o := options{ttl: 90 * time.Second, heartbeat: 30 * time.Second, maxWorkers: 100000,
		overlayDegree: 4, overlayRebuild: 10 * time.Minute, maxPeerConnections: 8, now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{h: h, log: log, now: o.now, cfg: o, ctx: ctx, cancel: cancel, reg: NewRegistry(o.ttl, o.maxWorkers)}
	h.SetStreamHandler(protocols.Register, s.handleRegister)
	h.SetStreamHandler(protocols.Discover, s.handleDiscover)
	s.wg.Add(1)
	go s.expireLoop()
	return s
}

// Close stops the service and waits for its goroutines.
func (s *Service) Close() error {
	s.h.RemoveStreamHandler(protocols.Register)
	s.h.RemoveStreamHandler(protocols.Discover)
	s.cancel()
	s.wg.Wait()
	return nil
}

// Workers is the number of live registrations.
func (s *Service) Workers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reg.Len()
}

// Registered copies the live registrations, for a node's live view.
func (s *Service) Registered() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Record, 0, s.reg.Len())
	for _, r := range s.reg.workers {
		out = append(out, Record{ID: r.ID, Req: proto.Clone(r.Req).(*pb.RegisterRequest), Expires: r.Expires})
	}
	return out
}

// TTL is how long a registration lives after its last heartbeat.
func (s *Service) TTL() time.Duration { return s.reg.ttl }

func (s *Service) expireLoop() {
	defer s.wg.Done()
	t := time.NewTicker(max(s.cfg.ttl/4, 50*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			gone := s.reg.Expire(s.now())
			s.mu.Unlock()
			for _, id := range gone {
				s.log.Emit(events.Event{Kind: events.Expired, Peer: id.String()})
			}
		}
	}
}

var registerX = protocols.Exchange{Max: protocols.MaxRegisterMsg, Timeout: protocols.RegisterTimeout}

func (s *Service) handleRegister(st network.Stream) {
	remote := st.Conn().RemotePeer()
	err := protocols.Serve(st, s.traced(registerX), &pb.RegisterRequest{},
		func(req *pb.RegisterRequest) *pb.RegisterResponse {
			return s.register(remote, st.Conn().RemoteMultiaddr(), req)
		},
		func(err error) *pb.RegisterResponse { return &pb.RegisterResponse{Error: protocols.ToPB(err)} })
	if err != nil {
		s.log.Emit(events.Event{Kind: events.Error, Peer: remote.String(), Proto: string(protocols.Register), Err: err.Error()})
	}
}

// ValidateRegister checks a registration against the size limits.
func ValidateRegister(req *pb.RegisterRequest) error {
	if len(req.Addrs) > maxAddrs {
		return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "%d addresses, at most %d", len(req.Addrs), maxAddrs)
	}
	for _, a := range req.Addrs {
		if len(a) > maxAddrLen {
			return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "address of %d bytes", len(a))
		}
		if _, err := ma.NewMultiaddrBytes(a); err != nil {
			return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "bad multiaddr: %v", err)
		}
	}
	if len(req.Executors) == 0 || len(req.Executors) > maxExecutors {
		return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "%d executors, want 1 to %d", len(req.Executors), maxExecutors)
	}
	for _, e := range req.Executors {
		if e == "" || len(e) > maxNameLen {
			return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "bad executor name %q", e)
		}
	}
	if len(req.Agent) > maxAgentLen {
		return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "agent string of %d bytes", len(req.Agent))
	}
	if req.Slots == 0 || req.FreeSlots > req.Slots {
		return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "slots %d, free %d", req.Slots, req.FreeSlots)
	}
	return nil
}

func (s *Service) register(id peer.ID, observed ma.Multiaddr, req *pb.RegisterRequest) *pb.RegisterResponse {
	if err := ValidateRegister(req); err != nil {
		return &pb.RegisterResponse{Error: protocols.ToPB(err)}
	}
	s.mu.Lock()
	rec, isNew, err := s.reg.Register(id, req, s.now())
	var expires time.Time
	if err == nil {
		expires = rec.Expires
	}
	s.mu.Unlock()
	if err != nil {
		return &pb.RegisterResponse{Error: &pb.Error{Code: pb.ErrorCode_QUEUE_FULL, Message: err.Error()}}
	}
	if isNew {
		s.log.Emit(events.Event{Kind: events.Registered, Peer: id.String(), Attrs: map[string]any{"observed": observed.String()}})
	}
	peers := make([][]byte, 0, len(s.cfg.peers))
	for _, a := range s.cfg.peers {
		peers = append(peers, a.Bytes())
	}
	return &pb.RegisterResponse{
		Settings: &pb.Settings{
			Authorities:           peers,
			HeartbeatSeconds:      uint32(max(1, s.cfg.heartbeat/time.Second)),
			TtlSeconds:            uint32(max(1, s.cfg.ttl/time.Second)),
			OverlayDegree:         s.cfg.overlayDegree,
			OverlayRebuildSeconds: uint32(s.cfg.overlayRebuild / time.Second),
			MaxPeerConnections:    s.cfg.maxPeerConnections,
		},
		ObservedAddr:  observed.Bytes(),
		ExpiresUnixMs: expires.UnixMilli(),
	}
}

var discoverX = protocols.Exchange{Max: protocols.MaxDiscoverMsg, Timeout: protocols.DiscoverTimeout}

func (s *Service) handleDiscover(st network.Stream) {
	remote := st.Conn().RemotePeer()
	err := protocols.Serve(st, s.traced(discoverX), &pb.DiscoverRequest{}, s.discover,
		func(err error) *pb.DiscoverResponse { return &pb.DiscoverResponse{Error: protocols.ToPB(err)} })
	if err != nil {
		s.log.Emit(events.Event{Kind: events.Error, Peer: remote.String(), Proto: string(protocols.Discover), Err: err.Error()})
	}
}

func (s *Service) discover(req *pb.DiscoverRequest) *pb.DiscoverResponse {
	if len(req.Executor) > maxNameLen || len(req.Cursor) > 128 {
		return &pb.DiscoverResponse{Error: &pb.Error{Code: pb.ErrorCode_BAD_REQUEST, Message: "executor or cursor too long"}}
	}
	limit := int(req.Limit)
	if limit <= 0 {
		limit = defaultPage
	}
	limit = min(limit, maxDiscoverPage)
	f := Filter{Executor: req.Executor, MinMemory: req.MinMemoryBytes, MaxPrice: req.MaxPrice}
	// Only the O(1) snapshot happens under the lock: paging, counting and
	// encoding read the snapshot while registrations and heartbeats go on.
	now := s.now()
	s.mu.Lock()
	view := s.reg.Snapshot(f)
	s.mu.Unlock()
	page, next, total := view.Discover(f, req.Cursor, limit, now)
	resp := &pb.DiscoverResponse{NextCursor: next, Total: uint32(total), Workers: make([]*pb.WorkerRecord, 0, len(page))}
	// Records are up to ~17 KB each (ValidateRegister): a full page of
	// large ones would not fit in one message. Stop short of the cap and
	// let the cursor carry on from the last record sent.
	room := protocols.MaxDiscoverMsg - 1024 // cursor, total and tags
	for i, r := range page {
		w := &pb.WorkerRecord{
			PeerId: []byte(r.ID), Addrs: r.Req.Addrs, Executors: r.Req.Executors, MemoryBytes: r.Req.MemoryBytes,
			PricePerJob: r.Req.PricePerJob, Capacity: r.Req.Capacity, Slots: r.Req.Slots, FreeSlots: r.Req.FreeSlots,
			ExpiresUnixMs: r.Expires.UnixMilli(), Agent: r.Req.Agent,
		}
		if room -= protowire.SizeBytes(proto.Size(w)) + 1; room < 0 && i > 0 {
			resp.NextCursor = page[i-1].Key
			break
		}
		resp.Workers = append(resp.Workers, w)
	}
	return resp
}

// String describes the service for logs.
func (s *Service) String() string { return fmt.Sprintf("authority(%d workers)", s.Workers()) }

// traced hooks the event log to an exchange's messages.
func (s *Service) traced(x protocols.Exchange) protocols.Exchange {
	x.Trace = s.log.Message
	return x
}
