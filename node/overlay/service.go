package overlay

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"golang.org/x/time/rate"
)

// Bidder makes this worker's own bid for a client, or a typed decline.
type Bidder interface {
	MakeBid(client peer.ID, req *pb.BidRequest) (*pb.SignedBid, error)
}

// Sampler returns up to n workers known to the authorities, in any order.
type Sampler interface {
	Sample(ctx context.Context, n int) ([]peer.AddrInfo, error)
}

// Connection-manager tags protecting neighbour connections.
const (
	tagOut = "p2pjobs-overlay-out"
	tagIn  = "p2pjobs-overlay-in"
)

type options struct {
	sampler      Sampler
	settings     func() *pb.Settings
	degree       int
	rebuild      time.Duration
	dropDelay    time.Duration
	firstDelay   time.Duration
	sample       int
	probes       int
	probeTimeout time.Duration
	maxInbound   int
	hop, base    time.Duration
	rateLimit    rate.Limit
	burst        int
	maxInflight  int
	loop         bool
	now          func() time.Time
	after        func(time.Duration) <-chan time.Time
	seed         uint64
}

// Option configures a Service.
type Option func(*options)

// WithSampler sets where candidate neighbours come from.
func WithSampler(s Sampler) Option { return func(o *options) { o.sampler = s } }

// WithSettings reads the authority's pushed settings (overlay_degree,
// overlay_rebuild_seconds) at every rebuild; zero values keep the defaults.
func WithSettings(f func() *pb.Settings) Option { return func(o *options) { o.settings = f } }

// WithDegree sets the target degree used when no setting is pushed.
func WithDegree(n int) Option { return func(o *options) { o.degree = n } }

// WithRebuild sets the rebuild period used when no setting is pushed, and
// the delay after a neighbour drops.
func WithRebuild(every, afterDrop time.Duration) Option {
	return func(o *options) { o.rebuild, o.dropDelay = every, afterDrop }
}

// WithWait sets the per-hop and base parts of the answer timeout (tests
// scale them down).
func WithWait(hop, base time.Duration) Option { return func(o *options) { o.hop, o.base = hop, base } }

// WithRateLimit sets the per-peer solicitation rate and burst.
func WithRateLimit(r rate.Limit, burst int) Option {
	return func(o *options) { o.rateLimit, o.burst = r, burst }
}

// WithMaxInbound caps how many workers may keep this one as a neighbour.
func WithMaxInbound(n int) Option { return func(o *options) { o.maxInbound = n } }

// WithProbeTimeout bounds one latency probe.
func WithProbeTimeout(d time.Duration) Option { return func(o *options) { o.probeTimeout = d } }

// WithoutLoop starts no formation loop: the owner calls Rebuild (the scale
// simulation drives rounds itself).
func WithoutLoop() Option { return func(o *options) { o.loop = false } }

// WithClock injects time: now for timestamps and round trips, after for the
// formation loop's timers.
func WithClock(now func() time.Time, after func(time.Duration) <-chan time.Time) Option {
	return func(o *options) { o.now, o.after = now, after }
}

// WithSeed fixes the sampling randomness (tests).
func WithSeed(s uint64) Option { return func(o *options) { o.seed = s } }

// Service is a worker's overlay: neighbour formation and the solicit
// protocol. Close stops it.
type Service struct {
	h      host.Host
	bidder Bidder
	log    *events.Log
	o      options
	stats  counters
	kick   chan struct{}
	notif  *network.NotifyBundle

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{} // in-flight solicitations

	rebuildMu sync.Mutex // one rebuild at a time

	mu       sync.Mutex // guards the fields below
	closed   bool
	out      []peer.ID              // neighbours we chose
	in       map[peer.ID]time.Time  // neighbours that chose us, until when
	emitted  []peer.ID              // the set last reported in an event
	seen     map[string]seenFlood   // flood tokens handled
	limiters map[peer.ID]*peerLimit // per-peer solicitation buckets
	owned    map[peer.ID]bool       // peers whose connection a probe of ours opened
	rng      *mrand.Rand
}

type seenFlood struct {
	hopsLeft int
	until    time.Time
}

type peerLimit struct {
	lim  *rate.Limiter
	last time.Time
}

// New starts the overlay of the worker on h. bidder makes its own bids.
func New(h host.Host, bidder Bidder, log *events.Log, opts ...Option) *Service {
	o := options{degree: DefaultDegree, rebuild: DefaultRebuild, dropDelay: DefaultDropDelay, firstDelay: time.Second,
		sample: DefaultSample, probes: DefaultProbes, probeTimeout: 10 * time.Second, maxInbound: 32,
		hop: DefaultHop, base: DefaultBase, rateLimit: 20, burst: 40, maxInflight: 128, loop: true,
		now: time.Now, after: time.After}
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	for i := range seed {
		o.seed = o.seed<<8 | uint64(seed[i])
	}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{h: h, bidder: bidder, log: log, o: o, kick: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
		sem: make(chan struct{}, o.maxInflight), in: map[peer.ID]time.Time{}, seen: map[string]seenFlood{},
		limiters: map[peer.ID]*peerLimit{}, owned: map[peer.ID]bool{}, rng: mrand.New(mrand.NewPCG(o.seed, 0x9e3779b97f4a7c15))}
	h.SetStreamHandler(protocols.Solicit, s.handleSolicit)
	h.SetStreamHandler(protocols.Overlay, s.handleLink)
	s.notif = &network.NotifyBundle{DisconnectedF: func(_ network.Network, c network.Conn) { s.onDisconnect(c.RemotePeer()) }}
	h.Network().Notify(s.notif)
	if o.loop {
		s.wg.Add(1)
		go s.loop()
	}
	return s
}

// Close removes the handlers, cancels forwarding and probes, and waits.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.h.RemoveStreamHandler(protocols.Solicit)
	s.h.RemoveStreamHandler(protocols.Overlay)
	s.h.Network().StopNotify(s.notif)
	s.cancel()
	s.wg.Wait()
	return nil
}

// enter registers a handler goroutine with the service; false once closed.
func (s *Service) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// Stats returns the counters.
func (s *Service) Stats() Stats { return s.stats.snapshot() }

// Neighbours returns the current neighbours, chosen and inbound, sorted.
func (s *Service) Neighbours() []peer.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.neighboursLocked()
}

// Outbound returns the neighbours this worker chose.
func (s *Service) Outbound() []peer.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.out)
}

func (s *Service) neighboursLocked() []peer.ID {
	all := slices.Clone(s.out)
	for p := range s.in {
		if !slices.Contains(all, p) {
			all = append(all, p)
		}
	}
	slices.Sort(all)
	return all
}

// emitLocked reports the neighbour set when it changed.
func (s *Service) emitLocked() {
	now := s.neighboursLocked()
	if slices.Equal(now, s.emitted) {
		return
	}
	s.emitted = now
	ids := make([]string, len(now))
	for i, p := range now {
		ids[i] = p.String()
	}
	s.log.Emit(events.Event{Kind: events.Neighbours, Attrs: map[string]any{"peers": ids, "out": len(s.out), "in": len(s.in)}})
}

// maxInbound is how many workers may keep this one as a neighbour: twice
// the degree (so a worker's neighbours number at most three times the
// degree, and no early or well-placed worker becomes a hub), or less if
// WithMaxInbound says so. A refused JOIN sends the joiner down its ranking.
func (s *Service) maxInbound() int { return min(s.o.maxInbound, 2*s.degree()) }

func (s *Service) degree() int {
	if st := s.settings(); st != nil && st.OverlayDegree > 0 {
		return int(min(st.OverlayDegree, 64))
	}
	return s.o.degree
}

func (s *Service) rebuildEvery() time.Duration {
	if st := s.settings(); st != nil && st.OverlayRebuildSeconds > 0 {
		return time.Duration(st.OverlayRebuildSeconds) * time.Second
	}
	return s.o.rebuild
}

func (s *Service) settings() *pb.Settings {
	if s.o.settings == nil {
		return nil
	}
	return s.o.settings()
}

// loop rebuilds periodically, a few seconds after a neighbour drops, and
// sooner while the overlay is below its degree (at start, few workers are
// registered yet).
func (s *Service) loop() {
	defer s.wg.Done()
	wait, retry := s.o.firstDelay, 2*time.Second
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.o.after(wait):
		case <-s.kick:
			select {
			case <-s.ctx.Done():
				return
			case <-s.o.after(s.o.dropDelay):
			}
		}
		n := s.Rebuild(s.ctx)
		wait = s.rebuildEvery()
		if n < s.degree() {
			wait, retry = min(wait, retry), min(retry*2, wait)
		} else {
			retry = 2 * time.Second
		}
	}
}

func (s *Service) onDisconnect(p peer.ID) {
	if s.h.Network().Connectedness(p) == network.Connected {
		return
	}
	s.mu.Lock()
	delete(s.owned, p)
	_, wasIn := s.in[p]
	wasOut := slices.Contains(s.out, p)
	if wasIn || wasOut {
		delete(s.in, p)
		s.out = slices.DeleteFunc(s.out, func(q peer.ID) bool { return q == p })
		s.emitLocked()
	}
	s.mu.Unlock()
	if wasIn || wasOut {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

var linkX = protocols.Exchange{Max: protocols.MaxOverlayMsg, Timeout: protocols.OverlayTimeout}

// Rebuild runs one formation round: sample, probe, keep the fastest, tell
// them. It returns the resulting neighbour count (chosen and inbound).
func (s *Service) Rebuild(ctx context.Context) int {
	s.rebuildMu.Lock()
	defer s.rebuildMu.Unlock()
	roundStart := time.Now()
	degree := s.degree()
	var sample []peer.ID
	if s.o.sampler != nil {
		infos, err := s.o.sampler.Sample(ctx, s.o.sample)
		if err != nil && len(infos) == 0 {
			s.log.Emit(events.Event{Kind: events.Error, Proto: string(protocols.Overlay), Err: "overlay: sample: " + err.Error()})
		}
		for _, ai := range infos {
			if ai.ID == s.h.ID() {
				continue
			}
			if len(ai.Addrs) > 0 {
				s.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, 2*s.rebuildEvery())
			}
			sample = append(sample, ai.ID)
		}
	}
	s.mu.Lock()
	current := slices.Clone(s.out)
	now := s.o.now()
	var expired []peer.ID
	for p, until := range s.in {
		if now.After(until) {
			delete(s.in, p)
			s.h.ConnManager().Unprotect(p, tagIn)
			expired = append(expired, p)
		}
	}
	probes := PickProbes(s.h.ID(), current, sample, max(s.o.probes, degree), s.rng)
	s.mu.Unlock()

	// Probes to peers not connected before open connections this overlay
	// owns: those it does not keep are closed at the end of the round.
	s.mu.Lock()
	for _, p := range probes {
		if s.h.Network().Connectedness(p) != network.Connected {
			s.owned[p] = true
		}
	}
	s.mu.Unlock()
	ms := make([]Measurement, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rtt, err := s.link(ctx, p, pb.LinkOp_LINK_PROBE, s.o.probeTimeout)
			ms[i] = Measurement{ID: p, RTT: rtt, OK: err == nil}
		}()
	}
	wg.Wait()
	// Tell the best-ranked peers (new ones and, as a refresh, old ones);
	// keep those that accept. A peer at its inbound cap refuses: ask the
	// next ones down the ranking until degree accept or none are left.
	ranked := Rank(ms, s.h.ID())
	s.mu.Lock()
	RandomSlot(ranked, degree, s.rng)
	s.mu.Unlock()
	kept := make([]peer.ID, 0, degree)
	var kmu sync.Mutex
	for len(ranked) > 0 && len(kept) < degree {
		batch := ranked[:min(degree-len(kept), len(ranked))]
		ranked = ranked[len(batch):]
		for _, p := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.link(ctx, p, pb.LinkOp_LINK_JOIN, s.o.probeTimeout); err == nil {
					kmu.Lock()
					kept = append(kept, p)
					kmu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	_, removed := Diff(current, kept)
	for _, p := range removed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = s.link(ctx, p, pb.LinkOp_LINK_LEAVE, s.o.probeTimeout)
		}()
	}
	wg.Wait()
	for _, p := range removed {
		s.h.ConnManager().Unprotect(p, tagOut)
	}
	for _, p := range kept {
		s.h.ConnManager().Protect(p, tagOut)
	}
	s.mu.Lock()
	slices.Sort(kept)
	s.out = kept
	s.emitLocked()
	n := len(s.neighboursLocked())
	// A neighbour dropped either way (we left it, or it stopped
	// refreshing its link to us) was the overlay's connection, whoever
	// dialled it.
	for _, p := range append(removed, expired...) {
		s.owned[p] = true
	}
	drop := s.unusedLocked(append(append(probes, removed...), expired...), roundStart)
	s.mu.Unlock()
	for _, p := range drop {
		_ = s.h.Network().ClosePeer(p)
	}
	s.stats.closed.Add(int64(len(drop)))
	return n
}

// unusedLocked returns the peers of ps whose connection the overlay opened
// and no longer needs: neither neighbour kind, protected by nobody, and
// carrying no stream of another protocol. It forgets them as owned. The
// overlay opened a connection when there was none before its probe, or
// when it dialled it during this round (since): a probe can find a
// connection that the other end is closing, and its JOIN then dials anew.
func (s *Service) unusedLocked(ps []peer.ID, since time.Time) []peer.ID {
	var drop []peer.ID
	for _, p := range ps {
		if (!s.owned[p] && !s.dialledSince(p, since)) || slices.Contains(s.out, p) {
			continue
		}
		if _, in := s.in[p]; in || s.h.ConnManager().IsProtected(p, "") || s.busy(p) {
			continue
		}
		delete(s.owned, p)
		drop = append(drop, p)
	}
	return drop
}

// dialledSince says whether every connection to p is one this host dialled
// after since.
func (s *Service) dialledSince(p peer.ID, since time.Time) bool {
	conns := s.h.Network().ConnsToPeer(p)
	for _, c := range conns {
		if st := c.Stat(); st.Direction != network.DirOutbound || st.Opened.Before(since) {
			return false
		}
	}
	return len(conns) > 0
}

// busy says whether some connection to p carries a stream other than the
// overlay's own and libp2p's housekeeping: then another part of the node
// uses it (a client, a job), and it stays open.
func (s *Service) busy(p peer.ID) bool {
	for _, c := range s.h.Network().ConnsToPeer(p) {
		for _, st := range c.GetStreams() {
			switch st.Protocol() {
			case protocols.Overlay, "", "/ipfs/id/1.0.0", "/ipfs/id/push/1.0.0", "/ipfs/ping/1.0.0":
			default:
				return true
			}
		}
	}
	return false
}

// link sends one overlay message and returns the round-trip time.
func (s *Service) link(ctx context.Context, p peer.ID, op pb.LinkOp, timeout time.Duration) (time.Duration, error) {
	x := linkX
	x.Timeout = min(x.Timeout, timeout)
	start := s.o.now()
	resp := &pb.LinkAck{}
	if _, err := protocols.Call(ctx, s.h, p, []protocol.ID{protocols.Overlay}, x, &pb.Link{Op: op}, resp); err != nil {
		return 0, err
	}
	if err := protocols.FromPB(resp.Error); err != nil {
		return 0, err
	}
	return s.o.now().Sub(start), nil
}

func (s *Service) handleLink(st network.Stream) {
	if !s.enter() {
		_ = st.Reset()
		return
	}
	defer s.wg.Done()
	remote := st.Conn().RemotePeer()
	err := protocols.Serve(st, linkX, &pb.Link{}, func(l *pb.Link) *pb.LinkAck { return s.onLink(remote, l.Op) },
		func(err error) *pb.LinkAck { return &pb.LinkAck{Error: protocols.ToPB(err)} })
	if err != nil {
		s.stats.reject(err)
	}
}

func (s *Service) onLink(remote peer.ID, op pb.LinkOp) *pb.LinkAck {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch op {
	case pb.LinkOp_LINK_PROBE:
	case pb.LinkOp_LINK_JOIN:
		if _, ok := s.in[remote]; !ok && len(s.in) >= s.maxInbound() {
			err := protocols.Errorf(pb.ErrorCode_RATE_LIMITED, "%d inbound neighbours already", len(s.in))
			s.stats.reject(err)
			return &pb.LinkAck{Error: protocols.ToPB(err), Degree: uint32(len(s.neighboursLocked()))}
		}
		s.in[remote] = s.o.now().Add(3 * s.rebuildEvery())
		s.h.ConnManager().Protect(remote, tagIn)
		s.emitLocked()
	case pb.LinkOp_LINK_LEAVE:
		if _, ok := s.in[remote]; ok {
			delete(s.in, remote)
			s.h.ConnManager().Unprotect(remote, tagIn)
			s.emitLocked()
		}
	default:
		err := protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "unknown link op %d", op)
		s.stats.reject(err)
		return &pb.LinkAck{Error: protocols.ToPB(err)}
	}
	return &pb.LinkAck{Degree: uint32(len(s.neighboursLocked()))}
}

// SolicitExchange is the solicit protocol's size cap and stream deadline
// for the given wait parameters: long enough for the longest wait.
func SolicitExchange(hop, base time.Duration) protocols.Exchange {
	return protocols.Exchange{Max: protocols.MaxSolicitMsg, Timeout: MaxWait(hop, base) + 5*time.Second}
}

// allow takes a token from remote's bucket.
func (s *Service) allow(remote peer.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.now()
	l := s.limiters[remote]
	if l == nil {
		if len(s.limiters) >= 4096 {
			for p, x := range s.limiters {
				if now.Sub(x.last) > time.Minute {
					delete(s.limiters, p)
				}
			}
		}
		l = &peerLimit{lim: rate.NewLimiter(s.o.rateLimit, s.o.burst)}
		s.limiters[remote] = l
	}
	l.last = now
	return l.lim.AllowN(now, 1)
}

func (s *Service) handleSolicit(st network.Stream) {
	if !s.enter() {
		_ = st.Reset()
		return
	}
	defer s.wg.Done()
	remote := st.Conn().RemotePeer()
	x := SolicitExchange(s.o.hop, s.o.base)
	var refuse error
	if !s.allow(remote) {
		refuse = protocols.Errorf(pb.ErrorCode_RATE_LIMITED, "too many solicitations from %s", remote)
	} else {
		select {
		case s.sem <- struct{}{}:
			defer func() { <-s.sem }()
		default:
			refuse = protocols.Errorf(pb.ErrorCode_RATE_LIMITED, "%d solicitations in flight", cap(s.sem))
		}
	}
	if refuse != nil {
		// Refuse before parsing: answer, then drain what the peer sent
		// (bounded by the cap and a short deadline) so the answer arrives.
		s.stats.reject(refuse)
		_ = st.SetDeadline(s.o.now().Add(2 * time.Second))
		_ = protocols.NewWriter(st, x.Max).Write(&pb.Proffer{Error: protocols.ToPB(refuse)})
		_ = st.CloseWrite()
		_, _ = io.Copy(io.Discard, io.LimitReader(st, int64(x.Max)+16))
		_ = st.Close()
		return
	}
	var herr error
	err := protocols.Serve(st, x, &pb.Solicitation{},
		func(m *pb.Solicitation) *pb.Proffer {
			p, err := s.solicit(remote, m)
			herr = err
			return p
		},
		func(err error) *pb.Proffer { return &pb.Proffer{Error: protocols.ToPB(err)} })
	if err == nil {
		err = herr
	}
	if err != nil {
		s.stats.reject(err)
		s.log.Emit(events.Event{Kind: events.Error, Peer: remote.String(), Proto: string(protocols.Solicit), Err: err.Error()})
	}
}

// solicit handles one checked-in solicitation; the error is the reason it
// was refused (already in the proffer), for the counters.
func (s *Service) solicit(remote peer.ID, m *pb.Solicitation) (*pb.Proffer, error) {
	self := s.h.ID()
	c, err := Check(self, remote, m)
	if err != nil {
		return &pb.Proffer{Error: protocols.ToPB(err)}, err
	}
	s.stats.received.Add(1)
	hopsLeft := int(m.Ttl) - len(c.Path)
	if !s.firstVisit(string(m.Token), hopsLeft) {
		s.stats.duplicates.Add(1)
		return &pb.Proffer{}, nil
	}
	own, ownErr := s.bidder.MakeBid(c.Client, m.Request)
	var ownDecline *pb.SignedDecline
	if ownErr == nil {
		s.stats.bids.Add(1)
	} else {
		ownDecline = s.signDecline(c.Client, m, ownErr)
	}
	to, fwd := Forward(self, m, c, s.Neighbours())
	answers := s.forward(to, fwd, Wait(m.Ttl, len(c.Path)+1, s.o.hop, s.o.base))
	agg, forged := Merge(self, own, ownDecline, answers, BidVerifier(c.Client, m.Request.SeriesId),
		FloodDeclineVerifier(c.Client, m.Request.SeriesId, m.Token))
	if forged > 0 {
		s.stats.forged.Add(int64(forged))
		s.log.Emit(events.Event{Kind: events.Error, Peer: remote.String(), Proto: string(protocols.Solicit),
			Series: m.Request.SeriesId, Err: "overlay: forged or misdirected bids or declines dropped", Attrs: map[string]any{"count": forged}})
	}
	return agg, nil
}

// signDecline signs this worker's refusal with the host's key (the
// peerstore holds it, as it does for identify's signed records). Without a
// key there is no decline to send: an unsigned one would be dropped.
func (s *Service) signDecline(client peer.ID, m *pb.Solicitation, reason error) *pb.SignedDecline {
	key := s.h.Peerstore().PrivKey(s.h.ID())
	if key == nil {
		return nil
	}
	sd, err := protocols.SignDecline(key, client, m.Request.SeriesId, m.Token, reason)
	if err != nil {
		s.log.Emit(events.Event{Kind: events.Error, Proto: string(protocols.Solicit), Series: m.Request.SeriesId, Err: err.Error()})
		return nil
	}
	return sd
}

// firstVisit records a flood token; a token already handled with at least
// as many hops left is a duplicate.
func (s *Service) firstVisit(token string, hopsLeft int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.now()
	if len(s.seen) >= 8192 {
		for k, v := range s.seen {
			if now.After(v.until) {
				delete(s.seen, k)
			}
		}
	}
	if v, ok := s.seen[token]; ok && now.Before(v.until) && v.hopsLeft >= hopsLeft {
		return false
	}
	s.seen[token] = seenFlood{hopsLeft: hopsLeft, until: now.Add(MaxWait(s.o.hop, s.o.base) + time.Minute)}
	return true
}

// forward sends fwd to every recipient at once and collects the answers
// that arrive within wait.
func (s *Service) forward(to []peer.ID, fwd *pb.Solicitation, wait time.Duration) []*pb.Proffer {
	if len(to) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, wait)
	defer cancel()
	x := SolicitExchange(s.o.hop, s.o.base)
	answers := make([]*pb.Proffer, len(to))
	var wg sync.WaitGroup
	for i, p := range to {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stats.forwarded.Add(1)
			resp := &pb.Proffer{}
			if _, err := protocols.Call(ctx, s.h, p, []protocol.ID{protocols.Solicit}, x, fwd, resp); err != nil {
				return
			}
			if resp.Error == nil {
				answers[i] = resp
			}
		}()
	}
	wg.Wait()
	return answers
}

// NewSolicitation builds a client's solicitation with a fresh token.
func NewSolicitation(client peer.ID, addrs []ma.Multiaddr, req *pb.BidRequest, ttl uint32) *pb.Solicitation {
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	m := &pb.Solicitation{Request: req, Ttl: ttl, Token: tok, Client: []byte(client)}
	for _, a := range addrs {
		if len(m.ClientAddrs) == 16 {
			break
		}
		m.ClientAddrs = append(m.ClientAddrs, a.Bytes())
	}
	return m
}

// Flood hands m to every entry worker at once (one token: their floods
// share duplicate suppression) and merges their aggregates, verifying every
// bid for m's client and series, and every decline for m's flood. It returns the merged proffer, how many
// bids were dropped as forged or misdirected, and the entries' errors.
func Flood(ctx context.Context, h host.Host, entries []peer.ID, m *pb.Solicitation, hop, base time.Duration) (*pb.Proffer, int, error) {
	answers := make([]*pb.Proffer, len(entries))
	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i], errs[i] = Send(ctx, h, e, m, hop, base)
		}()
	}
	wg.Wait()
	client, err := peer.IDFromBytes(m.Client)
	if err != nil {
		return nil, 0, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "client: %v", err)
	}
	agg, forged := Merge("", nil, nil, answers, BidVerifier(client, m.GetRequest().GetSeriesId()),
		FloodDeclineVerifier(client, m.GetRequest().GetSeriesId(), m.Token))
	agg.Reached--
	return agg, forged, errors.Join(errs...)
}

// ErrRefused wraps a solicitation refused by the entry worker.
var ErrRefused = errors.New("overlay: solicitation refused")

// Send hands m to the entry worker and waits for its aggregate: as long as
// the entry worker waits, plus two hops of slack.
func Send(ctx context.Context, h host.Host, entry peer.ID, m *pb.Solicitation, hop, base time.Duration) (*pb.Proffer, error) {
	x := SolicitExchange(hop, base)
	x.Timeout = Wait(m.Ttl, 1, hop, base) + 2*hop
	resp := &pb.Proffer{}
	if _, err := protocols.Call(ctx, h, entry, []protocol.ID{protocols.Solicit}, x, m, resp); err != nil {
		return nil, err
	}
	if err := protocols.FromPB(resp.Error); err != nil {
		return nil, errors.Join(ErrRefused, err)
	}
	return resp, nil
}
