package worker

import (
	"slices"
	"time"

	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Quote is the worker's state as far as a bid decision needs it. Decide is
// a pure function of it and the request.
type Quote struct {
	Executors  []string
	MaxMemory  uint64
	Price      uint64
	Slots      int
	Queued     int // accepted, unfinished jobs
	MaxQueue   int
	EstJob     time.Duration
	MaxTimeout time.Duration
	Now        time.Time
}

// Offer is what the worker will bid.
type Offer struct {
	Price   uint64
	MaxJobs uint32
	Start   time.Time
	PerJob  time.Duration
}

const maxSeriesIDLen = 128

// Decide answers a bid request with an offer, or a typed decline saying why.
func (q Quote) Decide(req *pb.BidRequest) (Offer, error) {
	switch {
	case req.SeriesId == "" || len(req.SeriesId) > maxSeriesIDLen:
		return Offer{}, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "series id of %d bytes (1 to %d)", len(req.SeriesId), maxSeriesIDLen)
	case req.JobCount == 0:
		return Offer{}, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "no jobs")
	case len(req.ModuleHash) != 0 && len(req.ModuleHash) != 32:
		return Offer{}, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "module hash of %d bytes, want 32", len(req.ModuleHash))
	case !slices.Contains(q.Executors, req.Executor):
		return Offer{}, protocols.Errorf(pb.ErrorCode_EXECUTOR_MISSING, "executor %q not offered (have %v)", req.Executor, q.Executors)
	case req.ModuleSize > protocols.MaxModuleSize:
		return Offer{}, protocols.Errorf(pb.ErrorCode_MODULE_INVALID, "module of %d bytes over the %d-byte limit", req.ModuleSize, protocols.MaxModuleSize)
	case req.GetResources().GetMemoryBytes() > q.MaxMemory:
		return Offer{}, protocols.Errorf(pb.ErrorCode_MEMORY_TOO_SMALL, "job wants %d MiB, this worker allows %d MiB",
			req.GetResources().GetMemoryBytes()>>20, q.MaxMemory>>20)
	case time.Duration(req.GetResources().GetTimeoutMs())*time.Millisecond > q.MaxTimeout:
		return Offer{}, protocols.Errorf(pb.ErrorCode_DEADLINE_IMPOSSIBLE, "job timeout %v over this worker's %v",
			time.Duration(req.GetResources().GetTimeoutMs())*time.Millisecond, q.MaxTimeout)
	case req.MaxPrice != 0 && req.MaxPrice < q.Price:
		return Offer{}, protocols.Errorf(pb.ErrorCode_PRICE_BELOW_FLOOR, "max price %d below this worker's %d per job", req.MaxPrice, q.Price)
	}
	room := q.Slots + q.MaxQueue - q.Queued
	if room <= 0 {
		return Offer{}, protocols.Errorf(pb.ErrorCode_QUEUE_FULL, "%d jobs queued, limit %d", q.Queued, q.Slots+q.MaxQueue)
	}
	waves := (q.Queued + q.Slots - 1) / q.Slots // rounds of jobs ahead of ours
	start := q.Now.Add(time.Duration(waves) * q.EstJob)
	if req.DeadlineUnixMs != 0 && start.Add(q.EstJob).After(time.UnixMilli(req.DeadlineUnixMs)) {
		return Offer{}, protocols.Errorf(pb.ErrorCode_DEADLINE_IMPOSSIBLE, "earliest finish %s is after the deadline",
			start.Add(q.EstJob).UTC().Format(time.RFC3339))
	}
	return Offer{Price: q.Price, MaxJobs: uint32(min(int(req.JobCount), room)), Start: start, PerJob: q.EstJob}, nil
}
