package node

import ()

// Status is what `p2pnode status` shows about a running node.
type Status struct {
	PeerID      string       `json:"peer_id"`
	Roles       []string     `json:"roles"`
	Addrs       []string     `json:"addrs"`
	Authorities []string     `json:"authorities"`
	Peers       []PeerStatus `json:"peers"`
	Workers     int          `json:"registered_workers,omitempty"` // authority: live registrations
}

// PeerStatus is one connected peer.
type PeerStatus struct {
	ID   string `json:"id"`
	Conn string `json:"conn"` // direct | relayed
	Addr string `json:"addr"`
}

// Status reports the node's current state.
func (n *Node) Status() Status {
	st := Status{PeerID: n.Host.ID().String(), Roles: n.Cfg.Roles, Addrs: addrStrings(n.Addrs())}
	for _, a := range n.Authorities {
		st.Authorities = append(st.Authorities, a.ID.String())
	}
	for _, c := range n.Host.Network().Conns() {
		st.Peers = append(st.Peers, PeerStatus{ID: c.RemotePeer().String(), Conn: ConnKind(c), Addr: c.RemoteMultiaddr().String()})
	}
	if n.Authority != nil {
		st.Workers = n.Authority.Workers()
	}
	return st
}
