package node

import (
	"context"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/p2pjobs/p2pnode/protocols"
)

// The DHT is how clients find workers when no authority answers. That only
// works if, with every authority gone, some DHT servers remain that hold
// workers' provider records and that the client has in its routing table.
// Three choices make that so:
//
//   - Workers are DHT servers where they are reachable (dhtMode). Each
//     worker holds its own provider record (a provide stores it locally
//     first), so a lookup that reaches a worker finds it, whoever else
//     kept the record.
//   - Workers keep their records fresh (advertise): a first provide right
//     after start usually meets an empty routing table, so it is retried
//     within seconds, not after libp2p's two minutes; then re-provided
//     often enough that servers that joined since get the record too.
//   - A client's routing table holds the workers it has talked to
//     (identify adds every DHT server it connects to) and those the
//     authorities named during bootstrap; a client whose table is empty
//     seeds it from the DHT servers its peerstore knows (seedDHT).

// dhtProtocol is the private DHT's protocol ID.
var dhtProtocol = protocol.ID(protocols.DHTPrefix + "/kad/1.0.0")

// reprovideEvery is how often a worker re-provides its records.
const reprovideEvery = 30 * time.Minute

// dhtMode picks the DHT mode for cfg. Authorities are servers, and an
// explicit dht_mode wins. With "auto", a worker follows AutoNAT as libp2p
// does (server once verified public) — except in a private network: when
// every authority it bootstraps from has only private or loopback
// addresses (a LAN, a lab, the demo), AutoNAT can only ever say "private",
// yet every peer that reaches the authority reaches the worker as well, so
// the worker serves the DHT. Without that, a LAN's only DHT servers would
// be its authorities and the DHT fallback would die with them. Clients
// (without the worker role) stay DHT clients under "auto": they come and go.
func dhtMode(cfg *Config, auths []peer.AddrInfo) dht.ModeOpt {
	switch {
	case cfg.Has(RoleAuthority) || cfg.DHTMode == "server":
		return dht.ModeServer
	case cfg.DHTMode == "client":
		return dht.ModeClient
	case cfg.Has(RoleWorker) && privateNetwork(auths):
		return dht.ModeServer
	}
	return dht.ModeAuto
}

// privateNetwork says whether auths (at least one) have only non-public
// addresses. DNS names count as public.
func privateNetwork(auths []peer.AddrInfo) bool {
	if len(auths) == 0 {
		return false
	}
	for _, a := range auths {
		for _, addr := range a.Addrs {
			if manet.IsPublicAddr(addr) {
				return false
			}
		}
	}
	return true
}

// advertise keeps a provider record for ns on the DHT until the node
// closes: retried with a short backoff while it fails (an empty routing
// table at start), re-provided every reprovideEvery after it succeeds.
func (n *Node) advertise(ns string) {
	disc := drouting.NewRoutingDiscovery(n.DHT)
	backoff := time.Second
	for {
		wait := reprovideEvery
		if _, err := disc.Advertise(n.ctx, ns, discovery.TTL(reprovideEvery)); err != nil {
			if n.ctx.Err() != nil {
				return
			}
			n.logger.Debug("dht: advertise failed; retrying", "ns", ns, "in", backoff, "err", err)
			wait, backoff = backoff, min(2*backoff, time.Minute)
		} else {
			backoff = time.Second
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// seedDHT fills an empty routing table from the peers the node knows to be
// DHT servers (identify recorded their protocols: workers it talked to,
// peers met during earlier lookups). A dead one is dropped again by the
// first query that fails to reach it.
func (n *Node) seedDHT() {
	rt := n.DHT.RoutingTable()
	if rt.Size() > 0 {
		return
	}
	ps := n.Host.Peerstore()
	for _, p := range ps.PeersWithAddrs() {
		if p == n.Host.ID() {
			continue
		}
		if ok, err := ps.SupportsProtocols(p, dhtProtocol); err == nil && len(ok) > 0 {
			_, _ = rt.TryAddPeer(p, false, true)
		}
	}
}

// dhtFinder finds workers through DHT provider records.
type dhtFinder struct{ n *Node }

func (f dhtFinder) FindWorkers(ctx context.Context, executor string, limit int) ([]peer.AddrInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	f.n.seedDHT()
	disc := drouting.NewRoutingDiscovery(f.n.DHT)
	ch, err := disc.FindPeers(ctx, WorkerNamespace(executor))
	if err != nil {
		return nil, err
	}
	var out []peer.AddrInfo
	for ai := range ch {
		if ai.ID != f.n.Host.ID() {
			out = append(out, ai)
			if len(out) >= limit {
				break
			}
		}
	}
	return out, nil
}

// dhtHost is the host as the DHT sees it: the same host, whose connection
// manager turns the DHT's protections into plain tags. Kademlia protects
// the connections to every peer in its two widest buckets (up to 40
// peers), which the connection manager then may never trim: in a network
// of a hundred workers each worker held some 40 idle DHT connections, more
// than its overlay, its authorities and its clients together. As tags they
// still rank above untagged idle peers, but a trim can close them; the DHT
// dials again when a lookup needs a peer.
type dhtHost struct{ host.Host }

func (h dhtHost) ConnManager() connmgr.ConnManager { return dhtConnMgr{h.Host.ConnManager()} }

type dhtConnMgr struct{ connmgr.ConnManager }

// dhtProtectValue is the tag value that stands for a DHT protection: above
// the DHT's own tags for narrower buckets (5), below an authority's (100).
const dhtProtectValue = 10

func (m dhtConnMgr) Protect(id peer.ID, tag string) { m.TagPeer(id, tag, dhtProtectValue) }

func (m dhtConnMgr) Unprotect(id peer.ID, tag string) bool {
	m.UntagPeer(id, tag)
	return false
}
