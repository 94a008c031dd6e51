// Package overlay keeps a worker's overlay of neighbour workers and floods
// solicitations through it (/p2pjobs/solicit/1.0.0), the way the original
// HUBzero job manager did ("P2P network formation", "solicit / proffer").
//
// Formation: every rebuild (default 10 min, pushed by the authority, and a
// few seconds after a neighbour drops) a worker probes its current
// neighbours plus a random sample of the workers its authorities know over
// /p2pjobs/overlay/1.0.0, keeps the lowest-latency ones (degree 4 by
// default) and tells them so (LINK_JOIN). Workers that chose us are inbound
// neighbours and count too, so a worker's degree may exceed the target.
//
// Flooding: a solicitation carries a bid request, the path so far, an avoid
// list, a TTL and a token. A worker checks it, appends itself, forwards it to
// every neighbour not on the avoid list while the path is shorter than the
// TTL (adding all its recipients to the avoid list it forwards), waits for
// the answers with a timeout that shrinks with depth, de-duplicates the bids
// by worker, adds its own and returns the aggregate (a Proffer). Every bid
// stays signed by the worker that made it; forgeries are dropped and counted.
//
// The decisions (which peers to probe and keep, what to forward, how long to
// wait, how to merge answers, whether a solicitation is acceptable) are pure
// functions in select.go and solicit.go; service.go is the libp2p adapter.
// Only package node and tests import this package.
package overlay
