package node

import (
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/protocols"
)

// Status is what `p2pnode status` shows about a running node.
type Status struct {
	PeerID       string            `json:"peer_id"`
	Roles        []string          `json:"roles"`
	Reachability string            `json:"reachability"` // public | private | unknown (AutoNAT, or forced by config)
	Forced       bool              `json:"reachability_forced,omitempty"`
	Listen       []string          `json:"listen"`             // the sockets we listen on
	Addrs        []string          `json:"addrs"`              // what we advertise (with /p2p/<id>)
	Observed     []string          `json:"observed,omitempty"` // our address as peers see it (identify)
	Reachable    []string          `json:"reachable,omitempty"`
	Unreachable  []string          `json:"unreachable,omitempty"` // AutoNAT v2 verdicts per address
	RelayAddrs   []string          `json:"relay_addrs,omitempty"` // /p2p-circuit addresses (reservations held)
	Authorities  []AuthorityStatus `json:"authorities"`
	Peers        []PeerStatus      `json:"peers"`
	Workers      int               `json:"registered_workers,omitempty"` // authority: live registrations
	Relay        RelayStatus       `json:"relay_service"`                // the circuit relay v2 service we run for others
}

// AuthorityStatus is one authority the node knows.
type AuthorityStatus struct {
	ID         string    `json:"id"`
	Source     string    `json:"source"` // bootstrap | settings | identify
	Connected  string    `json:"connected"`
	Registered *bool     `json:"registered,omitempty"` // worker role only
	LastReg    time.Time `json:"last_registered,omitzero"`
	Relay      bool      `json:"relay"`              // we hold a relay reservation on it
	Observed   string    `json:"observed,omitempty"` // our address as this authority sees it
	Addrs      []string  `json:"addrs,omitempty"`
}

// PeerStatus is one connected peer.
type PeerStatus struct {
	ID        string `json:"id"`
	Conn      string `json:"conn"` // direct | relayed
	Addr      string `json:"addr"`
	Dir       string `json:"dir"` // in | out
	Authority bool   `json:"authority,omitempty"`
	Agent     string `json:"agent,omitempty"`
}

// natState is what the node hears from libp2p about its reachability and
// addresses.
type natState struct {
	mu           sync.Mutex // guards the fields below
	reachability network.Reachability
	reachable    []ma.Multiaddr
	unreachable  []ma.Multiaddr
	observed     map[peer.ID]ma.Multiaddr // our address as each connected peer last told us (identify)
}

// watchHost follows the host's events: reachability (AutoNAT v1, or
// forced), per-address reachability (AutoNAT v2), and identify, which
// tells us how peers see us and which peers are authorities (they serve the
// register protocol). An authority learned this way joins the book.
func (n *Node) watchHost() error {
	n.nat.observed = map[peer.ID]ma.Multiaddr{}
	switch reachabilityPolicy(&n.Cfg, interfaceAddrs()) {
	case "public":
		n.nat.reachability = network.ReachabilityPublic
	case "private":
		n.nat.reachability = network.ReachabilityPrivate
	}
	if n.Cfg.Has(RoleAuthority) && len(n.Cfg.Announce) > 0 && n.Cfg.NAT.Reachability == "" {
		n.nat.reachability = network.ReachabilityPublic
	}
	sub, err := n.Host.EventBus().Subscribe([]any{new(event.EvtLocalReachabilityChanged),
		new(event.EvtHostReachableAddrsChanged), new(event.EvtPeerIdentificationCompleted)}, eventbus.Name("p2pnode status"))
	if err != nil {
		return err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer sub.Close()
		for {
			select {
			case <-n.ctx.Done():
				return
			case e, ok := <-sub.Out():
				if !ok {
					return
				}
				n.onHostEvent(e)
			}
		}
	}()
	return nil
}

func (n *Node) onHostEvent(e any) {
	switch e := e.(type) {
	case event.EvtLocalReachabilityChanged:
		n.nat.mu.Lock()
		changed := n.nat.reachability != e.Reachability
		n.nat.reachability = e.Reachability
		n.nat.mu.Unlock()
		if changed {
			n.Log.Emit(events.Event{Kind: "reachability", Attrs: map[string]any{"reachability": reachString(e.Reachability)}})
		}
	case event.EvtHostReachableAddrsChanged:
		n.nat.mu.Lock()
		n.nat.reachable, n.nat.unreachable = e.Reachable, e.Unreachable
		n.nat.mu.Unlock()
	case event.EvtPeerIdentificationCompleted:
		// A relayed peer sees the relay's address; a peer already gone
		// (the event comes late) is not remembered (forgetObserved).
		if e.ObservedAddr != nil && !isCircuit(e.ObservedAddr) && n.Host.Network().Connectedness(e.Peer) == network.Connected {
			n.nat.mu.Lock()
			n.nat.observed[e.Peer] = e.ObservedAddr
			n.nat.mu.Unlock()
		}
		if slices.Contains(e.Protocols, protocols.Register) && e.Peer != n.Host.ID() {
			addrs := slices.DeleteFunc(slices.Clone(e.ListenAddrs), isCircuit)
			if n.book.add(peer.AddrInfo{ID: e.Peer, Addrs: addrs}, SourceIdentify) {
				n.Log.Emit(events.Event{Kind: "authority_learned", Peer: e.Peer.String(), Attrs: map[string]any{"source": SourceIdentify}})
			}
		}
	}
}

// forgetObserved drops what p told us of our address, once p is gone.
func (n *Node) forgetObserved(p peer.ID) {
	n.nat.mu.Lock()
	delete(n.nat.observed, p)
	n.nat.mu.Unlock()
}

func isCircuit(a ma.Multiaddr) bool { return strings.Contains(a.String(), "/p2p-circuit") }

func reachString(r network.Reachability) string {
	switch r {
	case network.ReachabilityPublic:
		return "public"
	case network.ReachabilityPrivate:
		return "private"
	}
	return "unknown"
}

// Reachability is the node's current reachability: public, private or
// unknown.
func (n *Node) Reachability() string {
	n.nat.mu.Lock()
	defer n.nat.mu.Unlock()
	return reachString(n.nat.reachability)
}

// KnownAuthorities lists every authority the node knows, bootstrap first.
func (n *Node) KnownAuthorities() []peer.AddrInfo { return n.book.list() }

// Status reports the node's current state.
func (n *Node) Status() Status {
	h := n.Host
	st := Status{PeerID: h.ID().String(), Roles: n.Cfg.Roles, Addrs: addrStrings(n.Addrs()), Reachability: n.Reachability(),
		Forced: reachabilityPolicy(&n.Cfg, interfaceAddrs()) != "auto"}
	if ifaces, err := h.Network().InterfaceListenAddresses(); err == nil {
		st.Listen = addrStrings(ifaces)
	} else {
		st.Listen = addrStrings(h.Network().ListenAddresses())
	}
	relayVia := map[peer.ID]bool{}
	for _, a := range h.Addrs() {
		if isCircuit(a) {
			full := a.Encapsulate(ma.StringCast("/p2p/" + h.ID().String()))
			st.RelayAddrs = append(st.RelayAddrs, full.String())
			if id, err := peer.Decode(relayPeer(a)); err == nil {
				relayVia[id] = true
			}
		}
	}
	n.nat.mu.Lock()
	st.Reachable, st.Unreachable = addrStrings(n.nat.reachable), addrStrings(n.nat.unreachable)
	obsSeen := map[string]bool{}
	obsBy := map[peer.ID]string{}
	for id, a := range n.nat.observed {
		obsBy[id] = a.String()
		if !obsSeen[a.String()] {
			obsSeen[a.String()] = true
			st.Observed = append(st.Observed, a.String())
		}
	}
	n.nat.mu.Unlock()
	sort.Strings(st.Observed)

	var regs map[peer.ID]time.Time
	if n.Worker != nil {
		regs = n.Worker.Registrations()
	}
	isAuth := map[peer.ID]bool{}
	for _, a := range n.book.list() {
		isAuth[a.ID] = true
		as := AuthorityStatus{ID: a.ID.String(), Source: n.book.source(a.ID), Connected: "no", Relay: relayVia[a.ID],
			Observed: obsBy[a.ID], Addrs: addrStrings(a.Addrs)}
		for _, c := range h.Network().ConnsToPeer(a.ID) {
			if k := ConnKind(c); as.Connected == "no" || k == "direct" {
				as.Connected = k
			}
		}
		if n.Worker != nil {
			t, ok := regs[a.ID]
			// A registration is current while it is younger than the
			// authority's TTL (pushed in settings).
			ttl := 90 * time.Second
			if s := n.Worker.Settings(); s != nil && s.TtlSeconds > 0 {
				ttl = time.Duration(s.TtlSeconds) * time.Second
			}
			yes := ok && time.Since(t) < ttl
			as.Registered = &yes
			as.LastReg = t
		}
		st.Authorities = append(st.Authorities, as)
	}
	for _, c := range h.Network().Conns() {
		dir := "out"
		if c.Stat().Direction == network.DirInbound {
			dir = "in"
		}
		ps := PeerStatus{ID: c.RemotePeer().String(), Conn: ConnKind(c), Addr: c.RemoteMultiaddr().String(), Dir: dir,
			Authority: isAuth[c.RemotePeer()]}
		if v, err := h.Peerstore().Get(c.RemotePeer(), "AgentVersion"); err == nil {
			ps.Agent, _ = v.(string)
		}
		st.Peers = append(st.Peers, ps)
	}
	sort.Slice(st.Peers, func(i, j int) bool {
		if st.Peers[i].ID != st.Peers[j].ID {
			return st.Peers[i].ID < st.Peers[j].ID
		}
		return st.Peers[i].Conn < st.Peers[j].Conn
	})
	if n.Authority != nil {
		st.Workers = n.Authority.Workers()
	}
	st.Relay = n.relay.status(&n.Cfg)
	return st
}

// relayPeer is the relay's peer ID in a circuit address
// (/ip4/…/p2p/<relay>/p2p-circuit).
func relayPeer(a ma.Multiaddr) string {
	var last string
	for _, c := range a {
		switch c.Protocol().Code {
		case ma.P_P2P:
			last = c.Value()
		case ma.P_CIRCUIT:
			return last
		}
	}
	return ""
}
