package node

import (
	"net/netip"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/x/rate"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// reachabilityPolicy is the reachability the host is built with: cfg's
// nat.reachability, except that "auto" on a worker or client with
// authorities and no public address on any interface becomes "private".
//
// Why: such a node is behind NAT by construction. AutoNAT may still call it
// public when its NAT filters by address only: the dial-back comes from the
// authority, an address the node has sent to, so the NAT lets it in. In
// go-libp2p a public node's autorelay stops refreshing its reservations,
// and the node would silently lose its relay route while peers it never
// contacted cannot reach it. Private keeps the reservations; peers that can
// reach it directly still do (hole punching and reversal do not depend on
// this verdict). An operator whose node is reachable through a port
// forward says so with --reachability public.
func reachabilityPolicy(cfg *Config, ifaces []ma.Multiaddr) string {
	r := cfg.NAT.Reachability
	if r != "" && r != "auto" {
		return r
	}
	if cfg.Has(RoleAuthority) || len(cfg.Bootstrap) == 0 {
		return "auto"
	}
	for _, a := range ifaces {
		if manet.IsPublicAddr(a) {
			return "auto"
		}
	}
	return "private"
}

// interfaceAddrs lists the machine's interface addresses (nil on error:
// the policy then treats the node as NATed, which only keeps relays on).
func interfaceAddrs() []ma.Multiaddr {
	as, err := manet.InterfaceMultiaddrs()
	if err != nil {
		return nil
	}
	return as
}

// relayIPLimits lifts libp2p's per-IP connection limits for the
// authorities' addresses. A relayed connection counts against the relay's
// IP (its address starts with the relay's), and the resource manager
// allows 8 connections per IPv4 address at once and 16 new ones, then one
// per 5 s. A NATed worker that more than seven clients reach through one
// authority would refuse the eighth (the relay then answers the client
// CONNECTION_FAILED). Authorities are our relays: their addresses get the
// node's whole connection budget, and no rate limit.
func relayIPLimits(auths []peer.AddrInfo, conns int) []rcmgr.Option {
	v4 := slices.Clone(rcmgr.DefaultNetworkPrefixLimitV4)
	v6 := slices.Clone(rcmgr.DefaultNetworkPrefixLimitV6)
	rl := []rate.PrefixLimit{
		{Prefix: netip.MustParsePrefix("127.0.0.0/8")},
		{Prefix: netip.MustParsePrefix("::1/128")},
	}
	seen := map[netip.Addr]bool{}
	for _, a := range auths {
		for _, m := range a.Addrs {
			nip, err := manet.ToIP(m)
			if err != nil {
				continue
			}
			ip, ok := netip.AddrFromSlice(nip)
			if !ok || seen[ip.Unmap()] {
				continue
			}
			ip = ip.Unmap()
			seen[ip] = true
			p := netip.PrefixFrom(ip, ip.BitLen())
			if ip.Is4() {
				v4 = append(v4, rcmgr.NetworkPrefixLimit{Network: p, ConnCount: conns})
			} else {
				v6 = append(v6, rcmgr.NetworkPrefixLimit{Network: p, ConnCount: conns})
			}
			rl = append(rl, rate.PrefixLimit{Prefix: p}) // zero Limit: unlimited
		}
	}
	// The rest as libp2p's defaults (rcmgr's newConnRateLimiter).
	limiter := &rate.Limiter{
		NetworkPrefixLimits: rl,
		SubnetRateLimiter: rate.SubnetLimiter{
			IPv4SubnetLimits: []rate.SubnetLimit{{PrefixLength: 32, Limit: rate.Limit{RPS: 0.2, Burst: 16}}},
			IPv6SubnetLimits: []rate.SubnetLimit{
				{PrefixLength: 56, Limit: rate.Limit{RPS: 0.2, Burst: 16}},
				{PrefixLength: 48, Limit: rate.Limit{RPS: 0.5, Burst: 80}},
			},
			GracePeriod: time.Minute,
		},
	}
	return []rcmgr.Option{rcmgr.WithNetworkPrefixLimit(v4, v6), rcmgr.WithConnRateLimiters(limiter)}
}
