package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pjobs/p2pnode/node/reach"
)

// hostLimits are the connection and resource limits for a set of roles. An
// authority is a superpeer: it must hold hundreds of worker connections and
// relay circuits, so its limits are an order of magnitude above a leaf's.
type hostLimits struct {
	connLow, connHigh int
	conns, streams    int
}

func limitsFor(cfg *Config) hostLimits {
	switch {
	case cfg.Has(RoleAuthority):
		return hostLimits{connLow: 2000, connHigh: 4000, conns: 8192, streams: 32768}
	case cfg.Has(RoleClient):
		// A client holds a connection to every worker it farms jobs out to.
		return hostLimits{connLow: 100, connHigh: 400, conns: 1024, streams: 8192}
	}
	// A worker needs its overlay neighbours (protected, at most three times
	// the degree), its authorities (tagged), the clients it serves (their
	// open job streams keep them above idle peers when the manager trims)
	// and a few DHT peers (dhtHost: tagged, not protected). Without these
	// marks, DHT lookups left a connection to nearly every worker of the
	// network open: a cost that grew with the network.
	return hostLimits{connLow: 16, connHigh: 32, conns: 1024, streams: 8192}
}

// hostOptions builds the libp2p options for cfg. Authorities (the
// bootstrap peers) double as static relays for nodes behind NAT.
func hostOptions(cfg *Config, key crypto.PrivKey, authorities *authorityBook, reg prometheus.Registerer, rev *reach.Service) ([]libp2p.Option, error) {
	lim := limitsFor(cfg)
	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	concrete := scaling.AutoScale()
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Conns: rcmgr.LimitVal(lim.conns), ConnsInbound: rcmgr.LimitVal(lim.conns), ConnsOutbound: rcmgr.LimitVal(lim.conns),
			Streams: rcmgr.LimitVal(lim.streams), StreamsInbound: rcmgr.LimitVal(lim.streams), StreamsOutbound: rcmgr.LimitVal(lim.streams),
			FD: rcmgr.LimitVal(lim.conns),
		},
		Transient: rcmgr.ResourceLimits{
			Conns: rcmgr.LimitVal(lim.conns / 4), ConnsInbound: rcmgr.LimitVal(lim.conns / 4), ConnsOutbound: rcmgr.LimitVal(lim.conns / 4),
		},
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(partial.Build(concrete)),
		relayIPLimits(authorities.list(), lim.conns)...) // natpolicy.go
	if err != nil {
		return nil, fmt.Errorf("node: resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(lim.connLow, lim.connHigh, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("node: conn manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(cfg.Listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.DefaultMuxers,
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.UserAgent("p2pnode/" + Version),
		// reach.Service vetoes DCUtR where it reverses the connection
		// instead (behind a symmetric NAT; see node/reach).
		libp2p.EnableHolePunching(holepunch.WithAddrFilter(rev.AddrFilter())),
	}
	if reg != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(reg))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	if len(cfg.Announce) > 0 {
		announce := make([]ma.Multiaddr, 0, len(cfg.Announce))
		for _, s := range cfg.Announce {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				return nil, fmt.Errorf("%w: --announce %q: %w", ErrConfig, s, err)
			}
			announce = append(announce, a)
		}
		opts = append(opts, libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return announce }))
	}
	policy := reachabilityPolicy(cfg, interfaceAddrs()) // natpolicy.go
	switch policy {
	case "public":
		opts = append(opts, libp2p.ForceReachabilityPublic())
	case "private":
		// No AutoNAT v2 either: behind an address-filtering NAT it confirms
		// our mapping as reachable (its dial-back comes from an address we
		// sent to), and the host would then stop advertising the relay
		// addresses that peers we never contacted need.
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	if policy != "private" {
		opts = append(opts, libp2p.EnableAutoNATv2())
	}
	if cfg.NAT.PortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	if cfg.Has(RoleAuthority) {
		// The relay service is not a host option: libp2p would run it only
		// while AutoNAT says public. Node.New starts it itself (relay.go).
		opts = append(opts, libp2p.EnableNATService())
	}
	if !cfg.Has(RoleAuthority) && len(authorities.list()) > 0 {
		// The authorities are our relays: the bootstrap ones and those
		// learned since, so relaying moves to another authority when one
		// goes away. The relay finder runs while reachability is private or
		// unknown; New announces "unknown" at start (see kickAutoRelay), so
		// reservations are made within a round trip, not after minutes of
		// AutoNAT. Two reservations when two authorities are known.
		opts = append(opts, libp2p.EnableAutoRelayWithPeerSource(authorities.peerSource,
			autorelay.WithBootDelay(0), autorelay.WithMinCandidates(1), autorelay.WithMaxCandidates(8),
			autorelay.WithNumRelays(2), autorelay.WithBackoff(10*time.Second), autorelay.WithMinInterval(5*time.Second)))
	}
	return opts, nil
}

// peerSource feeds autorelay with the known authorities.
func (b *authorityBook) peerSource(ctx context.Context, num int) <-chan peer.AddrInfo {
	list := b.list()
	ch := make(chan peer.AddrInfo, len(list))
	for _, a := range list[:min(num, len(list))] {
		ch <- a
	}
	close(ch)
	return ch
}

// kickAutoRelay starts the relay finder at once on a node whose
// reachability is not forced: AutoNAT v1 emits its first verdict only after
// its boot delay and several probes, and autorelay waits for that event.
// "Unknown" is the truth at start; AutoNAT replaces it when it knows better
// (public stops the relay finder again).
func kickAutoRelay(h host.Host, cfg *Config) {
	if cfg.Has(RoleAuthority) || reachabilityPolicy(cfg, interfaceAddrs()) != "auto" {
		return
	}
	em, err := h.EventBus().Emitter(new(event.EvtLocalReachabilityChanged), eventbus.Stateful)
	if err != nil {
		return
	}
	_ = em.Emit(event.EvtLocalReachabilityChanged{Reachability: network.ReachabilityUnknown})
	_ = em.Close()
}

// publicCIDRsEnv names ranges libp2p must treat as public internet although
// they are private (RFC 1918) space: the "internet" segment of a NAT lab
// (scripts/natlab.sh), or a private WAN between sites. libp2p only hole
// punches from, and AutoNAT only tests, public addresses; without this a lab
// built from private addresses could never punch a hole.
const publicCIDRsEnv = "P2PNODE_PUBLIC_CIDRS"

var publicCIDRsOnce sync.Once

// applyPublicCIDRs removes the ranges in $P2PNODE_PUBLIC_CIDRS (comma
// separated) from go-multiaddr's private ranges. It changes process-wide
// state, once, before the first host starts.
func applyPublicCIDRs() error {
	var err error
	publicCIDRsOnce.Do(func() {
		v := strings.TrimSpace(os.Getenv(publicCIDRsEnv))
		if v == "" {
			return
		}
		for _, s := range strings.Split(v, ",") {
			p, perr := netip.ParsePrefix(strings.TrimSpace(s))
			if perr != nil || !p.Addr().Is4() {
				err = fmt.Errorf("%w: %s: %q is not an IPv4 prefix", ErrConfig, publicCIDRsEnv, s)
				return
			}
			manet.Private4 = exemptPrefix(manet.Private4, p.Masked())
		}
	})
	return err
}

// exemptPrefix returns nets minus p: every net containing p is replaced by
// the prefixes that cover it except p.
func exemptPrefix(nets []*net.IPNet, p netip.Prefix) []*net.IPNet {
	var out []*net.IPNet
	for _, n := range nets {
		np, ok := netipx(n)
		if !ok || !np.Overlaps(p) {
			out = append(out, n)
			continue
		}
		if p.Bits() <= np.Bits() { // p covers n: n is public now
			continue
		}
		// Walk down from n to p, keeping the sibling half at each level.
		cur := np
		for cur.Bits() < p.Bits() {
			lo := netip.PrefixFrom(cur.Addr(), cur.Bits()+1)
			hiAddr := cur.Addr().As4()
			bit := cur.Bits()
			hiAddr[bit/8] |= 1 << (7 - bit%8)
			hi := netip.PrefixFrom(netip.AddrFrom4(hiAddr), cur.Bits()+1)
			if lo.Overlaps(p) {
				out = append(out, ipnet(hi))
				cur = lo
			} else {
				out = append(out, ipnet(lo))
				cur = hi
			}
		}
	}
	return out
}

func netipx(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones), true
}

func ipnet(p netip.Prefix) *net.IPNet {
	a := p.Addr().As4()
	return &net.IPNet{IP: net.IP(a[:]), Mask: net.CIDRMask(p.Bits(), 32)}
}

// newHost builds the libp2p host.
func newHost(cfg *Config, key crypto.PrivKey, authorities *authorityBook, reg prometheus.Registerer, rev *reach.Service) (host.Host, error) {
	if err := applyPublicCIDRs(); err != nil {
		return nil, err
	}
	opts, err := hostOptions(cfg, key, authorities, reg, rev)
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("node: libp2p host: %w", err)
	}
	return h, nil
}

// Version of this build.
var Version = "0.1.0-dev"
