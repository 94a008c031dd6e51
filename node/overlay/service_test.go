package overlay_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/p2pjobs/p2pnode/node/overlay"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"golang.org/x/time/rate"
)

// realHost is a real libp2p host on loopback TCP.
func realHost(t *testing.T) (host.Host, crypto.PrivKey) {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h, key
}

const hop, base = 100 * time.Millisecond, 400 * time.Millisecond

type cluster struct {
	workers []*simNode
	client  host.Host
	sampler *listSampler
}

// newCluster starts n real workers with overlays (no loop) and a client,
// and forms the overlay with one rebuild round each.
func newCluster(t *testing.T, n, degree int, opts ...overlay.Option) *cluster {
	c := &cluster{sampler: &listSampler{rng: rand.New(rand.NewPCG(1, 2))}}
	for range n {
		h, key := realHost(t)
		c.workers = append(c.workers, &simNode{h: h, bid: &signer{key: key, id: h.ID()}})
		c.sampler.all = append(c.sampler.all, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	}
	for i, w := range c.workers {
		w.svc = overlay.New(w.h, w.bid, nil, append([]overlay.Option{overlay.WithSampler(c.sampler), overlay.WithDegree(degree),
			overlay.WithoutLoop(), overlay.WithWait(hop, base), overlay.WithSeed(uint64(i + 1))}, opts...)...)
		t.Cleanup(func() { _ = w.svc.Close() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, w := range c.workers {
		w.svc.Rebuild(ctx)
	}
	c.client, _ = realHost(t)
	for _, w := range c.workers {
		c.client.Peerstore().AddAddrs(w.h.ID(), w.h.Addrs(), time.Hour)
	}
	return c
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFloodRealHosts(t *testing.T) {
	c := newCluster(t, 8, 2)
	for _, w := range c.workers {
		if len(w.svc.Outbound()) != 2 {
			t.Fatalf("%s has %d chosen neighbours, want 2", w.h.ID(), len(w.svc.Outbound()))
		}
	}
	ctx := context.Background()
	req := &pb.BidRequest{SeriesId: "s1", JobCount: 3, Executor: "wasm"}
	m := overlay.NewSolicitation(c.client.ID(), c.client.Addrs(), req, overlay.DefaultTTL)
	p, forged, err := overlay.Flood(ctx, c.client, []peer.ID{c.workers[0].h.ID(), c.workers[5].h.ID()}, m, hop, base)
	if err != nil || forged != 0 {
		t.Fatalf("flood: %v, %d forged", err, forged)
	}
	if len(p.Bids) < 6 {
		t.Errorf("%d bids from 8 workers", len(p.Bids))
	}
	verify := overlay.BidVerifier(c.client.ID(), "s1")
	for _, sb := range p.Bids {
		if _, err := verify(sb); err != nil {
			t.Error(err)
		}
	}
}

func TestNeighbourDropRemoved(t *testing.T) {
	c := newCluster(t, 4, 2)
	gone := c.workers[3]
	var watchers []*simNode
	for _, w := range c.workers[:3] {
		if slices.Contains(w.svc.Neighbours(), gone.h.ID()) {
			watchers = append(watchers, w)
		}
	}
	if len(watchers) == 0 {
		t.Fatal("nobody is a neighbour of worker 3")
	}
	_ = gone.svc.Close()
	_ = gone.h.Close()
	waitFor(t, 10*time.Second, "the dropped neighbour to leave every set", func() bool {
		for _, w := range watchers {
			if slices.Contains(w.svc.Neighbours(), gone.h.ID()) {
				return false
			}
		}
		return true
	})
}

// send writes a raw solicitation from h to w and returns the answer.
func send(t *testing.T, h host.Host, w peer.ID, m *pb.Solicitation) (*pb.Proffer, error) {
	t.Helper()
	resp := &pb.Proffer{}
	_, err := protocols.Call(context.Background(), h, w, []protocol.ID{protocols.Solicit}, overlay.SolicitExchange(hop, base), m, resp)
	if err != nil {
		return nil, err
	}
	return resp, protocols.FromPB(resp.Error)
}

func TestBadSolicitations(t *testing.T) {
	c := newCluster(t, 2, 1, overlay.WithRateLimit(rate.Every(time.Hour), 12))
	target := c.workers[0]
	self := []byte(c.client.ID())
	good := func() *pb.Solicitation {
		return overlay.NewSolicitation(c.client.ID(), nil, &pb.BidRequest{SeriesId: "s", JobCount: 1, Executor: "wasm"}, 4)
	}
	huge := make([][]byte, 1000)
	for i := range huge {
		huge[i] = self
	}
	for _, tc := range []struct {
		name string
		edit func(*pb.Solicitation)
		code pb.ErrorCode
	}{
		{"huge path", func(m *pb.Solicitation) { m.Path = huge }, pb.ErrorCode_TOO_LARGE},
		{"huge avoid", func(m *pb.Solicitation) { m.Avoid = huge }, pb.ErrorCode_TOO_LARGE},
		{"ttl above max", func(m *pb.Solicitation) { m.Ttl = 200 }, pb.ErrorCode_BAD_REQUEST},
		{"loop", func(m *pb.Solicitation) {
			m.Path = [][]byte{[]byte(target.h.ID()), self}
		}, pb.ErrorCode_BAD_REQUEST},
		{"garbage ids", func(m *pb.Solicitation) { m.Avoid = [][]byte{{0xff, 0x01}} }, pb.ErrorCode_BAD_REQUEST},
		{"over the size cap", func(m *pb.Solicitation) { m.Request.SeriesId = string(make([]byte, protocols.MaxSolicitMsg)) }, pb.ErrorCode_TOO_LARGE},
	} {
		m := good()
		tc.edit(m)
		_, err := send(t, c.client, target.h.ID(), m)
		if tc.name == "over the size cap" {
			// Our own writer refuses to send it; send the frame raw.
			err = sendRaw(t, c.client, target.h.ID(), m)
		}
		if !errors.Is(err, protocols.Code(tc.code)) {
			t.Errorf("%s: %v, want %s", tc.name, err, protocols.CodeName(tc.code))
		}
	}
	if _, err := send(t, c.client, target.h.ID(), good()); err != nil {
		t.Errorf("good solicitation after bad ones: %v", err)
	}
	st := target.svc.Stats()
	if st.Rejected["too large"] != 3 || st.Rejected["bad request"] != 3 {
		t.Errorf("rejections counted %v, want 3 too large and 3 bad request", st.Rejected)
	}
	// A flood from one peer: its bucket (12, refilling hourly) runs dry;
	// 7 were spent above.
	limited := 0
	for range 20 {
		if _, err := send(t, c.client, target.h.ID(), good()); errors.Is(err, protocols.Code(pb.ErrorCode_RATE_LIMITED)) {
			limited++
		}
	}
	if limited != 15 {
		t.Errorf("%d of 20 rate limited, want 15", limited)
	}
	if got := target.svc.Stats().Rejected["rate limited"]; got != 15 {
		t.Errorf("rate limits counted %d", got)
	}
	// The node keeps serving others.
	other, _ := realHost(t)
	other.Peerstore().AddAddrs(target.h.ID(), target.h.Addrs(), time.Hour)
	m := overlay.NewSolicitation(other.ID(), nil, &pb.BidRequest{SeriesId: "s", JobCount: 1, Executor: "wasm"}, 4)
	if p, err := send(t, other, target.h.ID(), m); err != nil || len(p.Bids) == 0 {
		t.Errorf("another client refused: %v", err)
	}
}

// sendRaw writes m without the writer's cap.
func sendRaw(t *testing.T, h host.Host, w peer.ID, m *pb.Solicitation) error {
	t.Helper()
	s, err := h.NewStream(context.Background(), w, protocols.Solicit)
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	// The peer answers after the length prefix, without reading the rest:
	// write concurrently.
	go func() {
		_ = protocols.NewWriter(s, 4*protocols.MaxSolicitMsg).Write(m)
		_ = s.CloseWrite()
	}()
	resp := &pb.Proffer{}
	if err := protocols.NewReader(s, protocols.MaxSolicitMsg).Read(resp); err != nil {
		return err
	}
	return protocols.FromPB(resp.Error)
}

// TestForgedBidInAggregate: a dishonest neighbour changes another worker's
// price inside its aggregate; the honest forwarder drops and counts it, and
// so does the client when the dishonest worker is its entry.
func TestForgedBidInAggregate(t *testing.T) {
	c := newCluster(t, 1, 1)
	honest := c.workers[0]
	liar, _ := realHost(t)
	victimKey, _, _ := crypto.GenerateEd25519Key(nil)
	victim, _ := peer.IDFromPrivateKey(victimKey)
	liar.SetStreamHandler(protocols.Solicit, func(s network.Stream) {
		_ = protocols.Serve(s, overlay.SolicitExchange(hop, base), &pb.Solicitation{}, func(m *pb.Solicitation) *pb.Proffer {
			client, _ := peer.IDFromBytes(m.Client)
			sb, _ := protocols.SignBid(victimKey, &pb.Bid{SeriesId: m.Request.SeriesId, Worker: []byte(victim), Client: []byte(client),
				PricePerJob: 100, MaxJobs: 1})
			var b pb.Bid
			_ = protoUnmarshal(sb.Bid, &b)
			b.PricePerJob = 1 // undercut, keeping the victim's signature
			sb.Bid = protoMarshal(&b)
			return &pb.Proffer{Bids: []*pb.SignedBid{sb}, Reached: 1}
		}, func(err error) *pb.Proffer { return &pb.Proffer{Error: protocols.ToPB(err)} })
	})
	liar.SetStreamHandler(protocols.Overlay, func(s network.Stream) {
		_ = protocols.Serve(s, protocols.Exchange{Max: protocols.MaxOverlayMsg, Timeout: time.Second}, &pb.Link{},
			func(*pb.Link) *pb.LinkAck { return &pb.LinkAck{} }, func(error) *pb.LinkAck { return &pb.LinkAck{} })
	})
	c.sampler.all = append(c.sampler.all, peer.AddrInfo{ID: liar.ID(), Addrs: liar.Addrs()})
	honest.svc.Rebuild(context.Background())
	if !slices.Contains(honest.svc.Neighbours(), liar.ID()) {
		t.Fatal("the liar is not a neighbour")
	}
	req := &pb.BidRequest{SeriesId: "s", JobCount: 1, Executor: "wasm"}
	p, forged, err := overlay.Flood(context.Background(), c.client, []peer.ID{honest.h.ID()},
		overlay.NewSolicitation(c.client.ID(), nil, req, 4), hop, base)
	if err != nil || forged != 0 || len(p.Bids) != 1 {
		t.Fatalf("through the honest worker: %v, %d forged, %d bids (want only its own)", err, forged, len(p.Bids))
	}
	if got := honest.svc.Stats().ForgedBids; got != 1 {
		t.Errorf("honest worker counted %d forged bids", got)
	}
	c.client.Peerstore().AddAddrs(liar.ID(), liar.Addrs(), time.Hour)
	p, forged, err = overlay.Flood(context.Background(), c.client, []peer.ID{liar.ID()},
		overlay.NewSolicitation(c.client.ID(), nil, req, 4), hop, base)
	if err != nil || forged != 1 || len(p.Bids) != 0 {
		t.Errorf("the liar as entry: %v, %d forged, %d bids", err, forged, len(p.Bids))
	}
}

// TestForgedDeclineInAggregate: a dishonest neighbour invents a decline for
// another worker, changes the reason of a real one and passes on a genuine
// one; the honest forwarder keeps only the genuine decline, whose reason
// the client can verify against the worker that made it.
func TestForgedDeclineInAggregate(t *testing.T) {
	c := newCluster(t, 1, 1)
	honest := c.workers[0]
	liar, _ := realHost(t)
	victimKey, _, _ := crypto.GenerateEd25519Key(nil)
	victim, _ := peer.IDFromPrivateKey(victimKey)
	otherKey, _, _ := crypto.GenerateEd25519Key(nil)
	other, _ := peer.IDFromPrivateKey(otherKey)
	liar.SetStreamHandler(protocols.Solicit, func(s network.Stream) {
		_ = protocols.Serve(s, overlay.SolicitExchange(hop, base), &pb.Solicitation{}, func(m *pb.Solicitation) *pb.Proffer {
			client, _ := peer.IDFromBytes(m.Client)
			genuine, _ := protocols.SignDecline(otherKey, client, m.Request.SeriesId, m.Token, protocols.Errorf(pb.ErrorCode_QUEUE_FULL, "busy"))
			changed, _ := protocols.SignDecline(victimKey, client, m.Request.SeriesId, m.Token, protocols.Errorf(pb.ErrorCode_QUEUE_FULL, "busy"))
			var d pb.Decline
			_ = protoUnmarshal(changed.Decline, &d)
			d.Error.Code = pb.ErrorCode_PRICE_BELOW_FLOOR // "too cheap for me": keeps the victim's signature
			changed.Decline = protoMarshal(&d)
			return &pb.Proffer{Reached: 1, SignedDeclines: []*pb.SignedDecline{changed, genuine},
				Declines: []*pb.ProfferDecline{{Worker: []byte(victim), Error: &pb.Error{Code: pb.ErrorCode_CLIENT_REFUSED}}}}
		}, func(err error) *pb.Proffer { return &pb.Proffer{Error: protocols.ToPB(err)} })
	})
	liar.SetStreamHandler(protocols.Overlay, func(s network.Stream) {
		_ = protocols.Serve(s, protocols.Exchange{Max: protocols.MaxOverlayMsg, Timeout: time.Second}, &pb.Link{},
			func(*pb.Link) *pb.LinkAck { return &pb.LinkAck{} }, func(error) *pb.LinkAck { return &pb.LinkAck{} })
	})
	c.sampler.all = append(c.sampler.all, peer.AddrInfo{ID: liar.ID(), Addrs: liar.Addrs()})
	honest.svc.Rebuild(context.Background())
	if !slices.Contains(honest.svc.Neighbours(), liar.ID()) {
		t.Fatal("the liar is not a neighbour")
	}
	req := &pb.BidRequest{SeriesId: "s", JobCount: 1, Executor: "wasm"}
	m := overlay.NewSolicitation(c.client.ID(), nil, req, 4)
	p, forged, err := overlay.Flood(context.Background(), c.client, []peer.ID{honest.h.ID()}, m, hop, base)
	if err != nil || forged != 0 {
		t.Fatalf("through the honest worker: %v, %d forged", err, forged)
	}
	if got := honest.svc.Stats().ForgedBids; got != 1 {
		t.Errorf("honest worker counted %d forged bids and declines, want 1 (the changed reason)", got)
	}
	if len(p.SignedDeclines) != 1 || len(p.Declines) != 0 {
		t.Fatalf("%d signed and %d unsigned declines, want only the genuine one", len(p.SignedDeclines), len(p.Declines))
	}
	d, id, err := protocols.VerifyDecline(p.SignedDeclines[0])
	if err != nil || id != other || d.Error.Code != pb.ErrorCode_QUEUE_FULL {
		t.Errorf("decline by %s (%v): %v", id, err, d.GetError())
	}
}

// TestProbeConnectionsClosed: a rebuild probes more peers than it keeps;
// on real hosts, the connections its probes opened to peers it did not
// keep (and that did not choose it) are closed, so a worker stays
// connected to its neighbours only. A connection that was open before the
// probe (another part of the node uses it) stays open.
func TestProbeConnectionsClosed(t *testing.T) {
	const n, degree = 12, 2
	c := newCluster(t, n, degree) // one rebuild each: every worker probed 8 of 11
	other := c.workers[1].h
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A connection opened by someone else: w0 must not close it even if it
	// probes w1 and does not keep it.
	w0 := c.workers[0]
	if err := w0.h.Connect(ctx, peer.AddrInfo{ID: other.ID(), Addrs: other.Addrs()}); err != nil {
		t.Fatal(err)
	}
	w0.svc.Rebuild(ctx)
	var closed int64
	for _, w := range c.workers {
		closed += w.svc.Stats().Closed
	}
	// The end that closes is the one that dialled; the other end notices
	// the close a moment later: poll until every worker's peers are its
	// neighbours.
	var strays []string
	waitFor(t, 10*time.Second, "probe connections closed", func() bool {
		strays = strays[:0]
		for _, w := range c.workers {
			neighbours := w.svc.Neighbours()
			for _, p := range w.h.Network().Peers() {
				if !slices.Contains(neighbours, p) && !(w == w0 && p == other.ID()) && !(w.h.ID() == other.ID() && p == w0.h.ID()) {
					strays = append(strays, fmt.Sprintf("%s-%s", w.h.ID(), p))
				}
			}
		}
		return len(strays) == 0
	})
	if closed == 0 {
		t.Error("no probe connection was closed")
	}
	if w0.h.Network().Connectedness(other.ID()) != network.Connected {
		t.Error("w0 closed a connection it did not open")
	}
}
