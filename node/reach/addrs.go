package reach

import (
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// MaxAddrs is the most addresses a peer may send us to dial (or to prime
// its NAT towards); the rest are ignored. A node has a handful: one per
// transport per public IP.
const MaxAddrs = 8

// maxAddrBytes bounds one encoded address: /ip6/.../udp/N/quic-v1 is 25.
const maxAddrBytes = 64

// DialableAddrs decodes the addresses a peer sent and keeps only those we
// are willing to dial directly: public IPv4/IPv6, TCP or QUIC v1, a port,
// nothing else (no relay, DNS, /p2p or other suffix that could steer the
// dial elsewhere), at most MaxAddrs of them. What a hostile peer can still
// do is name a public address that is not its own; we dial it once, with a
// handshake that fails against anyone but that peer, so the peer gains one
// SYN or one QUIC Initial packet at a third party per exchange (the same as
// DCUtR allows; the service rate-limits exchanges per peer).
func DialableAddrs(raw [][]byte) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, b := range raw {
		if len(out) == MaxAddrs {
			break
		}
		if len(b) == 0 || len(b) > maxAddrBytes {
			continue
		}
		a, err := ma.NewMultiaddrBytes(b)
		if err != nil || !Dialable(a) {
			continue
		}
		out = append(out, a)
	}
	return ma.Unique(out)
}

// Dialable says whether a is /ip4|ip6/<public>/tcp/<port> or
// /ip4|ip6/<public>/udp/<port>/quic-v1 with a non-zero port.
func Dialable(a ma.Multiaddr) bool {
	if len(a) < 2 || !manet.IsPublicAddr(a) {
		return false
	}
	switch a[0].Code() {
	case ma.P_IP4, ma.P_IP6:
	default:
		return false
	}
	port := a[1]
	if port.Value() == "0" {
		return false
	}
	switch {
	case len(a) == 2 && port.Code() == ma.P_TCP:
		return true
	case len(a) == 3 && port.Code() == ma.P_UDP && a[2].Code() == ma.P_QUIC_V1:
		return true
	}
	return false
}

func addrsToBytes(as []ma.Multiaddr) [][]byte {
	out := make([][]byte, 0, len(as))
	for _, a := range as {
		out = append(out, a.Bytes())
	}
	return out
}
