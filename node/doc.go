// Package node assembles a p2pjobs node: a libp2p host, the private DHT and
// the role services (authority, worker, client) the configuration asks for.
// It also owns the node's data directory: identity key, config file, lock.
//
// Role services live in sub-packages and depend on host.Host and small
// interfaces, never on *Node; only cmd/p2pnode imports this package.
package node
