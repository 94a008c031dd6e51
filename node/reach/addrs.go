package reach

import (
	"net/netip"

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
	case ma.P_IP4:
	case ma.P_IP6:
		if !publicEmbedded(a[0].RawValue()) {
			return false
		}
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

// IPv6 prefixes whose addresses carry an IPv4 address that a translator
// or relay delivers to (manet calls them public whatever they carry).
var (
	nat64WKP   = netip.MustParsePrefix("64:ff9b::/96")   // RFC 6052: IPv4 in the last 32 bits
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48") // RFC 8215: the operator's own translator
	sixToFour  = netip.MustParsePrefix("2002::/16")      // RFC 3056: IPv4 in bits 16-47
	teredo     = netip.MustParsePrefix("2001::/32")      // RFC 4380: obfuscated IPv4
)

// publicEmbedded says whether the IPv6 address raw, if it carries an IPv4
// address, carries a public one: otherwise a peer could steer our dial
// through a NAT64 gateway or 6to4 relay to a private or loopback host.
// Local-use NAT64 and Teredo (its IPv4 obfuscated, its use long gone) are
// never dialled on a peer's say-so.
func publicEmbedded(raw []byte) bool {
	ip, ok := netip.AddrFromSlice(raw)
	if !ok {
		return false
	}
	var v4 [4]byte
	b := ip.As16()
	switch {
	case nat64Local.Contains(ip), teredo.Contains(ip):
		return false
	case nat64WKP.Contains(ip):
		copy(v4[:], b[12:16])
	case sixToFour.Contains(ip):
		copy(v4[:], b[2:6])
	default:
		return true
	}
	return manet.IsPublicAddr(ma.StringCast("/ip4/" + netip.AddrFrom4(v4).String()))
}

func addrsToBytes(as []ma.Multiaddr) [][]byte {
	out := make([][]byte, 0, len(as))
	for _, a := range as {
		out = append(out, a.Bytes())
	}
	return out
}
