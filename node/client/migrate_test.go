package client_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	circuit "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/node/exec"
	"github.com/p2pjobs/p2pnode/node/schedule"
	"github.com/p2pjobs/p2pnode/node/worker"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

type staticFinder []peer.AddrInfo

func (f staticFinder) FindWorkers(context.Context, string, int) ([]peer.AddrInfo, error) {
	return f, nil
}

func newKeyHost(t *testing.T, opts ...libp2p.Option) (host.Host, crypto.PrivKey) {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(append([]libp2p.Option{libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableMetrics()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h, key
}

// TestJobStreamMovesToDirect: a series whose worker is first reached only
// through a relay (real circuit relay v2 on loopback) runs its first jobs
// over the relay; once a direct connection appears mid-series, the
// dispatcher drains the relayed stream and the remaining jobs run direct.
func TestJobStreamMovesToDirect(t *testing.T) {
	old := client.DirectWait
	client.DirectWait = 100 * time.Millisecond // no hole punch on loopback: go relayed at once
	t.Cleanup(func() { client.DirectWait = old })

	r, _ := newKeyHost(t, libp2p.EnableRelayService(relay.WithInfiniteLimits()), libp2p.ForceReachabilityPublic())
	rinfo := peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}
	circuitAddr := ma.StringCast(fmt.Sprintf("%s/p2p/%s/p2p-circuit", r.Addrs()[0], r.ID()))
	// The worker advertises its relay address only, as a NATed node does.
	w, wkey := newKeyHost(t, libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return []ma.Multiaddr{circuitAddr} }))
	c, ckey := newKeyHost(t)

	var cbuf, wbuf bytes.Buffer // each Log owns its buffer: read only after Close
	elog := events.New(&cbuf, c.ID().String(), "client")
	wlog := events.New(&wbuf, w.ID().String(), "worker")
	t.Cleanup(func() {
		if t.Failed() {
			_ = elog.Close()
			_ = wlog.Close()
			t.Logf("client events:\n%s\nworker events:\n%s", cbuf.String(), wbuf.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := w.Connect(ctx, rinfo); err != nil {
		t.Fatal(err)
	}
	if _, err := circuit.Reserve(ctx, w, rinfo); err != nil {
		t.Fatalf("reserve: %v", err)
	}
	wx, err := exec.NewWasm()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wx.Close(context.Background()) })
	ws, err := worker.New(w, wkey, []exec.Executor{wx}, wlog, worker.WithSlots(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })

	cl := client.New(c, ckey, elog, client.WithDiscovery(client.DiscoveryDHT),
		client.WithFinder(staticFinder{{ID: w.ID(), Addrs: []ma.Multiaddr{circuitAddr}}}))

	// The trivial module: compiling the 3 MB pi module on a loaded machine
	// would dominate the test.
	s := &client.Series{ID: "move", Executor: "wasm", Module: wasm.Trivial, Strategy: schedule.Balanced, Retries: 1,
		Resources: &pb.Resources{MemoryBytes: 16 << 20, TimeoutMs: 30000}}
	for i := range 200 {
		s.Jobs = append(s.Jobs, client.Job{ID: fmt.Sprintf("job-%03d", i)})
	}
	var (
		once  sync.Once
		mu    sync.Mutex
		order []string // the connection of each result, as they end
	)
	direct := make(chan error, 1)
	rep, err := cl.Run(ctx, s, client.Hooks{OnOutcome: func(o client.Outcome) {
		mu.Lock()
		order = append(order, o.Conn)
		mu.Unlock()
		if o.Conn != "relayed" {
			return
		}
		// The first relayed result: now a direct path appears (as a late
		// hole punch or reversal would make it). Connecting before
		// returning holds the results back meanwhile, so jobs are left to
		// move whatever the machine's speed.
		once.Do(func() {
			dctx := network.WithForceDirectDial(ctx, "test")
			direct <- c.Connect(dctx, peer.AddrInfo{ID: w.ID(), Addrs: w.Network().ListenAddresses()})
		})
	}})
	if err != nil {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("run: %v (results so far, by connection, in order: %v)", err, order)
	}
	if err := <-direct; err != nil {
		t.Fatalf("direct connect: %v", err)
	}
	by := map[string]int{}
	for _, o := range rep.Outcomes {
		if o.Err != nil {
			t.Fatalf("%s: %v", o.ID, o.Err)
		}
		by[o.Conn]++
	}
	if by["relayed"] == 0 || by["direct"] == 0 {
		t.Fatalf("results by connection %v: want the first over the relay, the rest direct", by)
	}
	// The relayed stream drains before the direct one opens, and it does
	// not fall back: relayed results, then direct ones only.
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(order); i++ {
		if order[i-1] == "direct" && order[i] != "direct" {
			t.Fatalf("results in order %v: a %s one after a direct one", order, order[i])
		}
	}
	t.Logf("results by connection: %v", by)
}
