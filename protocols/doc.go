// Package protocols names the p2pjobs wire protocols (IDs, versions, size
// caps, stream deadlines) and provides the framing and typed errors every
// service uses to speak them. It depends on no node code; the role services
// (node/authority, node/worker, node/client) import it.
//
// Framing: each message is a protobuf preceded by its length as an unsigned
// varint (go-msgio/pbio). Every protocol has an explicit maximum message
// size; a peer that sends more gets ErrTooLarge and the stream is reset.
package protocols
