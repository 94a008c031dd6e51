package reach

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	hpb "github.com/libp2p/go-libp2p/p2p/protocol/holepunch/pb"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/protocols"
)

// Timing of a reversal. The exchange crosses the relay (one round trip);
// the dial goes straight to the peer's NAT.
const (
	// exchangeTimeout bounds the whole address exchange on the relay.
	exchangeTimeout = 10 * time.Second
	// dialTimeout bounds each direct dial; TCP retransmits its SYN after
	// 1 s, so two tries fit in one dial on a lossy path.
	dialTimeout = 4 * time.Second
	// primeTimeout bounds the responder's priming dial: it only has to put
	// packets on the wire; it is expected to fail.
	primeTimeout = 2 * time.Second
	// attempts is how many exchanges an initiator makes per relayed
	// connection before leaving the peer to the relay.
	attempts = 2
	// maxActive bounds reversals in flight, either role: each holds a
	// stream and a dial.
	maxActive = 32
	// maxObservations bounds the observations kept (one per observer).
	maxObservations = 32
	// perPeerWindow and perPeerMax bound the exchanges a peer may start
	// with us: each makes us dial (prime) the addresses it names, so a
	// peer reconnecting through the relay in a loop must not turn us into
	// a packet cannon. An honest initiator makes at most `attempts` per
	// relayed connection.
	perPeerWindow = 30 * time.Second
	perPeerMax    = attempts
	maxRecent     = 1024
)

// ErrRefused is returned (and logged) for a reversal we will not take part
// in: not on a relayed connection, no usable addresses, too many at once.
var ErrRefused = errors.New("reach: reversal refused")

// Option configures a Service.
type Option func(*Service)

// WithTrusted sets which peers' view of our address counts when
// classifying our NAT (the authorities: any other peer could lie about it
// to turn our hole punching off). Default: nobody, so the mapping stays
// unknown and libp2p's DCUtR is left alone.
func WithTrusted(f func(peer.ID) bool) Option { return func(s *Service) { s.trusted = f } }

// WithLog sets the event log (reversal outcomes).
func WithLog(l *events.Log) Option { return func(s *Service) { s.log = l } }

// Service runs connection reversal. Create it before the host (its
// AddrFilter goes into libp2p.EnableHolePunching), Start it once the host
// exists, Close it before the host.
type Service struct {
	trusted func(peer.ID) bool
	log     *events.Log

	h      host.Host
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sub    event.Subscription

	notif *network.NotifyBundle

	mu     sync.Mutex // guards the fields below
	obs    map[peer.ID]Observation
	active map[peer.ID]bool        // a reversal with this peer is in flight (either role)
	recent map[peer.ID][]time.Time // exchanges each peer started with us, within perPeerWindow
	// started: exchanges we started with each peer, within perPeerWindow.
	// Each makes us dial the addresses the peer names, so a peer that
	// reconnects through the relay in a loop gets no more reversals than
	// one that asks for them (recent).
	started map[peer.ID][]time.Time
	// sentQUIC: whether the addresses we sent in a hole punch with the
	// peer included QUIC (set by FilterLocal, taken by FilterRemote).
	sentQUIC map[peer.ID]bool
	closed   bool // no goroutine starts once set (Close waits for the rest)
}

// spawn runs f on a goroutine Close waits for, unless the service closed.
func (s *Service) spawn(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.wg.Go(f)
	}
}

// New returns a service that is not running yet.
func New(opts ...Option) *Service {
	s := &Service{trusted: func(peer.ID) bool { return false }, obs: map[peer.ID]Observation{}, active: map[peer.ID]bool{},
		recent: map[peer.ID][]time.Time{}, started: map[peer.ID][]time.Time{}, sentQUIC: map[peer.ID]bool{}}
	for _, o := range opts {
		o(s)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// AddrFilter is handed to libp2p's hole-punch service. It vetoes DCUtR
// with a peer we reverse connections with (see the package doc), and
// punches over QUIC alone when both sides offered QUIC (quicOnly).
func (s *Service) AddrFilter() holepunch.AddrFilter { return filter{s} }

type filter struct{ s *Service }

// FilterLocal passes our addresses unchanged and remembers whether they
// included QUIC: libp2p calls it before FilterRemote on both sides.
func (f filter) FilterLocal(p peer.ID, addrs []ma.Multiaddr) []ma.Multiaddr {
	if f.s.h != nil {
		addrs = quicGuess(addrs, f.s.h.Network().ListenAddresses())
	}
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if len(f.s.sentQUIC) >= maxRecent {
		clear(f.s.sentQUIC)
	}
	f.s.sentQUIC[p] = hasQUIC(addrs)
	return addrs
}

// FilterRemote returning nothing makes libp2p's initiator give up before
// it sends SYNC, so no half-open dial of its competes with ours.
func (f filter) FilterRemote(p peer.ID, addrs []ma.Multiaddr) []ma.Multiaddr {
	if f.s.reverses(p) {
		return nil
	}
	f.s.mu.Lock()
	sent, ok := f.s.sentQUIC[p]
	delete(f.s.sentQUIC, p)
	f.s.mu.Unlock()
	return quicOnly(ok && sent, addrs)
}

// quicOnly keeps only the QUIC addresses of a hole punch when both sides
// offered QUIC (ours: weSent; theirs: in addrs), a decision both sides
// reach alike; otherwise a side punching TCP would meet one dialling QUIC.
//
// Why not TCP: over TCP, DCUtR's passive side dials too (its connection
// is meant to meet the other's in a TCP simultaneous open, and is treated
// as the server side of the handshake). When the active side's NAT
// filters nothing (full cone), that SYN can arrive before the active
// side's own leaves; its listener accepts it as inbound, server meets
// server, and the attempt hangs for its 10 s timeout (seen in the NAT lab
// under load, full cone to port-restricted). Over QUIC the passive side
// only sends punch packets: the active side's dial is the only connection.
func quicOnly(weSent bool, addrs []ma.Multiaddr) []ma.Multiaddr {
	if !weSent || !hasQUIC(addrs) {
		return addrs
	}
	var q []ma.Multiaddr
	for _, a := range addrs {
		if isQUIC(a) {
			q = append(q, a)
		}
	}
	return q
}

// quicGuess adds our likely QUIC address when we know only TCP ones: a
// node that joined its authorities over TCP never had its UDP mapping
// observed, and without a QUIC address on both sides the punch falls back
// to TCP and its role race (quicOnly). The guess is made only where the
// NAT visibly preserves ports (an observed TCP port equal to our TCP
// listen port): then its UDP mapping of our QUIC port is most likely the
// same port on the same IP. A wrong guess costs that punch, not the relay.
func quicGuess(addrs, listen []ma.Multiaddr) []ma.Multiaddr {
	if hasQUIC(addrs) {
		return addrs
	}
	tcpPorts := map[string]bool{}
	var udpPort string
	for _, l := range listen {
		if p, err := l.ValueForProtocol(ma.P_TCP); err == nil {
			tcpPorts[p] = true
		}
		if p, err := l.ValueForProtocol(ma.P_UDP); err == nil && isQUIC(l) && udpPort == "" {
			udpPort = p
		}
	}
	if udpPort == "" {
		return addrs
	}
	out := slices.Clone(addrs)
	for _, a := range addrs {
		p, err := a.ValueForProtocol(ma.P_TCP)
		if err != nil || len(a) != 2 || !tcpPorts[p] {
			continue
		}
		g, err := ma.NewMultiaddr(fmt.Sprintf("/%s/%s/udp/%s/quic-v1", a[0].Protocol().Name, a[0].Value(), udpPort))
		if err == nil {
			out = append(out, g)
		}
	}
	return ma.Unique(out)
}

func isQUIC(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_QUIC_V1)
	return err == nil
}

func hasQUIC(addrs []ma.Multiaddr) bool { return slices.ContainsFunc(addrs, isQUIC) }

// Start registers the protocol and begins watching identify and
// connections.
func (s *Service) Start(h host.Host) error {
	s.h = h
	sub, err := h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted), eventbus.Name("p2pnode reach"))
	if err != nil {
		return fmt.Errorf("reach: subscribe: %w", err)
	}
	s.sub = sub
	h.SetStreamHandler(protocols.Reverse, s.handle)
	s.notif = &network.NotifyBundle{ConnectedF: s.connected, DisconnectedF: s.disconnected}
	h.Network().Notify(s.notif)
	s.spawn(func() {
		for {
			select {
			case <-s.ctx.Done():
				return
			case e, ok := <-sub.Out():
				if !ok {
					return
				}
				s.identified(e.(event.EvtPeerIdentificationCompleted))
			}
		}
	})
	return nil
}

// Close stops the service and waits for its goroutines.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	if s.h != nil {
		s.h.RemoveStreamHandler(protocols.Reverse)
		s.h.Network().StopNotify(s.notif)
	}
	if s.sub != nil {
		_ = s.sub.Close()
	}
	s.wg.Wait()
	return nil
}

// Mapping is our NAT's mapping as the trusted observers see it now.
func (s *Service) Mapping() Mapping {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mappingLocked()
}

func (s *Service) mappingLocked() Mapping {
	obs := make([]Observation, 0, len(s.obs))
	for _, o := range s.obs {
		obs = append(obs, o)
	}
	return Classify(obs)
}

// Observed returns our public addresses as trusted observers saw them.
func (s *Service) Observed() []ma.Multiaddr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ma.Multiaddr
	for _, o := range s.obs {
		out = append(out, o.Addr)
	}
	slices.SortFunc(out, ma.Multiaddr.Compare)
	return ma.Unique(out)
}

// identified records what a trusted observer we dialed directly saw of us.
// Only our own dials count: on a connection the observer dialed, it sees
// the address it dialed, which says nothing about how our NAT maps.
func (s *Service) identified(e event.EvtPeerIdentificationCompleted) {
	c := e.Conn
	if c == nil || e.ObservedAddr == nil || !s.trusted(e.Peer) || c.Stat().Direction != network.DirOutbound ||
		c.Stat().Limited || !manet.IsPublicAddr(c.RemoteMultiaddr()) || !Dialable(e.ObservedAddr) {
		return
	}
	rip, err := manet.ToIP(c.RemoteMultiaddr())
	if err != nil {
		return
	}
	observer, _ := netip.AddrFromSlice(rip)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.obs[e.Peer]; !ok && len(s.obs) >= maxObservations {
		return
	}
	s.obs[e.Peer] = Observation{Observer: observer.Unmap(), Addr: e.ObservedAddr}
}

func (s *Service) disconnected(_ network.Network, c network.Conn) {
	p := c.RemotePeer()
	if s.h.Network().Connectedness(p) == network.NotConnected {
		s.mu.Lock()
		delete(s.obs, p)
		s.mu.Unlock()
	}
}

// reverses says whether we reverse connections with p instead of letting
// DCUtR punch: our mapping is endpoint-dependent, p reached us through a
// relay, and p speaks the reversal protocol.
func (s *Service) reverses(p peer.ID) bool {
	if s.h == nil || s.Mapping() != MappingDependent {
		return false
	}
	if ok, _ := s.h.Peerstore().SupportsProtocols(p, protocols.Reverse); len(ok) == 0 {
		return false
	}
	return slices.ContainsFunc(s.h.Network().ConnsToPeer(p), inboundRelayed)
}

func inboundRelayed(c network.Conn) bool {
	return c.Stat().Direction == network.DirInbound && isRelayed(c)
}

func isRelayed(c network.Conn) bool {
	if c.Stat().Limited {
		return true
	}
	_, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

func hasDirect(h host.Host, p peer.ID) bool {
	return slices.ContainsFunc(h.Network().ConnsToPeer(p), func(c network.Conn) bool { return !isRelayed(c) })
}

// begin marks a reversal with p in flight; false if one already is, or too
// many are.
func (s *Service) begin(p peer.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active[p] || len(s.active) >= maxActive {
		return false
	}
	s.active[p] = true
	return true
}

// admit records an exchange p starts with us; false when p started
// perPeerMax within perPeerWindow already.
func (s *Service) admit(p peer.ID, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return admitLocked(s.recent, p, now)
}

// admitStart records an exchange we start with p; false when we started
// perPeerMax within perPeerWindow already.
func (s *Service) admitStart(p peer.ID, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return admitLocked(s.started, p, now)
}

// admitLocked records an exchange with p in m unless p had perPeerMax
// within perPeerWindow, or m holds maxRecent peers with recent ones.
func admitLocked(m map[peer.ID][]time.Time, p peer.ID, now time.Time) bool {
	if len(m) >= maxRecent {
		for q, ts := range m {
			if now.Sub(ts[len(ts)-1]) > perPeerWindow {
				delete(m, q)
			}
		}
		if len(m) >= maxRecent {
			return false
		}
	}
	ts := slices.DeleteFunc(m[p], func(t time.Time) bool { return now.Sub(t) > perPeerWindow })
	if len(ts) >= perPeerMax {
		m[p] = ts
		return false
	}
	m[p] = append(ts, now)
	return true
}

func (s *Service) end(p peer.ID) {
	s.mu.Lock()
	delete(s.active, p)
	s.mu.Unlock()
}

// connected starts a reversal for an inbound relayed connection once
// identify says whether the peer speaks the protocol.
func (s *Service) connected(_ network.Network, c network.Conn) {
	if !inboundRelayed(c) {
		return
	}
	s.spawn(func() {
		ids, ok := s.h.(interface{ IDService() identify.IDService })
		if ok {
			select {
			case <-ids.IDService().IdentifyWait(c):
			case <-s.ctx.Done():
				return
			}
		}
		p := c.RemotePeer()
		if !s.reverses(p) || !s.begin(p) {
			return
		}
		defer s.end(p)
		start := time.Now()
		var err error
		for i := 0; i < attempts && !hasDirect(s.h, p) && s.ctx.Err() == nil; i++ {
			if !s.admitStart(p, time.Now()) {
				err = fmt.Errorf("%w: %d reversals with this peer within %v already", ErrRefused, perPeerMax, perPeerWindow)
				break
			}
			if err = s.initiate(p); err == nil {
				break
			}
		}
		if hasDirect(s.h, p) {
			err = nil
		}
		e := events.Event{Kind: "reversal", Peer: p.String(), Attrs: map[string]any{"role": "dialer", "ms": time.Since(start).Milliseconds()}}
		if err != nil {
			e.Err = err.Error()
		}
		s.log.Emit(e)
	})
}

// initiate runs one reversal with p from the side behind the symmetric
// NAT: tell p our observed addresses (so it can open its filter to our
// IP), learn its public ones, wait half a round trip for its priming
// packets to leave, then dial it as an ordinary client.
func (s *Service) initiate(p peer.ID) error {
	ctx, cancel := context.WithTimeout(s.ctx, exchangeTimeout)
	defer cancel()
	own := s.Observed()
	if len(own) == 0 {
		return fmt.Errorf("%w: we know no public address of ours", ErrRefused)
	}
	sctx := network.WithNoDial(network.WithAllowLimitedConn(ctx, "reach reversal"), "reach reversal")
	st, err := s.h.NewStream(sctx, p, protocols.Reverse)
	if err != nil {
		return fmt.Errorf("reach: open stream: %w", err)
	}
	defer st.Reset() // no-op after Close
	_ = st.SetDeadline(time.Now().Add(exchangeTimeout))
	w := protocols.NewWriter(st, protocols.MaxReverseMsg)
	r := protocols.NewReader(st, protocols.MaxReverseMsg)
	t0 := time.Now()
	if err := w.Write(&hpb.HolePunch{Type: hpb.HolePunch_CONNECT.Enum(), ObsAddrs: addrsToBytes(own)}); err != nil {
		return fmt.Errorf("reach: send: %w", err)
	}
	var m hpb.HolePunch
	if err := r.Read(&m); err != nil {
		return fmt.Errorf("reach: read reply: %w", err)
	}
	rtt := time.Since(t0)
	_ = st.Close()
	addrs := DialableAddrs(m.ObsAddrs)
	if m.GetType() != hpb.HolePunch_CONNECT || len(addrs) == 0 {
		return fmt.Errorf("%w: peer sent no address we can dial", ErrRefused)
	}
	// The peer primes as it replies; its packets are on the wire before
	// ours arrive once half a round trip has passed.
	select {
	case <-time.After(rtt / 2):
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.dial(p, addrs, dialTimeout)
}

func (s *Service) dial(p peer.ID, addrs []ma.Multiaddr, d time.Duration) error {
	ctx, cancel := context.WithTimeout(s.ctx, d)
	defer cancel()
	ctx = network.WithForceDirectDial(ctx, "reach reversal")
	if err := s.h.Connect(ctx, peer.AddrInfo{ID: p, Addrs: addrs}); err != nil {
		return fmt.Errorf("reach: direct dial: %w", err)
	}
	return nil
}

// handle answers a reversal on a relayed connection we opened: reply with
// our public addresses and dial the initiator's, which fails at its NAT
// but lets its packets through ours.
func (s *Service) handle(st network.Stream) {
	defer func() {
		if r := recover(); r != nil {
			_ = st.Reset()
		}
	}()
	c := st.Conn()
	p := c.RemotePeer()
	if !isRelayed(c) || c.Stat().Direction != network.DirOutbound || !s.admit(p, time.Now()) || !s.begin(p) {
		_ = st.Reset()
		return
	}
	defer s.end(p)
	if err := st.Scope().ReserveMemory(protocols.MaxReverseMsg, network.ReservationPriorityAlways); err != nil {
		_ = st.Reset()
		return
	}
	defer st.Scope().ReleaseMemory(protocols.MaxReverseMsg)
	_ = st.SetDeadline(time.Now().Add(exchangeTimeout))
	r := protocols.NewReader(st, protocols.MaxReverseMsg)
	w := protocols.NewWriter(st, protocols.MaxReverseMsg)
	var m hpb.HolePunch
	if err := r.Read(&m); err != nil || m.GetType() != hpb.HolePunch_CONNECT {
		_ = st.Reset()
		return
	}
	theirs := DialableAddrs(m.ObsAddrs)
	own := s.holePunchAddrs()
	if len(theirs) == 0 || len(own) == 0 {
		_ = st.Reset()
		return
	}
	// Prime first: our packets must leave before the initiator's arrive,
	// and the reply below crosses the relay, which is slower.
	s.spawn(func() { _ = s.dial(p, theirs, primeTimeout) })
	if err := w.Write(&hpb.HolePunch{Type: hpb.HolePunch_CONNECT.Enum(), ObsAddrs: addrsToBytes(own)}); err != nil {
		_ = st.Reset()
		return
	}
	_ = st.Close()
	s.log.Emit(events.Event{Kind: "reversal", Peer: p.String(), Attrs: map[string]any{"role": "primer"}})
}

// holePunchAddrs are our public addresses for a peer to dial: those the
// trusted observers saw, and the public ones the host advertises (a node
// with a public interface address, or a NAT mapping libp2p confirmed).
func (s *Service) holePunchAddrs() []ma.Multiaddr {
	own := append(s.Observed(), s.h.Addrs()...)
	own = slices.DeleteFunc(own, func(a ma.Multiaddr) bool { return !Dialable(a) })
	slices.SortFunc(own, ma.Multiaddr.Compare)
	return ma.Unique(own)
}
