// Package loggen writes realistic p2pnode event logs for the visualiser's
// tests and screenshots: a small demo network (1 authority, 5 workers,
// 1 client running a series) and a large random one for scale tests.
// Logs are written through package events, so they have the real format.
package loggen

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/p2pjobs/p2pnode/node/events"
)

// Epoch is when generated logs start.
var Epoch = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// Protocol IDs as the node uses them.
const (
	ProtoRegister = "/p2pjobs/register/1.0.0"
	ProtoDiscover = "/p2pjobs/discover/1.0.0"
	ProtoBid      = "/p2pjobs/bid/1.1.0"
	ProtoJob      = "/p2pjobs/job/1.0.0"
	ProtoLedger   = "/p2pjobs/ledger/1.0.0"
)

// PeerID returns a deterministic string shaped like a libp2p Ed25519 peer ID.
func PeerID(r *rand.Rand) string {
	const b58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	b := []byte("12D3KooW")
	for len(b) < 52 {
		b = append(b, b58[r.IntN(len(b58))])
	}
	return string(b)
}

// clock is the fake time shared by every log of one generation.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// node is one generated node and its log.
type node struct {
	ID, Role, Path string
	log            *events.Log
}

type gen struct {
	dir   string
	clk   *clock
	nodes []*node
}

func (g *gen) add(id, role string, n int) (*node, error) {
	p := filepath.Join(g.dir, fmt.Sprintf("%s-%d.jsonl", role, n))
	f, err := os.Create(p)
	if err != nil {
		return nil, err
	}
	nd := &node{ID: id, Role: role, Path: p, log: events.New(f, id, role, events.WithClock(g.clk.Now))}
	g.nodes = append(g.nodes, nd)
	return nd, nil
}

func (g *gen) at(ms int) { g.clk.now = Epoch.Add(time.Duration(ms) * time.Millisecond) }

func (g *gen) close() error {
	var first error
	for _, n := range g.nodes {
		if err := n.log.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Demo describes the logs Demo wrote.
type Demo struct {
	Dir       string
	Authority string
	Workers   []string // 5
	Client    string
	Files     map[string]string // peer ID -> log path
	// Times (after Epoch) of milestones tests step to.
	AllUp     time.Duration // every node started and registered
	Awarded   time.Duration // bids in, jobs awarded
	End       time.Duration // last event
	Errors    int           // error events: one "error", a job_failed on each side
	Transfers int           // ledger blocks with a counterparty
}

// WriteDemo writes a demo network's logs into dir: the authority starts,
// five workers join at staggered moments and register, the client joins,
// solicits bids (one worker declines), awards jobs, which run (one fails),
// and pays for them. Worker 5 is reached through a relay. There is one
// error event.
func WriteDemo(dir string) (*Demo, error) {
	r := rand.New(rand.NewPCG(1, 2))
	g := &gen{dir: dir, clk: &clock{}}
	g.at(0)
	d := &Demo{Dir: dir, Files: map[string]string{}}
	a, err := g.add(PeerID(r), "authority", 1)
	if err != nil {
		return nil, err
	}
	var ws []*node
	for i := 1; i <= 5; i++ {
		w, err := g.add(PeerID(r), "worker", i)
		if err != nil {
			return nil, err
		}
		ws = append(ws, w)
	}
	c, err := g.add(PeerID(r), "client", 1)
	if err != nil {
		return nil, err
	}
	d.Authority, d.Client = a.ID, c.ID
	for _, n := range g.nodes {
		d.Files[n.ID] = n.Path
	}
	for _, w := range ws {
		d.Workers = append(d.Workers, w.ID)
	}

	started := func(n *node, ip string) {
		n.log.Emit(events.Event{Kind: events.Started, Attrs: map[string]any{
			"addrs":  []string{"/ip4/" + ip + "/tcp/4001", "/ip4/" + ip + "/udp/4001/quic-v1"},
			"listen": []string{"/ip4/0.0.0.0/tcp/4001"},
		}})
	}
	connect := func(from, to *node, conn string) {
		from.log.Emit(events.Event{Kind: events.Connected, Peer: to.ID, Conn: conn, Dir: "out"})
		to.log.Emit(events.Event{Kind: events.Connected, Peer: from.ID, Conn: conn, Dir: "in"})
	}
	msg := func(from, to *node, proto string, size int, errText string) {
		from.log.Emit(events.Event{Kind: events.MsgSent, Peer: to.ID, Proto: proto, Size: size})
		to.log.Emit(events.Event{Kind: events.MsgRecv, Peer: from.ID, Proto: proto, Size: size, Err: errText})
	}
	neighbours := func(n *node, ps ...*node) {
		ids := []string{}
		for _, p := range ps {
			ids = append(ids, p.ID)
		}
		n.log.Emit(events.Event{Kind: events.Neighbours, Attrs: map[string]any{"peers": ids}})
	}
	// Ledger blocks as package ledger names them: amounts are unsigned,
	// the kind says which way points move; delta is the change to the
	// node's own balance.
	balance, seq := map[*node]int{}, map[*node]int{}
	ledger := func(n, cp *node, kind string, amount, delta int) {
		balance[n] += delta
		seq[n]++
		attrs := map[string]any{"seq": seq[n], "kind": kind, "amount": amount, "balance": balance[n]}
		if cp != nil {
			attrs["counterparty"] = cp.ID
			d.Transfers++
		}
		n.log.Emit(events.Event{Kind: events.LedgerBlock, Attrs: attrs})
	}

	started(a, "10.0.0.1")
	neighbours(a)
	ledger(a, nil, "mint", 10000, 10000)
	for i, w := range ws {
		g.at(400 + 450*i)
		started(w, fmt.Sprintf("10.0.1.%d", i+1))
		g.at(420 + 450*i)
		connect(w, a, "direct")
		g.at(440 + 450*i)
		msg(w, a, ProtoRegister, 180, "")
		w.log.Emit(events.Event{Kind: events.Registered, Peer: a.ID})
		a.log.Emit(events.Event{Kind: events.Registered, Peer: w.ID})
		msg(a, w, ProtoRegister, 96, "")
		g.at(470 + 450*i)
		// The overlay: every worker neighbours the authority and the
		// worker that joined before it.
		if i == 0 {
			neighbours(w, a)
		} else {
			neighbours(w, a, ws[i-1])
			neighbours(ws[i-1], append([]*node{a}, nonNil(prev(ws, i-1), ws[i])...)...)
			connect(w, ws[i-1], "direct")
		}
		neighbours(a, ws[:i+1]...)
	}
	// Worker 5 is behind NAT: an error dialling it directly, then relayed.
	g.at(2600)
	ws[4].log.Emit(events.Event{Kind: events.Error, Peer: a.ID, Err: "hole punch failed: no good addresses"})

	g.at(2900)
	started(c, "192.168.7.20")
	g.at(2950)
	connect(c, a, "direct")
	ledger(a, c, "transfer_out", 1000, -1000)
	ledger(c, a, "transfer_in", 1000, 1000)
	neighbours(c, a)
	g.at(3000)
	msg(c, a, ProtoDiscover, 120, "")
	msg(a, c, ProtoDiscover, 1450, "")
	d.AllUp = 3000 * time.Millisecond

	g.at(3100)
	for i, w := range ws {
		conn := "direct"
		if i == 4 {
			conn = "relayed"
		}
		connect(c, w, conn)
	}
	g.at(3200)
	for i, w := range ws {
		g.at(3200 + 20*i)
		msg(c, w, ProtoBid, 240, "")
	}
	for i, w := range ws {
		g.at(3350 + 30*i)
		if i == 2 {
			w.log.Emit(events.Event{Kind: events.Decline, Peer: c.ID, Series: "s1", Err: "busy: 0 free slots"})
			msg(w, c, ProtoBid, 60, "")
			c.log.Emit(events.Event{Kind: events.Decline, Peer: w.ID, Series: "s1", Err: "busy: 0 free slots"})
			continue
		}
		price := uint64(8 + i)
		w.log.Emit(events.Event{Kind: events.BidMade, Peer: c.ID, Series: "s1", Price: price})
		msg(w, c, ProtoBid, 210, "")
		c.log.Emit(events.Event{Kind: events.BidMade, Peer: w.ID, Series: "s1", Price: price})
	}
	g.at(3600)
	winners := []*node{ws[0], ws[1], ws[3], ws[4]}
	for _, w := range winners {
		c.log.Emit(events.Event{Kind: events.Award, Peer: w.ID, Series: "s1", Attrs: map[string]any{"jobs": 2}})
		ledger(c, w, "escrow_lock", 20, -20)
	}
	d.Awarded = 3600 * time.Millisecond

	t := 3700
	job := 0
	for round := range 2 {
		for k, w := range winners {
			job++
			id := fmt.Sprintf("s1/%d", job)
			g.at(t + 40*k)
			msg(c, w, ProtoJob, 42000, "")
			w.log.Emit(events.Event{Kind: events.JobStarted, Peer: c.ID, Series: "s1", Job: id})
			c.log.Emit(events.Event{Kind: events.JobStarted, Peer: w.ID, Series: "s1", Job: id})
		}
		t += 900
		for k, w := range winners {
			id := fmt.Sprintf("s1/%d", round*len(winners)+k+1)
			g.at(t + 60*k)
			if round == 1 && k == 2 {
				w.log.Emit(events.Event{Kind: events.JobFailed, Peer: c.ID, Series: "s1", Job: id, Err: "exit status 1"})
				msg(w, c, ProtoJob, 300, "")
				c.log.Emit(events.Event{Kind: events.JobFailed, Peer: w.ID, Series: "s1", Job: id, Err: "exit status 1"})
				ledger(a, c, "escrow_refund", 10, 0)
				ledger(c, a, "transfer_in", 10, 10)
				continue
			}
			w.log.Emit(events.Event{Kind: events.JobFinished, Peer: c.ID, Series: "s1", Job: id, Attrs: map[string]any{"ms": 850, "exit": 0}})
			msg(w, c, ProtoJob, 5200, "")
			c.log.Emit(events.Event{Kind: events.JobFinished, Peer: w.ID, Series: "s1", Job: id, Attrs: map[string]any{"ms": 850, "exit": 0}})
			g.at(t + 60*k + 20)
			msg(a, w, ProtoLedger, 330, "")
			ledger(a, w, "escrow_release", 10, 0)
			ledger(w, a, "transfer_in", 10, 10)
		}
		t += 400
	}
	g.at(t)
	c.log.Emit(events.Event{Kind: events.SeriesDone, Series: "s1", Attrs: map[string]any{"done": 7, "failed": 1}})
	g.at(t + 300)
	ws[2].log.Emit(events.Event{Kind: events.Disconnected, Peer: a.ID, Conn: "direct"})
	a.log.Emit(events.Event{Kind: events.Disconnected, Peer: ws[2].ID, Conn: "direct"})
	ws[2].log.Emit(events.Event{Kind: events.Stopped})
	d.End = time.Duration(t+300) * time.Millisecond
	d.Errors = 3 // the hole-punch error, the failed job as the worker and the client saw it
	return d, g.close()
}

func prev(ws []*node, i int) *node {
	if i == 0 {
		return nil
	}
	return ws[i-1]
}

func nonNil(ns ...*node) []*node {
	var out []*node
	for _, n := range ns {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

// WriteScale writes logs of n nodes (1 authority per 40, a client per 10,
// the rest workers) with about total events spread over span, into dir.
func WriteScale(dir string, n, total int, span time.Duration, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 7))
	g := &gen{dir: dir, clk: &clock{}}
	g.at(0)
	for i := range n {
		role := "worker"
		switch {
		case i%40 == 0:
			role = "authority"
		case i%10 == 5:
			role = "client"
		}
		if _, err := g.add(PeerID(r), role, i); err != nil {
			return err
		}
	}
	protos := []string{ProtoRegister, ProtoDiscover, ProtoBid, ProtoJob, ProtoLedger}
	step := span / time.Duration(total)
	now := time.Duration(0)
	bal := make([]int, n)
	for i, nd := range g.nodes {
		g.clk.now = Epoch.Add(now)
		nd.log.Emit(events.Event{Kind: events.Started, Attrs: map[string]any{"addrs": []string{fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", i/65536, i/256%256, i%256)}}})
		now += step
	}
	for k := n; k < total; k++ {
		now += step
		g.clk.now = Epoch.Add(now)
		i := r.IntN(n)
		nd, peer := g.nodes[i], g.nodes[r.IntN(n)]
		switch x := r.IntN(100); {
		case x < 60:
			e := events.Event{Kind: events.MsgSent, Peer: peer.ID, Proto: protos[r.IntN(len(protos))], Size: 100 + r.IntN(5000)}
			if r.IntN(200) == 0 {
				e.Err = "stream reset"
			}
			nd.log.Emit(e)
		case x < 70:
			conn := "direct"
			if r.IntN(5) == 0 {
				conn = "relayed"
			}
			nd.log.Emit(events.Event{Kind: events.Connected, Peer: peer.ID, Conn: conn})
		case x < 75:
			nd.log.Emit(events.Event{Kind: events.Disconnected, Peer: peer.ID})
		case x < 80:
			ps := []string{}
			for range 3 + r.IntN(4) {
				ps = append(ps, g.nodes[r.IntN(n)].ID)
			}
			nd.log.Emit(events.Event{Kind: events.Neighbours, Attrs: map[string]any{"peers": ps}})
		case x < 88:
			amt := 1 + r.IntN(10)
			bal[i] -= amt
			nd.log.Emit(events.Event{Kind: events.LedgerBlock, Attrs: map[string]any{"kind": "transfer_out", "amount": amt, "counterparty": peer.ID, "balance": bal[i]}})
		case x < 94:
			nd.log.Emit(events.Event{Kind: events.JobStarted, Peer: peer.ID, Series: "s", Job: fmt.Sprint(k)})
		case x < 99:
			nd.log.Emit(events.Event{Kind: events.JobFinished, Peer: peer.ID, Series: "s", Job: fmt.Sprint(k)})
		default:
			nd.log.Emit(events.Event{Kind: events.Error, Err: "something failed"})
		}
	}
	return g.close()
}

// Append writes events to an existing log as a live node would (through
// events.Log, stamped at t after Epoch), and flushes them.
func Append(path, node, role string, t time.Duration, evs ...events.Event) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	at := Epoch.Add(t)
	l := events.New(f, node, role, events.WithClock(func() time.Time { return at }))
	for _, e := range evs {
		l.Emit(e)
	}
	return l.Close()
}
