// Package worker implements the worker role: it registers with its
// authorities and heartbeats, answers bid requests (/p2pjobs/bid) and runs
// awarded jobs (/p2pjobs/job) in an executor. Pricing and decline decisions
// are pure functions (bid.go); this file is the libp2p adapter.
package worker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/node/exec"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Service is a running worker.
type Service struct {
	h         host.Host
	key       crypto.PrivKey
	log       *events.Log
	o         options
	executors map[string]exec.Executor
	slots     chan struct{} // semaphore: one token per running job
	queued    atomic.Int64  // jobs accepted and not finished (running + waiting for a slot)
	estJobNs  atomic.Int64  // moving average of job run time
	capacity  *Capacity     // the wonk, kept current (capacity.go)
	kept      *keptResults  // finished results, for a resumed client to collect (kept.go)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex          // guards the fields below
	bids     map[string]*openBid // by bid ID
	observed ma.Multiaddr        // our address as the last authority saw it
	regs     map[peer.ID]time.Time
	settings *pb.Settings
	loops    map[peer.ID]bool // authorities with a register loop
	kick     chan struct{}    // closed (and replaced) to re-register at once
}

type openBid struct {
	client  peer.ID
	price   uint64
	maxJobs uint32
	used    uint32
	expires time.Time
	// What the client's escrow lock was seen to hold (pay.go).
	locked      uint64
	lockExpires time.Time
}

type options struct {
	slots       int
	price       uint64
	maxMemory   uint64
	maxOutput   uint64 // ceilings on every job (the client's values are wishes under them)
	maxDisk     uint64
	maxFiles    int
	maxQueue    int
	maxTimeout  time.Duration
	bidTTL      time.Duration
	capacity    float64
	authorities []peer.AddrInfo
	agent       string
	onAuthority func(peer.AddrInfo)
	now         func() time.Time
	bidVersions []protocol.ID
	payee       Payee         // pay.go; nil: jobs are not paid for
	escrow      EscrowChecker // pay.go; nil: jobs are not checked against escrow
	horizon     time.Duration // the client's lock must outlive now + horizon
	// Pricing policy (bid.go): points per job-second, load surcharge, and
	// clients refused.
	pricePerSecond float64
	loadSurcharge  float64
	deny           []peer.ID
}

// Option configures a Service.
type Option func(*options)

// WithSlots sets the number of concurrent jobs.
func WithSlots(n int) Option { return func(o *options) { o.slots = n } }

// WithPrice sets the price per job in points.
func WithPrice(p uint64) Option { return func(o *options) { o.price = p } }

// WithMaxMemory sets the largest per-job memory accepted.
func WithMaxMemory(b uint64) Option { return func(o *options) { o.maxMemory = b } }

// WithCeilings sets the largest output (stdout, stderr and output files
// together), scratch disk and file count of any job. A bid request asking
// more is declined (LIMIT_EXCEEDED); a job asking more runs under these.
func WithCeilings(maxOutput, maxDisk uint64, maxFiles int) Option {
	return func(o *options) { o.maxOutput, o.maxDisk, o.maxFiles = maxOutput, maxDisk, maxFiles }
}

// WithMaxTimeout sets the longest run time of any job: a bid request asking
// more is declined (DEADLINE_IMPOSSIBLE); a job asking more runs under it.
func WithMaxTimeout(d time.Duration) Option { return func(o *options) { o.maxTimeout = d } }

// WithMaxQueue sets how many jobs may wait beyond the slots.
func WithMaxQueue(n int) Option { return func(o *options) { o.maxQueue = n } }

// WithCapacity sets the measured capacity (wonks) instead of measuring.
func WithCapacity(c float64) Option { return func(o *options) { o.capacity = c } }

// WithPricing sets the price per estimated job-second (on top of the base
// price per job, which stays the minimum) and the load surcharge (0.5:
// +50 % when fully loaded).
func WithPricing(perSecond, loadSurcharge float64) Option {
	return func(o *options) { o.pricePerSecond, o.loadSurcharge = perSecond, loadSurcharge }
}

// WithDeny refuses bids to these clients (CLIENT_REFUSED).
func WithDeny(clients ...peer.ID) Option {
	return func(o *options) { o.deny = append(o.deny, clients...) }
}

// WithAuthorities sets the authorities to register with.
func WithAuthorities(a []peer.AddrInfo) Option { return func(o *options) { o.authorities = a } }

// WithOnAuthority is called for each authority learned from settings.
func WithOnAuthority(f func(peer.AddrInfo)) Option { return func(o *options) { o.onAuthority = f } }

// WithClock injects time (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithBidVersions sets the bid protocol versions served (tests of version
// negotiation serve only the old one).
func WithBidVersions(v ...protocol.ID) Option { return func(o *options) { o.bidVersions = v } }

// WithAgent sets the software version reported to authorities.
func WithAgent(a string) Option { return func(o *options) { o.agent = a } }

// New starts a worker on h running jobs in executors (keyed by Name()).
func New(h host.Host, key crypto.PrivKey, executors []exec.Executor, log *events.Log, opts ...Option) (*Service, error) {
	o := options{slots: 1, price: 1, maxMemory: 512 << 20, maxOutput: exec.DefaultMaxOutputBytes,
		maxDisk: exec.DefaultDiskBytes, maxFiles: exec.DefaultMaxFiles, maxQueue: 10000, maxTimeout: time.Hour,
		bidTTL: 10 * time.Minute, now: time.Now, bidVersions: protocols.BidVersions, agent: "p2pnode"}
	for _, f := range opts {
		f(&o)
	}
	if o.slots < 1 {
		return nil, fmt.Errorf("worker: %d slots", o.slots)
	}
	if len(executors) == 0 {
		return nil, errors.New("worker: no executor")
	}
	capacity := FixedCapacity(o.capacity)
	if o.capacity == 0 {
		capacity = NewCapacity(MeasureCapacity, SystemLoad)
		o.capacity, _ = capacity.Now(0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{h: h, key: key, log: log, o: o, executors: map[string]exec.Executor{},
		slots: make(chan struct{}, o.slots), ctx: ctx, cancel: cancel, capacity: capacity,
		bids: map[string]*openBid{}, regs: map[peer.ID]time.Time{}, loops: map[peer.ID]bool{}, kick: make(chan struct{}), kept: newKept()}
	for _, e := range executors {
		s.executors[e.Name()] = e
	}
	s.estJobNs.Store(int64(100 * time.Millisecond))
	for _, v := range o.bidVersions {
		h.SetStreamHandler(v, s.handleBid)
	}
	h.SetStreamHandler(protocols.Job, s.handleJob)
	// Re-register at once when our addresses change (a relay reservation
	// made, a NAT mapping learned), so clients get addresses that work.
	sub, err := h.EventBus().Subscribe(new(event.EvtLocalAddressesUpdated))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("worker: %w", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case <-sub.Out():
				s.mu.Lock()
				close(s.kick)
				s.kick = make(chan struct{})
				s.mu.Unlock()
			}
		}
	}()
	for _, a := range o.authorities {
		s.AddAuthority(a)
	}
	return s, nil
}

// MaxAuthorities caps the authorities a worker registers with: each has a
// register loop for the worker's life, and any authority (or a peer that
// only claims to be one) can name others in its settings.
const MaxAuthorities = 64

// AddAuthority registers with a (and heartbeats) unless already doing so,
// or already registering with MaxAuthorities.
func (s *Service) AddAuthority(a peer.AddrInfo) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loops[a.ID] || s.ctx.Err() != nil || a.ID == s.h.ID() || len(s.loops) >= MaxAuthorities {
		return false
	}
	s.loops[a.ID] = true
	s.wg.Add(1)
	go s.registerLoop(a)
	return true
}

// Close stops accepting work, cancels running jobs and waits.
func (s *Service) Close() error {
	for _, v := range s.o.bidVersions {
		s.h.RemoveStreamHandler(v)
	}
	s.h.RemoveStreamHandler(protocols.Job)
	s.cancel()
	s.wg.Wait()
	return nil
}

// Capacity is the measured capacity in wonks.
func (s *Service) Capacity() float64 { return s.o.capacity }

// Slots is the number of concurrent job slots.
func (s *Service) Slots() int { return s.o.slots }

// Queued is the number of accepted, unfinished jobs.
func (s *Service) Queued() int { return int(s.queued.Load()) }

// Observed is this worker's address as an authority last saw it.
func (s *Service) Observed() ma.Multiaddr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.observed
}

// Registrations returns the authorities we are registered with and when.
func (s *Service) Registrations() map[peer.ID]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[peer.ID]time.Time, len(s.regs))
	for k, v := range s.regs {
		out[k] = v
	}
	return out
}

// Settings are the last settings an authority pushed (nil before the first).
func (s *Service) Settings() *pb.Settings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settings
}

func (s *Service) executorNames() []string {
	names := make([]string, 0, len(s.executors))
	for n := range s.executors {
		names = append(names, n)
	}
	return names
}

func (s *Service) registerRequest() *pb.RegisterRequest {
	addrs := s.h.Addrs()
	raw := make([][]byte, 0, len(addrs))
	for _, a := range addrs {
		raw = append(raw, a.Bytes())
		if len(raw) == 32 {
			break
		}
	}
	running := len(s.slots)
	return &pb.RegisterRequest{
		Addrs: raw, Executors: s.executorNames(), MemoryBytes: s.o.maxMemory, PricePerJob: s.o.price,
		Capacity: s.o.capacity, Slots: uint32(s.o.slots), FreeSlots: uint32(s.o.slots - running), Agent: s.o.agent,
	}
}

var registerX = protocols.Exchange{Max: protocols.MaxRegisterMsg, Timeout: protocols.RegisterTimeout}

// registerLoop registers with one authority and heartbeats. Every heartbeat
// is a full registration, so an authority that restarted (and forgot us)
// has us back at the next beat.
func (s *Service) registerLoop(a peer.AddrInfo) {
	defer s.wg.Done()
	s.h.Peerstore().AddAddrs(a.ID, a.Addrs, time.Hour)
	backoff := 250 * time.Millisecond
	wasRegistered := false
	for {
		wait := backoff
		s.mu.Lock()
		kick := s.kick // an address change from now on re-registers at once
		s.mu.Unlock()
		resp := &pb.RegisterResponse{}
		_, err := protocols.Call(s.ctx, s.h, a.ID, []protocol.ID{protocols.Register}, s.traced(registerX), s.registerRequest(), resp)
		if err == nil {
			err = protocols.FromPB(resp.Error)
		}
		switch {
		case s.ctx.Err() != nil:
			return
		case err != nil:
			if wasRegistered {
				s.log.Emit(events.Event{Kind: events.Error, Peer: a.ID.String(), Proto: string(protocols.Register), Err: err.Error()})
				wasRegistered = false
			}
			backoff = min(backoff*2, 15*time.Second)
		default:
			backoff = 250 * time.Millisecond
			s.onRegistered(a.ID, resp, !wasRegistered)
			wasRegistered = true
			wait = time.Duration(max(1, resp.GetSettings().GetHeartbeatSeconds())) * time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-kick:
			t.Stop()
		}
	}
}

func (s *Service) onRegistered(auth peer.ID, resp *pb.RegisterResponse, first bool) {
	obs, _ := ma.NewMultiaddrBytes(resp.ObservedAddr)
	s.mu.Lock()
	s.regs[auth] = s.o.now()
	if obs != nil {
		s.observed = obs
	}
	s.settings = resp.Settings
	s.mu.Unlock()
	// Register with every authority this one names, too.
	for _, raw := range resp.GetSettings().GetAuthorities() {
		a, err := ma.NewMultiaddrBytes(raw)
		if err != nil {
			continue
		}
		if ai, err := peer.AddrInfoFromP2pAddr(a); err == nil && s.AddAuthority(*ai) && s.o.onAuthority != nil {
			s.o.onAuthority(*ai)
		}
	}
	if first {
		attrs := map[string]any{}
		if obs != nil {
			attrs["observed"] = obs.String()
		}
		s.log.Emit(events.Event{Kind: events.Registered, Peer: auth.String(), Attrs: attrs})
	}
}

var bidX = protocols.Exchange{Max: protocols.MaxBidMsg, Timeout: protocols.BidTimeout, Service: ServiceName}

func (s *Service) handleBid(st network.Stream) {
	client := st.Conn().RemotePeer()
	v11 := st.Protocol() == protocols.Bid11
	var (
		decline error
		made    *pb.Bid
	)
	err := protocols.Serve(st, s.traced(bidX), &pb.BidRequest{},
		func(req *pb.BidRequest) *pb.BidResponse {
			resp, b, d := s.bid(client, req, v11)
			made, decline = b, d
			return resp
		},
		func(err error) *pb.BidResponse { return &pb.BidResponse{Decline: protocols.ToPB(err)} })
	switch {
	case err != nil:
		s.log.Emit(events.Event{Kind: events.Error, Peer: client.String(), Proto: string(st.Protocol()), Err: err.Error()})
	case decline != nil:
		s.log.Emit(events.Event{Kind: events.Decline, Peer: client.String(), Err: decline.Error()})
	case made != nil:
		s.log.Emit(events.Event{Kind: events.BidMade, Peer: client.String(), Series: made.SeriesId, Price: made.PricePerJob,
			Attrs: map[string]any{"jobs": made.MaxJobs, "est_ms": made.EstJobMs}})
	}
}

// bid decides on a request and signs the bid.
func (s *Service) bid(client peer.ID, req *pb.BidRequest, v11 bool) (*pb.BidResponse, *pb.Bid, error) {
	now := s.o.now()
	queued := int(s.queued.Load())
	wonk, load := s.capacity.Now(min(float64(queued)/float64(s.o.slots), 1))
	q := Quote{
		Executors: s.executorNames(), MaxMemory: s.o.maxMemory, MaxOutput: s.o.maxOutput, MaxDisk: s.o.maxDisk, Price: s.o.price, Slots: s.o.slots,
		Queued: queued, MaxQueue: s.o.maxQueue, EstJob: time.Duration(s.estJobNs.Load()),
		MaxTimeout: s.o.maxTimeout, Now: now, PricePerSecond: s.o.pricePerSecond, LoadSurcharge: s.o.loadSurcharge,
		Load: load, Client: client, Deny: s.o.deny,
	}
	offer, err := q.Decide(req)
	if err != nil {
		return &pb.BidResponse{Decline: protocols.ToPB(err)}, nil, err
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	b := &pb.Bid{
		SeriesId: req.SeriesId, Worker: []byte(s.h.ID()), Client: []byte(client), PricePerJob: offer.Price,
		MaxJobs: offer.MaxJobs, EstStartUnixMs: offer.Start.UnixMilli(), EstJobMs: uint32(min(offer.PerJob.Milliseconds(), math.MaxUint32)),
		ExpiresUnixMs: now.Add(s.o.bidTTL).UnixMilli(), Capacity: wonk, BidId: id, Slots: uint32(s.o.slots),
	}
	if e := s.executors[req.Executor]; e != nil && len(req.ModuleHash) == 32 {
		b.HasModule = e.HasModule([32]byte(req.ModuleHash))
	}
	if v11 {
		b.QueueDepth = uint32(q.Queued)
	}
	for _, a := range s.h.Addrs() {
		b.Addrs = append(b.Addrs, a.Bytes())
		if len(b.Addrs) == 16 {
			break
		}
	}
	sb, err := protocols.SignBid(s.key, b)
	if err != nil {
		return &pb.BidResponse{Decline: protocols.ToPB(err)}, nil, err
	}
	s.mu.Lock()
	if s.expireBidsLocked(now, client) >= MaxOpenBids {
		s.mu.Unlock()
		err := protocols.Errorf(pb.ErrorCode_RATE_LIMITED, "%d open bids for this client; use or let them expire", MaxOpenBids)
		return &pb.BidResponse{Decline: protocols.ToPB(err)}, nil, err
	}
	s.bids[string(id)] = &openBid{client: client, price: offer.Price, maxJobs: offer.MaxJobs, expires: now.Add(s.o.bidTTL)}
	s.mu.Unlock()
	return &pb.BidResponse{Bid: sb}, b, nil
}

// MaxOpenBids caps the unexpired bids a worker holds for one client: each
// lives bidTTL, and a client asking in a loop would otherwise grow the
// table (and the scan that expires it, on every bid) without bound.
const MaxOpenBids = 1024

// MakeBid decides on req for client, which may have asked through the
// overlay (a solicitation), and returns the signed bid or the typed decline.
// The bid names this worker's addresses, relay addresses included.
func (s *Service) MakeBid(client peer.ID, req *pb.BidRequest) (*pb.SignedBid, error) {
	resp, b, err := s.bid(client, req, true)
	if err != nil {
		s.log.Emit(events.Event{Kind: events.Decline, Peer: client.String(), Series: req.SeriesId, Proto: string(protocols.Solicit), Err: err.Error()})
		return nil, err
	}
	s.log.Emit(events.Event{Kind: events.BidMade, Peer: client.String(), Series: b.SeriesId, Price: b.PricePerJob, Proto: string(protocols.Solicit),
		Attrs: map[string]any{"jobs": b.MaxJobs, "est_ms": b.EstJobMs}})
	return resp.Bid, nil
}

// expireBidsLocked drops expired bids and counts the open ones made to
// client.
func (s *Service) expireBidsLocked(now time.Time, client peer.ID) int {
	open := 0
	for k, b := range s.bids {
		switch {
		case now.After(b.expires):
			delete(s.bids, k)
		case b.client == client:
			open++
		}
	}
	return open
}

// useAward checks that a job comes under an open bid made to this client
// at the bid's price, and counts it. A bid in use stays valid while jobs
// keep arriving under it.
func (s *Service) useAward(client peer.ID, bidID []byte, price uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bids[string(bidID)]
	now := s.o.now()
	switch {
	case b == nil || now.After(b.expires):
		return protocols.Errorf(pb.ErrorCode_NO_AWARD, "no open bid %x (expired or never made)", bidID)
	case b.client != client:
		return protocols.Errorf(pb.ErrorCode_NO_AWARD, "bid %x was made to another client", bidID)
	case price != b.price:
		return protocols.Errorf(pb.ErrorCode_PRICE_BELOW_FLOOR, "job offers %d points, the bid said %d", price, b.price)
	case b.used >= b.maxJobs:
		return protocols.Errorf(pb.ErrorCode_QUEUE_FULL, "bid %x covers %d jobs, all used", bidID, b.maxJobs)
	}
	b.used++
	b.expires = now.Add(s.o.bidTTL)
	return nil
}

// returnAward gives a job's place under its bid back (the job was refused
// before it ran, so the client may send it again).
func (s *Service) returnAward(bidID []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.bids[string(bidID)]; b != nil && b.used > 0 {
		b.used--
	}
}

// traced hooks the event log to an exchange's messages.
func (s *Service) traced(x protocols.Exchange) protocols.Exchange {
	x.Trace = s.log.Message
	return x
}
