package worker

import (
	"crypto/sha256"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"google.golang.org/protobuf/proto"
)

// Finished results are kept for a while so that a client that crashed
// and resumes its series collects them instead of running (and paying
// for) the jobs again: the same client sending the same job again (same
// series, job ID and content) gets the kept result and its original
// receipt, which the escrow of the first award pays once.
const (
	keptMax      = 1024
	keptMaxBytes = 64 << 10 // larger results are not kept: 64 MiB at most in all
	keptFor      = 30 * time.Minute
)

type keptKey struct {
	client peer.ID
	job    [32]byte // sha256 of the request without its seq, bid and price
}

type keptResults struct {
	lru *expirable.LRU[keptKey, *pb.JobResult]
}

func newKept() *keptResults {
	return &keptResults{lru: expirable.NewLRU[keptKey, *pb.JobResult](keptMax, nil, keptFor)}
}

// key names a job by what it runs, for client. Requests differing only in
// seq, bid or price are the same job.
func keyOf(client peer.ID, req *pb.JobRequest) (keptKey, bool) {
	r := proto.Clone(req).(*pb.JobRequest)
	r.Seq, r.BidId, r.Price = 0, nil, 0
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return keptKey{}, false
	}
	return keptKey{client: client, job: sha256.Sum256(b)}, true
}

func (k *keptResults) put(client peer.ID, req *pb.JobRequest, r *pb.JobResult) {
	if proto.Size(r) > keptMaxBytes || r.Receipt == nil {
		return
	}
	if key, ok := keyOf(client, req); ok {
		k.lru.Add(key, proto.Clone(r).(*pb.JobResult))
	}
}

// get returns a copy of the kept result of req for client, with req's seq.
func (k *keptResults) get(client peer.ID, req *pb.JobRequest) *pb.JobResult {
	key, ok := keyOf(client, req)
	if !ok {
		return nil
	}
	r, ok := k.lru.Get(key)
	if !ok {
		return nil
	}
	c := proto.Clone(r).(*pb.JobResult)
	c.Seq = req.Seq
	return c
}
