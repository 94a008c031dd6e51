package reach

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	circuit "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	hpb "github.com/libp2p/go-libp2p/p2p/protocol/holepunch/pb"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/protocols"
)

func newHost(t *testing.T, opts ...libp2p.Option) host.Host {
	t.Helper()
	h, err := libp2p.New(append([]libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestVetoOnlyWhereWeReverse: the hole-punch filter leaves DCUtR alone
// unless our mapping is endpoint-dependent and the peer reached us through
// a relay and speaks the reversal protocol; the handler refuses a reversal
// on a direct connection. Real hosts and a real circuit relay on loopback.
func TestVetoOnlyWhereWeReverse(t *testing.T) {
	r := newHost(t, libp2p.EnableRelayService(relay.WithInfiniteLimits()), libp2p.ForceReachabilityPublic())
	rinfo := peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}
	w, c := newHost(t), newHost(t)
	ws, cs := New(), New()
	if err := ws.Start(w); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	if err := cs.Start(c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Connect(ctx, rinfo); err != nil {
		t.Fatal(err)
	}
	if _, err := circuit.Reserve(ctx, w, rinfo); err != nil {
		t.Fatalf("reserve: %v", err)
	}
	circ := ma.StringCast(fmt.Sprintf("%s/p2p/%s/p2p-circuit", r.Addrs()[0], r.ID()))
	cctx := network.WithAllowLimitedConn(ctx, "test")
	if err := c.Connect(cctx, peer.AddrInfo{ID: w.ID(), Addrs: []ma.Multiaddr{circ}}); err != nil {
		t.Fatalf("relayed connect: %v", err)
	}
	waitFor(t, "w to learn c speaks the reversal protocol", func() bool {
		ok, _ := w.Peerstore().SupportsProtocols(c.ID(), protocols.Reverse)
		return len(ok) > 0
	})
	addrs := []ma.Multiaddr{ma.StringCast("/ip4/9.9.9.9/tcp/4001")}
	f := ws.AddrFilter()
	if got := f.FilterRemote(c.ID(), addrs); len(got) != 1 {
		t.Fatalf("mapping unknown: DCUtR vetoed (%v)", got)
	}
	ws.mu.Lock() // two authorities see us at different ports: symmetric
	ws.obs[peer.ID("a1")] = Observation{Observer: netip.MustParseAddr("1.1.1.1"), Addr: ma.StringCast("/ip4/8.8.8.8/tcp/4001")}
	ws.obs[peer.ID("a2")] = Observation{Observer: netip.MustParseAddr("2.2.2.2"), Addr: ma.StringCast("/ip4/8.8.8.8/tcp/61234")}
	ws.mu.Unlock()
	if ws.Mapping() != MappingDependent {
		t.Fatalf("mapping %v", ws.Mapping())
	}
	if got := f.FilterRemote(c.ID(), addrs); len(got) != 0 {
		t.Fatalf("symmetric, relayed, speaks reversal: DCUtR not vetoed (%v)", got)
	}
	// From c's side the relayed connection is outbound: c does not
	// reverse (nor would it: its mapping is unknown).
	if got := cs.AddrFilter().FilterRemote(w.ID(), addrs); len(got) != 1 {
		t.Fatalf("c vetoed DCUtR (%v)", got)
	}

	// A reversal asked on a direct connection is refused (reset before
	// any reply), whatever it carries.
	if err := c.Connect(ctx, peer.AddrInfo{ID: w.ID(), Addrs: w.Addrs()}); err != nil {
		t.Fatal(err)
	}
	st, err := c.NewStream(network.WithNoDial(ctx, "test"), w.ID(), protocols.Reverse)
	if err != nil {
		t.Fatal(err)
	}
	if st.Conn().Stat().Limited {
		t.Fatal("stream went over the relay")
	}
	_ = st.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := st.Write([]byte{0x02, 0x08, 0x00}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Read(make([]byte, 1)); err == nil {
		t.Fatal("reversal on a direct connection was answered")
	}
}

// TestInitiatorRateLimitedPerPeer: a stranger that reconnects to a
// symmetric-NAT node through the relay in a loop must not make it start a
// reversal (each of which dials up to MaxAddrs addresses the stranger
// names) on every connection: the initiator side is bounded per peer like
// the responder's. Real hosts and a real circuit relay on loopback; the
// stranger's handler names no address, so nothing is dialled off the box.
func TestInitiatorRateLimitedPerPeer(t *testing.T) {
	r := newHost(t, libp2p.EnableRelayService(relay.WithInfiniteLimits()), libp2p.ForceReachabilityPublic())
	rinfo := peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}
	w, c := newHost(t), newHost(t)
	var mu sync.Mutex
	outcomes := 0
	log := events.New(io.Discard, "w", "worker", events.WithObserver(func(e *events.Event) {
		if e.Kind == "reversal" {
			mu.Lock()
			outcomes++
			mu.Unlock()
		}
	}))
	t.Cleanup(func() { _ = log.Close() })
	ws := New(WithLog(log))
	ws.mu.Lock() // two authorities see w at different ports: symmetric
	ws.obs[peer.ID("a1")] = Observation{Observer: netip.MustParseAddr("1.1.1.1"), Addr: ma.StringCast("/ip4/8.8.8.8/tcp/4001")}
	ws.obs[peer.ID("a2")] = Observation{Observer: netip.MustParseAddr("2.2.2.2"), Addr: ma.StringCast("/ip4/8.8.8.8/tcp/61234")}
	ws.mu.Unlock()
	if err := ws.Start(w); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })

	var exchanges atomic.Int32
	c.SetStreamHandler(protocols.Reverse, func(st network.Stream) {
		defer st.Close()
		_ = st.SetDeadline(time.Now().Add(5 * time.Second))
		var m hpb.HolePunch
		if protocols.NewReader(st, protocols.MaxReverseMsg).Read(&m) != nil {
			_ = st.Reset()
			return
		}
		exchanges.Add(1)
		_ = protocols.NewWriter(st, protocols.MaxReverseMsg).Write(&hpb.HolePunch{Type: hpb.HolePunch_CONNECT.Enum()})
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Connect(ctx, rinfo); err != nil {
		t.Fatal(err)
	}
	if _, err := circuit.Reserve(ctx, w, rinfo); err != nil {
		t.Fatalf("reserve: %v", err)
	}
	circ := ma.StringCast(fmt.Sprintf("%s/p2p/%s/p2p-circuit", r.Addrs()[0], r.ID()))
	const rounds = 5
	for i := 1; i <= rounds; i++ {
		c.Peerstore().ClearAddrs(w.ID()) // through the relay, never directly
		if err := c.Connect(network.WithAllowLimitedConn(ctx, "test"), peer.AddrInfo{ID: w.ID(), Addrs: []ma.Multiaddr{circ}}); err != nil {
			t.Fatalf("round %d: relayed connect: %v", i, err)
		}
		waitFor(t, "w's reversal outcome", func() bool { mu.Lock(); defer mu.Unlock(); return outcomes >= i })
		_ = c.Network().ClosePeer(w.ID())
		waitFor(t, "w to see c gone", func() bool { return w.Network().Connectedness(c.ID()) == network.NotConnected })
	}
	if n := exchanges.Load(); n > perPeerMax {
		t.Fatalf("%d reversal exchanges started with one peer in %d reconnections; want at most %d per %v", n, rounds, perPeerMax, perPeerWindow)
	}
}
