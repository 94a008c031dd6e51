package node

import (
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
