package reach

import (
	"net/netip"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

func obs(observer, addr string) Observation {
	return Observation{Observer: netip.MustParseAddr(observer), Addr: ma.StringCast(addr)}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		obs  []Observation
		want Mapping
	}{
		{"nothing seen", nil, MappingUnknown},
		{"one observer cannot tell", []Observation{obs("1.1.1.1", "/ip4/9.9.9.9/tcp/4001")}, MappingUnknown},
		{"two observers, same port: cone", []Observation{
			obs("1.1.1.1", "/ip4/9.9.9.9/tcp/4001"), obs("2.2.2.2", "/ip4/9.9.9.9/tcp/4001")}, MappingIndependent},
		{"two observers, ports differ: symmetric", []Observation{
			obs("1.1.1.1", "/ip4/9.9.9.9/tcp/4001"), obs("2.2.2.2", "/ip4/9.9.9.9/tcp/53211")}, MappingDependent},
		{"UDP symmetric, TCP cone: the worse wins", []Observation{
			obs("1.1.1.1", "/ip4/9.9.9.9/tcp/4001"), obs("2.2.2.2", "/ip4/9.9.9.9/tcp/4001"),
			obs("1.1.1.1", "/ip4/9.9.9.9/udp/4001/quic-v1"), obs("2.2.2.2", "/ip4/9.9.9.9/udp/61000/quic-v1")}, MappingDependent},
		{"one observer IP twice is one voice", []Observation{
			obs("1.1.1.1", "/ip4/9.9.9.9/tcp/4001"), obs("1.1.1.1", "/ip4/9.9.9.9/tcp/5000")}, MappingUnknown},
		{"different public IPs (two uplinks) say nothing", []Observation{
			obs("1.1.1.1", "/ip4/9.9.9.9/tcp/4001"), obs("2.2.2.2", "/ip4/8.8.4.4/tcp/5000")}, MappingUnknown},
		{"observer without an IP is ignored", []Observation{
			{Addr: ma.StringCast("/ip4/9.9.9.9/tcp/4001")}, obs("2.2.2.2", "/ip4/9.9.9.9/tcp/5000")}, MappingUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.obs); got != tc.want {
				t.Fatalf("Classify = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDialableAddrs(t *testing.T) {
	raw := func(ss ...string) [][]byte {
		var out [][]byte
		for _, s := range ss {
			out = append(out, ma.StringCast(s).Bytes())
		}
		return out
	}
	got := DialableAddrs(append(raw(
		"/ip4/9.9.9.9/tcp/4001",
		"/ip4/9.9.9.9/udp/4001/quic-v1",
		"/ip6/2606:4700::1/tcp/4001",
		"/ip4/9.9.9.9/tcp/4001",      // duplicate
		"/ip4/192.168.1.10/tcp/4001", // private: never dialled on a peer's say-so
		"/ip4/127.0.0.1/tcp/4001",    // loopback
		"/ip4/9.9.9.9/tcp/0",         // no port
		"/ip4/9.9.9.9/udp/4001",      // bare UDP
		"/ip4/9.9.9.9/udp/4001/quic", // draft QUIC
		"/ip4/9.9.9.9/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
		"/ip4/9.9.9.9/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit",
		"/dns4/example.org/tcp/4001",
	), []byte{0xff, 0x01}, nil, make([]byte, 1000)))
	want := []string{"/ip4/9.9.9.9/tcp/4001", "/ip4/9.9.9.9/udp/4001/quic-v1", "/ip6/2606:4700::1/tcp/4001"}
	if len(got) != len(want) {
		t.Fatalf("DialableAddrs = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("DialableAddrs[%d] = %s, want %s", i, got[i], want[i])
		}
	}
	var many [][]byte
	for i := range 3 * MaxAddrs {
		many = append(many, ma.StringCast("/ip4/9.9.9.9/tcp/"+itoa(4000+i)).Bytes())
	}
	if n := len(DialableAddrs(many)); n != MaxAddrs {
		t.Fatalf("kept %d addresses, want the cap %d", n, MaxAddrs)
	}
}

func itoa(i int) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(i)).String()[len("0.0.0.0:"):]
}

// FuzzDialableAddrs: a peer's address list never panics the decoder, and
// whatever survives is dialable.
func FuzzDialableAddrs(f *testing.F) {
	f.Add(ma.StringCast("/ip4/9.9.9.9/tcp/4001").Bytes(), ma.StringCast("/ip4/9.9.9.9/udp/4001/quic-v1").Bytes())
	f.Add([]byte{0x04, 1, 2, 3}, []byte{})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		for _, m := range DialableAddrs([][]byte{a, b}) {
			if !Dialable(m) {
				t.Fatalf("kept undialable %s", m)
			}
		}
	})
}

func TestAdmitLimitsExchangesPerPeer(t *testing.T) {
	s := New()
	t0 := time.Unix(1000, 0)
	for i := range perPeerMax {
		if !s.admit("p", t0.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("exchange %d refused", i+1)
		}
	}
	if s.admit("p", t0.Add(5*time.Second)) {
		t.Fatal("exchange beyond the per-peer cap admitted")
	}
	if !s.admit("q", t0.Add(5*time.Second)) {
		t.Fatal("another peer refused")
	}
	if !s.admit("p", t0.Add(perPeerWindow+2*time.Second)) {
		t.Fatal("refused after the window passed")
	}
}

func TestQUICOnlyWhenBothOffered(t *testing.T) {
	tcp, q := ma.StringCast("/ip4/9.9.9.9/tcp/4001"), ma.StringCast("/ip4/9.9.9.9/udp/4001/quic-v1")
	if got := quicOnly(true, []ma.Multiaddr{tcp, q}); len(got) != 1 || !got[0].Equal(q) {
		t.Fatalf("both offered QUIC: %v, want the QUIC address only", got)
	}
	if got := quicOnly(false, []ma.Multiaddr{tcp, q}); len(got) != 2 {
		t.Fatalf("we sent no QUIC: %v, want all (the peer will punch our TCP)", got)
	}
	if got := quicOnly(true, []ma.Multiaddr{tcp}); len(got) != 1 || !got[0].Equal(tcp) {
		t.Fatalf("peer offered no QUIC: %v, want its TCP address", got)
	}
	// Through the filter: FilterLocal records what we sent, FilterRemote
	// decides, as libp2p calls them on either side.
	f := New().AddrFilter()
	f.FilterLocal("p", []ma.Multiaddr{tcp})
	if got := f.FilterRemote("p", []ma.Multiaddr{tcp, q}); len(got) != 2 {
		t.Fatalf("we sent TCP only, peer both: %v, want both kept", got)
	}
	f.FilterLocal("p", []ma.Multiaddr{tcp, q})
	if got := f.FilterRemote("p", []ma.Multiaddr{tcp, q}); len(got) != 1 || !got[0].Equal(q) {
		t.Fatalf("both sent QUIC: %v, want QUIC only", got)
	}
}

func TestQUICGuess(t *testing.T) {
	listen := []ma.Multiaddr{ma.StringCast("/ip4/0.0.0.0/tcp/4001"), ma.StringCast("/ip4/0.0.0.0/udp/4002/quic-v1")}
	kept := ma.StringCast("/ip4/9.9.9.9/tcp/4001")
	got := quicGuess([]ma.Multiaddr{kept}, listen)
	if len(got) != 2 || got[1].String() != "/ip4/9.9.9.9/udp/4002/quic-v1" {
		t.Fatalf("port-preserving NAT: %v, want the TCP address and a QUIC guess", got)
	}
	if got := quicGuess([]ma.Multiaddr{ma.StringCast("/ip4/9.9.9.9/tcp/53000")}, listen); len(got) != 1 {
		t.Fatalf("port not preserved: %v, want no guess", got)
	}
	q := ma.StringCast("/ip4/9.9.9.9/udp/61000/quic-v1")
	if got := quicGuess([]ma.Multiaddr{kept, q}, listen); len(got) != 2 {
		t.Fatalf("QUIC already known: %v, want it as is", got)
	}
	if got := quicGuess([]ma.Multiaddr{kept}, listen[:1]); len(got) != 1 {
		t.Fatalf("no QUIC listener: %v, want no guess", got)
	}
}

// TestDialableRejectsEmbeddedPrivateIPv4: an IPv6 address that carries an
// IPv4 one (NAT64, 6to4, Teredo) is dialled through a translator that
// reaches that IPv4 address; manet calls such addresses public whatever
// they embed, so a peer could steer our dial at a private or loopback
// host behind a NAT64 gateway. They count as public only when what they
// embed is.
func TestDialableRejectsEmbeddedPrivateIPv4(t *testing.T) {
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"/ip6/64:ff9b::909:909/tcp/4001", true},         // NAT64 of 9.9.9.9
		{"/ip6/64:ff9b::a00:1/tcp/4001", false},          // NAT64 of 10.0.0.1
		{"/ip6/64:ff9b::7f00:1/udp/4001/quic-v1", false}, // NAT64 of 127.0.0.1
		{"/ip6/64:ff9b::a9fe:a9fe/tcp/80", false},        // NAT64 of 169.254.169.254
		{"/ip6/64:ff9b:1::a00:1/tcp/4001", false},        // local-use NAT64 prefix
		{"/ip6/2002:909:909::1/tcp/4001", true},          // 6to4 of 9.9.9.9
		{"/ip6/2002:a00:1::1/tcp/4001", false},           // 6to4 of 10.0.0.1
		{"/ip6/2002:7f00:1::1/tcp/4001", false},          // 6to4 of 127.0.0.1
		{"/ip6/2001:0:909:909::1/tcp/4001", false},       // Teredo: never
		{"/ip6/2606:4700::1/tcp/4001", true},
	} {
		if got := Dialable(ma.StringCast(c.addr)); got != c.want {
			t.Errorf("Dialable(%s) = %v, want %v", c.addr, got, c.want)
		}
	}
}
