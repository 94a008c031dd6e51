package worker

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func idle() Quote {
	return Quote{Executors: []string{"wasm"}, MaxMemory: 512 << 20, Price: 2, Slots: 2, MaxQueue: 10,
		EstJob: time.Second, MaxTimeout: time.Hour, Now: t0}
}

func request() *pb.BidRequest {
	return &pb.BidRequest{SeriesId: "s", JobCount: 8, Executor: "wasm", Resources: &pb.Resources{MemoryBytes: 64 << 20, TimeoutMs: 60000}}
}

// TestBusierWorkerBidsLaterFinish: same machine, same request; one worker
// idle, one with a full queue and a loaded CPU.
func TestBusierWorkerBidsLaterFinish(t *testing.T) {
	quiet, busy := idle(), idle()
	busy.Queued, busy.Load = 6, 0.8
	a, err := quiet.Decide(request())
	if err != nil {
		t.Fatal(err)
	}
	b, err := busy.Decide(request())
	if err != nil {
		t.Fatal(err)
	}
	if !b.Finish().After(a.Finish()) || b.PerJob <= a.PerJob || !b.Start.After(a.Start) {
		t.Errorf("busy finish %v (start %v, per job %v) not after idle %v (start %v, per job %v)",
			b.Finish(), b.Start, b.PerJob, a.Finish(), a.Start, a.PerJob)
	}
	if a.PerJob != time.Second || b.PerJob != 1800*time.Millisecond {
		t.Errorf("per job %v and %v, want 1s and 1.8s", a.PerJob, b.PerJob)
	}
	if want := t0.Add(3 * 1800 * time.Millisecond); !b.Start.Equal(want) {
		t.Errorf("busy start %v, want three waves later %v", b.Start, want)
	}
}

func TestPerJobFromResources(t *testing.T) {
	q := idle()
	q.EstJob = 0 // never ran a job: a quarter of the job's timeout
	if got := q.PerJob(request()); got != 15*time.Second {
		t.Errorf("PerJob = %v, want 15s", got)
	}
	q.EstJob, q.Load = 50*time.Second, 1 // never above the timeout
	if got := q.PerJob(request()); got != time.Minute {
		t.Errorf("PerJob = %v, want the 1m timeout", got)
	}
}

func TestPricing(t *testing.T) {
	q := idle()
	for _, c := range []struct {
		perSecond, surcharge, load float64
		est                        time.Duration
		want                       uint64
	}{
		{0, 0, 0, time.Second, 2},            // flat price
		{0.5, 0, 0, 10 * time.Second, 5},     // 0.5 per job-second
		{0.5, 0, 0, time.Second, 2},          // the base price is the floor
		{0.5, 0.5, 1, 10 * time.Second, 8},   // +50 % at full load: 7.5 rounds up
		{0.5, 0.5, 0.5, 10 * time.Second, 7}, // +25 %: 6.25 rounds up
		{0, 1, 3, time.Second, 4},            // load above 1 counts as 1
		{1e12, 0, 0, time.Hour, 4294967295},  // capped
	} {
		q.PricePerSecond, q.LoadSurcharge, q.Load = c.perSecond, c.surcharge, c.load
		if got := q.PriceFor(c.est); got != c.want {
			t.Errorf("PriceFor(%v) with %v/s, +%v at load %v = %d, want %d", c.est, c.perSecond, c.surcharge, c.load, got, c.want)
		}
	}
}

func TestDeclineReasons(t *testing.T) {
	client := peer.ID("client-a")
	for _, c := range []struct {
		name string
		edit func(*Quote, *pb.BidRequest)
		code pb.ErrorCode
	}{
		{"executor missing", func(q *Quote, r *pb.BidRequest) { r.Executor = "exec" }, pb.ErrorCode_EXECUTOR_MISSING},
		{"memory too small", func(q *Quote, r *pb.BidRequest) { r.Resources.MemoryBytes = 1 << 30 }, pb.ErrorCode_MEMORY_TOO_SMALL},
		{"queue full", func(q *Quote, r *pb.BidRequest) { q.Queued = 12 }, pb.ErrorCode_QUEUE_FULL},
		{"price below floor", func(q *Quote, r *pb.BidRequest) { r.MaxPrice = 1 }, pb.ErrorCode_PRICE_BELOW_FLOOR},
		{"price below floor under load", func(q *Quote, r *pb.BidRequest) { r.MaxPrice = 2; q.LoadSurcharge, q.Load = 1, 1 }, pb.ErrorCode_PRICE_BELOW_FLOOR},
		{"deadline impossible", func(q *Quote, r *pb.BidRequest) { r.DeadlineUnixMs = t0.Add(500 * time.Millisecond).UnixMilli() }, pb.ErrorCode_DEADLINE_IMPOSSIBLE},
		{"timeout over limit", func(q *Quote, r *pb.BidRequest) { q.MaxTimeout = time.Second }, pb.ErrorCode_DEADLINE_IMPOSSIBLE},
		{"client refused", func(q *Quote, r *pb.BidRequest) { q.Client, q.Deny = client, []peer.ID{"x", client} }, pb.ErrorCode_CLIENT_REFUSED},
		{"no jobs", func(q *Quote, r *pb.BidRequest) { r.JobCount = 0 }, pb.ErrorCode_BAD_REQUEST},
		{"output over the ceiling", func(q *Quote, r *pb.BidRequest) { q.MaxOutput, r.Resources.MaxOutputBytes = 4<<20, 1<<40 }, pb.ErrorCode_LIMIT_EXCEEDED},
		{"disk over the ceiling", func(q *Quote, r *pb.BidRequest) { q.MaxDisk, r.Resources.DiskBytes = 64<<20, 64<<20+1 }, pb.ErrorCode_LIMIT_EXCEEDED},
	} {
		q, r := idle(), request()
		c.edit(&q, r)
		_, err := q.Decide(r)
		if !errors.Is(err, protocols.Code(c.code)) {
			t.Errorf("%s: %v, want %s", c.name, err, protocols.CodeName(c.code))
		}
	}
	q := idle()
	q.Client, q.Deny = client, []peer.ID{"someone-else"}
	if _, err := q.Decide(request()); err != nil {
		t.Errorf("client not on the deny list declined: %v", err)
	}
}
