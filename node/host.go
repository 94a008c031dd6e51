package node

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// hostLimits are the connection and resource limits for a set of roles. An
// authority is a superpeer: it must hold hundreds of worker connections and
// relay circuits, so its limits are an order of magnitude above a leaf's.
type hostLimits struct {
	connLow, connHigh int
	conns, streams    int
}

func limitsFor(cfg *Config) hostLimits {
	if cfg.Has(RoleAuthority) {
		return hostLimits{connLow: 2000, connHigh: 4000, conns: 8192, streams: 32768}
	}
	return hostLimits{connLow: 100, connHigh: 400, conns: 1024, streams: 8192}
}

// hostOptions builds the libp2p options for cfg. Authorities (the
// bootstrap peers) double as static relays for nodes behind NAT.
func hostOptions(cfg *Config, key crypto.PrivKey, authorities []peer.AddrInfo, reg prometheus.Registerer) ([]libp2p.Option, error) {
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
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(partial.Build(concrete)))
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
		libp2p.EnableHolePunching(),
		libp2p.EnableAutoNATv2(),
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
	switch cfg.NAT.Reachability {
	case "public":
		opts = append(opts, libp2p.ForceReachabilityPublic())
	case "private":
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	if cfg.NAT.PortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	if cfg.Has(RoleAuthority) {
		res := relay.DefaultResources()
		res.Limit = &relay.RelayLimit{Duration: cfg.Authority.RelayDuration, Data: cfg.Authority.RelayData}
		res.MaxReservations = cfg.Authority.RelayReservations
		res.MaxCircuits = cfg.Authority.RelayCircuits
		res.MaxReservationsPerIP = cfg.Authority.RelayReservations
		opts = append(opts, libp2p.EnableRelayService(relay.WithResources(res)), libp2p.EnableNATService())
	}
	if !cfg.Has(RoleAuthority) && len(authorities) > 0 {
		// Reserve a slot on the authorities at once (not after minutes of
		// AutoNAT) whenever we are, or may be, behind NAT.
		opts = append(opts, libp2p.EnableAutoRelayWithStaticRelays(authorities,
			autorelay.WithBootDelay(0), autorelay.WithMinCandidates(1), autorelay.WithBackoff(10*time.Second)))
	}
	return opts, nil
}

// newHost builds the libp2p host.
func newHost(cfg *Config, key crypto.PrivKey, authorities []peer.AddrInfo, reg prometheus.Registerer) (host.Host, error) {
	opts, err := hostOptions(cfg, key, authorities, reg)
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
