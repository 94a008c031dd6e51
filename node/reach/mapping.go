// Package reach gets NATed peers onto direct connections where libp2p's own
// hole punch (DCUtR) cannot: connection reversal from a node behind an
// endpoint-dependent ("symmetric") NAT to a peer behind an
// endpoint-independent ("cone") one. It also holds the pure rules behind
// it: how our NAT maps (from what trusted observers see of us) and which
// addresses a peer may make us dial. Used by package node only.
//
// Why libp2p alone does not suffice (go-libp2p v0.51,
// p2p/protocol/holepunch): the peer that receives a relayed connection
// (here the worker, since clients dial workers) starts DCUtR and, on its
// first two attempts, plays the passive role: over TCP its dial is treated
// as the server side of the handshake, over QUIC it only sends punch
// packets. The other side dials the addresses the initiator's NAT showed
// the authorities. Behind a symmetric NAT those addresses are wrong (a new
// port per destination), and the initiator's own dial, which does reach a
// cone NAT, is accepted by the peer's listener as inbound: server meets
// server and the handshake hangs until the 10 s dial timeout. Only the
// third attempt swaps roles, after about 21 s over TCP and 11 s over QUIC.
//
// The reversal here: when our mapping is endpoint-dependent and a peer
// that speaks protocols.Reverse connects to us through a relay, we veto
// libp2p's hole punch with that peer (so its stuck dial cannot swallow
// ours) and ask the peer, over the relay, for its public addresses. The
// peer answers and, at the same moment, dials our observed addresses: that
// dial fails (wrong port) but opens its NAT's filter to our IP, which is
// all an address-restricted NAT needs; a full-cone one needs nothing. We
// then dial the peer's address as an ordinary client, and its listener
// accepts. A port-restricted or symmetric peer stays unreachable from a
// symmetric NAT: that pair stays relayed, as it must.
package reach

import (
	"net/netip"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Mapping is how a NAT in front of us maps our outgoing flows.
type Mapping int

const (
	// MappingUnknown: fewer than two trusted observers, or they disagree on
	// our IP (several uplinks).
	MappingUnknown Mapping = iota
	// MappingIndependent: every observer sees the same public port (cone
	// NAT, or no NAT). libp2p's DCUtR works from here.
	MappingIndependent
	// MappingDependent: observers see the same IP with different ports (a
	// symmetric NAT): the port a new peer would see cannot be predicted.
	MappingDependent
)

func (m Mapping) String() string {
	switch m {
	case MappingIndependent:
		return "endpoint-independent"
	case MappingDependent:
		return "endpoint-dependent"
	}
	return "unknown"
}

// Observation is what one observer (a peer we dialed directly) reported as
// our address on that connection (identify's observed address).
type Observation struct {
	Observer netip.Addr   // the observer's IP: two observers on one IP count once
	Addr     ma.Multiaddr // our address as it saw it
}

// Classify says how our NAT maps, per transport family (TCP and UDP are
// mapped separately by real NATs; the worse verdict wins): dependent as
// soon as two observers at different IPs saw us at the same IP with
// different ports; independent when at least two observers at different
// IPs saw the same address and none disagrees; unknown otherwise.
func Classify(obs []Observation) Mapping {
	type key struct {
		proto string
		ip    netip.Addr
	}
	type seen struct {
		port      string
		observer  netip.Addr
		observers int
		dependent bool
	}
	groups := map[key]*seen{}
	for _, o := range obs {
		ip, proto, port, ok := splitAddr(o.Addr)
		if !ok || !o.Observer.IsValid() {
			continue
		}
		k := key{proto, ip}
		g := groups[k]
		if g == nil {
			groups[k] = &seen{port: port, observer: o.Observer, observers: 1}
			continue
		}
		if o.Observer == g.observer {
			continue // one observer, several connections: one voice
		}
		g.observers++
		if port != g.port {
			g.dependent = true
		}
	}
	out := MappingUnknown
	for _, g := range groups {
		switch {
		case g.dependent:
			return MappingDependent
		case g.observers >= 2:
			out = MappingIndependent
		}
	}
	return out
}

// splitAddr takes /ip4|ip6/X/tcp/P or /ip4|ip6/X/udp/P/... apart.
func splitAddr(a ma.Multiaddr) (ip netip.Addr, proto, port string, ok bool) {
	if a == nil {
		return netip.Addr{}, "", "", false
	}
	nip, err := manet.ToIP(a)
	if err != nil {
		return netip.Addr{}, "", "", false
	}
	ip, ok = netip.AddrFromSlice(nip)
	if !ok {
		return netip.Addr{}, "", "", false
	}
	ip = ip.Unmap()
	if p, err := a.ValueForProtocol(ma.P_TCP); err == nil {
		return ip, "tcp", p, true
	}
	if p, err := a.ValueForProtocol(ma.P_UDP); err == nil {
		return ip, "udp", p, true
	}
	return netip.Addr{}, "", "", false
}
