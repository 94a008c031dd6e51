package worker

import (
	"math"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Quote is the worker's state as far as a bid decision needs it. Decide is
// a pure function of it and the request.
type Quote struct {
	Executors  []string
	MaxMemory  uint64
	MaxOutput  uint64 // 0: no ceiling (tests)
	MaxDisk    uint64 // 0: no ceiling (tests)
	Price      uint64 // base (and minimum) price per job, points
	Slots      int
	Queued     int // accepted, unfinished jobs
	MaxQueue   int
	EstJob     time.Duration // this worker's typical job time when idle; 0: unknown, estimated from the request
	MaxTimeout time.Duration
	Now        time.Time

	// Pricing policy: PricePerSecond points per estimated job-second (0:
	// the flat Price), and a surcharge of LoadSurcharge × Load on top
	// (0.5: +50 % when fully loaded).
	PricePerSecond float64
	LoadSurcharge  float64
	// Load is the current load, 0 idle, 1 every CPU busy (may exceed 1):
	// per-job estimates grow by the factor 1+Load, as the wonk does.
	Load float64
	// Client asked for the bid; Deny lists clients this worker refuses.
	Client peer.ID
	Deny   []peer.ID
}

// Offer is what the worker will bid.
type Offer struct {
	Price   uint64
	MaxJobs uint32
	Start   time.Time
	PerJob  time.Duration
}

const maxSeriesIDLen = 128

// PerJob estimates one job's run time now: the worker's typical job time
// (or, when unknown, a quarter of the job's timeout, or 100 ms) scaled by
// the load factor 1+Load, never above the job's timeout.
func (q Quote) PerJob(req *pb.BidRequest) time.Duration {
	timeout := time.Duration(req.GetResources().GetTimeoutMs()) * time.Millisecond
	base := q.EstJob
	if base <= 0 {
		base = 100 * time.Millisecond
		if timeout > 0 {
			base = timeout / 4
		}
	}
	est := time.Duration(float64(base) * (1 + max(q.Load, 0)))
	if timeout > 0 && est > timeout {
		est = timeout
	}
	return max(est, time.Millisecond)
}

// PriceFor is the price per job for a job of the given estimated length:
// the per-second price (at least the base price), plus the load surcharge,
// rounded up.
func (q Quote) PriceFor(perJob time.Duration) uint64 {
	p := math.Max(float64(q.Price), q.PricePerSecond*perJob.Seconds())
	p *= 1 + max(q.LoadSurcharge, 0)*min(max(q.Load, 0), 1)
	if p >= math.MaxUint32 {
		return math.MaxUint32
	}
	return uint64(math.Ceil(p - 1e-9))
}

// Decide answers a bid request with an offer, or a typed decline saying why.
func (q Quote) Decide(req *pb.BidRequest) (Offer, error) {
	switch {
	case req.SeriesId == "" || len(req.SeriesId) > maxSeriesIDLen:
		return Offer{}, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "series id of %d bytes (1 to %d)", len(req.SeriesId), maxSeriesIDLen)
	case req.JobCount == 0:
		return Offer{}, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "no jobs")
	case len(req.ModuleHash) != 0 && len(req.ModuleHash) != 32:
		return Offer{}, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "module hash of %d bytes, want 32", len(req.ModuleHash))
	case q.Client != "" && slices.Contains(q.Deny, q.Client):
		return Offer{}, protocols.Errorf(pb.ErrorCode_CLIENT_REFUSED, "this worker does not take work from %s", q.Client)
	case !slices.Contains(q.Executors, req.Executor):
		return Offer{}, protocols.Errorf(pb.ErrorCode_EXECUTOR_MISSING, "executor %q not offered (have %v)", req.Executor, q.Executors)
	case req.ModuleSize > protocols.MaxModuleSize:
		return Offer{}, protocols.Errorf(pb.ErrorCode_MODULE_INVALID, "module of %d bytes over the %d-byte limit", req.ModuleSize, protocols.MaxModuleSize)
	case req.GetResources().GetMemoryBytes() > q.MaxMemory:
		return Offer{}, protocols.Errorf(pb.ErrorCode_MEMORY_TOO_SMALL, "job wants %d MiB, this worker allows %d MiB",
			req.GetResources().GetMemoryBytes()>>20, q.MaxMemory>>20)
	case q.MaxOutput != 0 && req.GetResources().GetMaxOutputBytes() > q.MaxOutput:
		return Offer{}, protocols.Errorf(pb.ErrorCode_LIMIT_EXCEEDED, "job wants %d bytes of output, this worker allows %d",
			req.GetResources().GetMaxOutputBytes(), q.MaxOutput)
	case q.MaxDisk != 0 && req.GetResources().GetDiskBytes() > q.MaxDisk:
		return Offer{}, protocols.Errorf(pb.ErrorCode_LIMIT_EXCEEDED, "job wants %d bytes of disk, this worker allows %d",
			req.GetResources().GetDiskBytes(), q.MaxDisk)
	case time.Duration(req.GetResources().GetTimeoutMs())*time.Millisecond > q.MaxTimeout:
		return Offer{}, protocols.Errorf(pb.ErrorCode_DEADLINE_IMPOSSIBLE, "job timeout %v over this worker's %v",
			time.Duration(req.GetResources().GetTimeoutMs())*time.Millisecond, q.MaxTimeout)
	}
	perJob := q.PerJob(req)
	price := q.PriceFor(perJob)
	if req.MaxPrice != 0 && req.MaxPrice < price {
		return Offer{}, protocols.Errorf(pb.ErrorCode_PRICE_BELOW_FLOOR, "max price %d below this worker's %d per job", req.MaxPrice, price)
	}
	slots := max(q.Slots, 1)
	room := slots + q.MaxQueue - q.Queued
	if room <= 0 {
		return Offer{}, protocols.Errorf(pb.ErrorCode_QUEUE_FULL, "%d jobs queued, limit %d", q.Queued, slots+q.MaxQueue)
	}
	waves := (q.Queued + slots - 1) / slots // rounds of jobs ahead of ours
	start := q.Now.Add(time.Duration(waves) * perJob)
	if req.DeadlineUnixMs != 0 && start.Add(perJob).After(time.UnixMilli(req.DeadlineUnixMs)) {
		return Offer{}, protocols.Errorf(pb.ErrorCode_DEADLINE_IMPOSSIBLE, "earliest finish %s is after the deadline",
			start.Add(perJob).UTC().Format(time.RFC3339))
	}
	return Offer{Price: price, MaxJobs: uint32(min(int(req.JobCount), room)), Start: start, PerJob: perJob}, nil
}

// Finish is when the offer's first job would end.
func (o Offer) Finish() time.Time { return o.Start.Add(o.PerJob) }
