package overlay_test

// The scale check: hundreds of workers forming the overlay and answering a
// flooded solicitation. 300 real TCP hosts with their goroutines, buffers
// and handshakes do not fit this 2-core machine in CI time, so this
// simulation (and only it) runs the real overlay service over go-libp2p's
// in-memory mocknet: real streams, real protocol code, no sockets. Real
// hosts on loopback are exercised in service_test.go.

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/p2pjobs/p2pnode/node/authority"
	"github.com/p2pjobs/p2pnode/node/overlay"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// signer bids for everything, signing with the worker's key.
type signer struct {
	key  crypto.PrivKey
	id   peer.ID
	bids atomic.Int64
}

func (s *signer) MakeBid(client peer.ID, req *pb.BidRequest) (*pb.SignedBid, error) {
	s.bids.Add(1)
	return protocols.SignBid(s.key, &pb.Bid{SeriesId: req.SeriesId, Worker: []byte(s.id), Client: []byte(client),
		PricePerJob: 1, MaxJobs: req.JobCount, ExpiresUnixMs: time.Now().Add(time.Hour).UnixMilli()})
}

// listSampler samples uniformly from a fixed list of workers (the small
// real-host clusters of service_test.go).
type listSampler struct {
	mu  sync.Mutex
	rng *rand.Rand
	all []peer.AddrInfo
}

func (l *listSampler) Sample(_ context.Context, n int) ([]peer.AddrInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	perm := l.rng.Perm(len(l.all))
	out := make([]peer.AddrInfo, 0, n)
	for _, i := range perm[:min(n, len(perm))] {
		out = append(out, l.all[i])
	}
	return out, nil
}

type simNode struct {
	h   host.Host
	svc *overlay.Service
	bid *signer
}

// SimResult are the figures of one simulation.
type SimResult struct {
	Workers, Rounds, MinDegree, MaxDegree int
	MeanDegree                            float64
	Connected                             bool
	Reached                               int   // distinct workers whose signed bids reached the client (one entry)
	Ball                                  int   // workers within ttl-1 hops of that entry: the most a flood can reach
	Reached3, Ball3                       int   // the same with four entries
	Received, Duplicates, Forwarded       int64 // one-entry flood
	Received3, Duplicates3                int64 // four-entry flood
	FormTime, FloodTime, Wall             time.Duration
	MaxIn                                 int   // most workers choosing one worker as neighbour
	MaxConns                              int   // most peers one worker is connected to (neighbours, authority, leftovers)
	Closed                                int64 // probe connections closed as not needed
}

func runSim(t *testing.T, n, degree int, ttl uint32) SimResult {
	start := time.Now()
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	// The sampler is the real one: a real authority's registry on the
	// mocknet, sampled through the discover protocol.
	akey, _, _ := crypto.GenerateEd25519Key(nil)
	ah, err := mn.AddPeer(akey, ma.StringCast("/ip4/10.254.0.1/tcp/4001"))
	if err != nil {
		t.Fatal(err)
	}
	auth := authority.New(ah, nil)
	t.Cleanup(func() { _ = auth.Close() })
	authInfo := peer.AddrInfo{ID: ah.ID(), Addrs: ah.Addrs()}
	nodes := make([]*simNode, n)
	for i := range nodes {
		key, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := mn.AddPeer(key, ma.StringCast(fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", i>>16&255, i>>8&255, i&255)))
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &simNode{h: h, bid: &signer{key: key, id: h.ID()}}
	}
	ckey, _, _ := crypto.GenerateEd25519Key(nil)
	client, err := mn.AddPeer(ckey, ma.StringCast("/ip4/10.255.0.1/tcp/4001"))
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	hop, base := overlay.DefaultHop, overlay.DefaultBase // real waits: they cost time only when a worker is slow
	for i, nd := range nodes {
		sampler := overlay.AuthoritySampler{H: nd.h, Authorities: func() []peer.AddrInfo { return []peer.AddrInfo{authInfo} }}
		nd.svc = overlay.New(nd.h, nd.bid, nil, overlay.WithSampler(sampler), overlay.WithDegree(degree),
			overlay.WithoutLoop(), overlay.WithWait(hop, base), overlay.WithSeed(uint64(i)+1),
			overlay.WithProbeTimeout(5*time.Second))
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			_ = nd.svc.Close()
		}
	})

	res := SimResult{Workers: n}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	round := func(nodes []*simNode) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for _, nd := range nodes {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				nd.svc.Rebuild(ctx)
			}()
		}
		wg.Wait()
	}
	// Arrival: workers register in five waves, and every worker registered
	// so far rebuilds once after each wave, as workers that start one after
	// another do. This is what made the first workers hubs: while few are
	// registered, every newcomer samples them.
	const waves = 5
	for w := range waves {
		wave := nodes[w*n/waves : (w+1)*n/waves]
		for _, nd := range wave {
			req := &pb.RegisterRequest{Executors: []string{"wasm"}, Slots: 1}
			for _, a := range nd.h.Addrs() {
				req.Addrs = append(req.Addrs, a.Bytes())
			}
			nd.h.Peerstore().AddAddrs(ah.ID(), ah.Addrs(), time.Hour)
			resp := &pb.RegisterResponse{}
			if _, err := protocols.Call(ctx, nd.h, ah.ID(), []protocol.ID{protocols.Register},
				protocols.Exchange{Max: protocols.MaxRegisterMsg, Timeout: protocols.RegisterTimeout}, req, resp); err != nil || resp.Error != nil {
				t.Fatalf("register: %v %v", err, resp.Error)
			}
		}
		round(nodes[:(w+1)*n/waves])
	}
	// Formation: rounds of concurrent rebuilds until every worker has its
	// target degree and the overlay is connected.
	for res.Rounds = 1; res.Rounds <= 10; res.Rounds++ {
		if degreesOK(nodes, degree, &res) && connected(nodes) {
			res.Connected = true
			break
		}
		round(nodes)
	}
	res.FormTime = time.Since(start)
	in := map[peer.ID]int{}
	for _, nd := range nodes {
		for _, p := range nd.svc.Outbound() {
			in[p]++
		}
		res.Closed += nd.svc.Stats().Closed
		peers := map[peer.ID]bool{}
		for _, c := range nd.h.Network().Conns() {
			peers[c.RemotePeer()] = true
		}
		res.MaxConns = max(res.MaxConns, len(peers))
	}
	for _, k := range in {
		res.MaxIn = max(res.MaxIn, k)
	}

	// Flood: the client hands a solicitation to one worker.
	fstart := time.Now()
	req := &pb.BidRequest{SeriesId: "sim", JobCount: 1000, Executor: "wasm"}
	entry := nodes[0].h.ID()
	m := overlay.NewSolicitation(client.ID(), client.Addrs(), req, ttl)
	p, err := overlay.Send(ctx, client, entry, m, hop, base)
	if err != nil {
		t.Fatalf("flood: %v", err)
	}
	res.FloodTime = time.Since(fstart)
	verify := overlay.BidVerifier(client.ID(), "sim")
	seen := map[peer.ID]bool{}
	for _, sb := range p.Bids {
		id, err := verify(sb)
		if err != nil {
			t.Fatalf("bad bid in the aggregate: %v", err)
		}
		seen[id] = true
	}
	res.Reached = len(seen)
	for _, nd := range nodes {
		st := nd.svc.Stats()
		res.Received += st.Received
		res.Duplicates += st.Duplicates
		res.Forwarded += st.Forwarded
	}
	res.Ball = ball(nodes, []peer.ID{entry}, int(ttl)-1)
	// The client's way (node/client/flood.go): four entries, one token.
	m3 := overlay.NewSolicitation(client.ID(), client.Addrs(), req, ttl)
	entries := []peer.ID{nodes[n/4].h.ID(), nodes[n/2].h.ID(), nodes[3*n/4].h.ID(), nodes[n-1].h.ID()}
	res.Ball3 = ball(nodes, entries, int(ttl)-1)
	p3, forged, err := overlay.Flood(ctx, client, entries, m3, hop, base)
	if err != nil {
		t.Logf("flood from four entries: %v", err)
	}
	if forged != 0 || p3 == nil {
		t.Fatalf("flood from four entries: %d forged", forged)
	}
	res.Reached3 = len(p3.Bids)
	for _, nd := range nodes {
		st := nd.svc.Stats()
		res.Received3 += st.Received
		res.Duplicates3 += st.Duplicates
	}
	res.Received3 -= res.Received
	res.Duplicates3 -= res.Duplicates
	res.Wall = time.Since(start)
	return res
}

func degreesOK(nodes []*simNode, degree int, res *SimResult) bool {
	ok := true
	res.MinDegree, res.MaxDegree, res.MeanDegree = 1<<30, 0, 0
	for _, nd := range nodes {
		out, all := len(nd.svc.Outbound()), len(nd.svc.Neighbours())
		if out < degree {
			ok = false
		}
		res.MinDegree, res.MaxDegree = min(res.MinDegree, all), max(res.MaxDegree, all)
		res.MeanDegree += float64(all) / float64(len(nodes))
	}
	return ok
}

// ball counts the workers within r hops of any of from.
func ball(nodes []*simNode, from []peer.ID, r int) int {
	adj := map[peer.ID][]peer.ID{}
	for _, nd := range nodes {
		adj[nd.h.ID()] = nd.svc.Neighbours()
	}
	dist := map[peer.ID]int{}
	queue := slices.Clone(from)
	for _, f := range from {
		dist[f] = 0
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if dist[p] == r {
			continue
		}
		for _, q := range adj[p] {
			if _, ok := dist[q]; !ok {
				dist[q] = dist[p] + 1
				queue = append(queue, q)
			}
		}
	}
	return len(dist)
}

// connected checks the undirected neighbour graph by breadth-first search.
func connected(nodes []*simNode) bool {
	adj := map[peer.ID][]peer.ID{}
	for _, nd := range nodes {
		for _, q := range nd.svc.Neighbours() {
			adj[nd.h.ID()] = append(adj[nd.h.ID()], q)
			adj[q] = append(adj[q], nd.h.ID())
		}
	}
	seen := map[peer.ID]bool{nodes[0].h.ID(): true}
	queue := []peer.ID{nodes[0].h.ID()}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, q := range adj[p] {
			if !seen[q] {
				seen[q] = true
				queue = append(queue, q)
			}
		}
	}
	return len(seen) == len(nodes)
}

var (
	simWorkers = flag.Int("sim.workers", 0, "workers in TestScaleSimulation (default 300, 60 with -short)")
	simTTL     = flag.Uint("sim.ttl", overlay.DefaultTTL, "flood TTL in TestScaleSimulation")
)

// TestScaleSimulation: 300 workers (60 in -short mode, -sim.workers N to
// choose) arrive in waves and form the overlay with degree 4, sampling a
// real authority's registry; no worker is chosen by more than three times
// the degree, probe connections not kept are closed, and a solicitation
// handed to four workers reaches every worker within TTL hops, and with
// TTL 4 and up to 300 workers at least 95 % of them. It prints the figures
// for the README's scale table:
//
//	go test ./node/overlay -run TestScaleSimulation -v -sim.workers 1000 -sim.ttl 5
func TestScaleSimulation(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 60
	}
	if *simWorkers > 0 {
		n = *simWorkers
	}
	ttl := uint32(*simTTL)
	r := runSim(t, n, overlay.DefaultDegree, ttl)
	reach := float64(r.Reached) / float64(r.Workers)
	dup := 0.0
	if r.Received > 0 {
		dup = float64(r.Duplicates) / float64(r.Received)
	}
	t.Logf("overlay simulation (mocknet): %d workers, degree %d: converged in %d rounds after arrival (%v); degree min %d mean %.1f max %d; max in-degree %d; connected %v",
		r.Workers, overlay.DefaultDegree, r.Rounds, r.FormTime.Round(time.Millisecond), r.MinDegree, r.MeanDegree, r.MaxDegree, r.MaxIn, r.Connected)
	t.Logf("connections: at most %d peers per worker (authority included); %d probe connections closed", r.MaxConns, r.Closed)
	t.Logf("flood ttl %d from 1 entry: reached %d/%d workers (%.1f%%; %d within %d hops) in %v; %d messages received, %d duplicates (ratio %.3f), %d forwarded",
		ttl, r.Reached, r.Workers, 100*reach, r.Ball, ttl-1, r.FloodTime.Round(time.Millisecond),
		r.Received, r.Duplicates, dup, r.Forwarded)
	reach3 := float64(r.Reached3) / float64(r.Workers)
	t.Logf("flood ttl %d from 4 entries: reached %d/%d workers (%.1f%%; %d within reach); %d messages received, %d duplicates (ratio %.3f); simulation wall time %v",
		ttl, r.Reached3, r.Workers, 100*reach3, r.Ball3, r.Received3, r.Duplicates3, float64(r.Duplicates3)/float64(max(r.Received3, 1)),
		r.Wall.Round(time.Millisecond))
	if !r.Connected || r.MinDegree < overlay.DefaultDegree {
		t.Errorf("overlay did not converge: connected %v, min degree %d", r.Connected, r.MinDegree)
	}
	if r.MaxIn > 3*overlay.DefaultDegree {
		t.Errorf("a worker was chosen by %d workers, more than 3 x degree %d", r.MaxIn, overlay.DefaultDegree)
	}
	// Neighbours (at most the degree out and twice it in), the authority,
	// and a small constant for connections in flight.
	if limit := 3*overlay.DefaultDegree + 1 + 4; r.MaxConns > limit {
		t.Errorf("a worker holds connections to %d peers, more than %d", r.MaxConns, limit)
	}
	if r.Reached < r.Ball {
		t.Errorf("one entry reached %d workers, %d are within reach", r.Reached, r.Ball)
	}
	if r.Reached3 < r.Ball3 {
		t.Errorf("four entries reached %d workers, %d are within reach", r.Reached3, r.Ball3)
	}
	if reach3 < 0.95 && n <= 300 && ttl >= overlay.DefaultTTL {
		t.Errorf("reach %.1f%% below 95%%", 100*reach3)
	}
}
