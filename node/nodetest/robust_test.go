package nodetest_test

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/nodetest"
	"github.com/p2pjobs/p2pnode/node/schedule"
	"github.com/p2pjobs/p2pnode/node/worker"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

//go:embed testdata/trap.wasm
var trapModule []byte

// network starts an authority, n workers and a client, and waits until the
// workers are registered.
func network(t *testing.T, workers int, wopts ...node.Option) (auth *node.Node, ws []*node.Node, cl *node.Node) {
	t.Helper()
	auth = nodetest.Start(t, []string{node.RoleAuthority}, nil)
	a := []string{nodetest.Addr(auth)}
	for range workers {
		ws = append(ws, nodetest.Start(t, []string{node.RoleWorker}, a, wopts...))
	}
	cl = nodetest.Start(t, []string{node.RoleClient}, a)
	nodetest.WaitFor(t, 10*time.Second, "registrations", func() bool { return auth.Authority.Workers() == workers })
	return auth, ws, cl
}

func run(t *testing.T, cl *node.Node, s *client.Series, hooks client.Hooks) *client.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rep, err := cl.Client.Run(ctx, s, hooks)
	if err != nil {
		t.Fatalf("series: %v", err)
	}
	return rep
}

// TestHostileJobsFailAlone: a job that loops forever, one that allocates
// past its cap and one that crashes each fail with their own typed reason,
// while the rest of the series finishes, and the worker keeps serving.
func TestHostileJobsFailAlone(t *testing.T) {
	_, _, cl := network(t, 1)
	s := piSeries(6)
	s.Retries = 0
	s.Resources = &pb.Resources{MemoryBytes: 32 << 20, TimeoutMs: 3000}
	s.Jobs[1].Args = []string{"-loop"}
	s.Jobs[2].Args = []string{"-alloc", "200"}
	s.Jobs[3].Args = []string{"-trap"}
	rep := run(t, cl, s, client.Hooks{})
	for i, o := range rep.Outcomes {
		switch i {
		case 1:
			if !errors.Is(o.Err, protocols.Code(pb.ErrorCode_JOB_TIMEOUT)) {
				t.Errorf("looping job: %v, want JOB_TIMEOUT", o.Err)
			}
		case 2:
			if !errors.Is(o.Err, protocols.Code(pb.ErrorCode_JOB_MEMORY)) {
				t.Errorf("allocating job: %v, want JOB_MEMORY", o.Err)
			}
		case 3:
			if o.Err == nil || o.Result == nil || o.Result.ExitCode == 0 {
				t.Errorf("crashing job: err %v, want a non-zero exit", o.Err)
			}
		default:
			if o.Err != nil {
				t.Errorf("%s: %v", o.ID, o.Err)
			}
		}
	}
	// The worker is still fine.
	rep = run(t, cl, piSeries(2), client.Hooks{})
	if rep.Failed() != 0 {
		t.Fatalf("follow-up series: %d failed", rep.Failed())
	}
}

// TestTrapIsNotRetried: a trapping module fails with JOB_TRAP after one
// attempt: a deterministic failure is not sent around the network.
func TestTrapIsNotRetried(t *testing.T) {
	_, _, cl := network(t, 2)
	s := piSeries(3)
	s.Module = trapModule
	s.Retries = 3
	rep := run(t, cl, s, client.Hooks{})
	for _, o := range rep.Outcomes {
		if !errors.Is(o.Err, protocols.Code(pb.ErrorCode_JOB_TRAP)) || o.Attempts != 1 {
			t.Errorf("%s: %v after %d attempts, want JOB_TRAP after 1", o.ID, o.Err, o.Attempts)
		}
	}
}

// TestWorkerVanishes: a worker that disappears mid-series has its jobs
// re-dispatched; every job ends done.
func TestWorkerVanishes(t *testing.T) {
	_, ws, cl := network(t, 2)
	s := piSeries(30)
	s.Strategy = schedule.Fastest
	for i := range s.Jobs {
		s.Jobs[i].Args = []string{"-seed", fmt.Sprint(i), "-samples", "300000"}
	}
	victim := ws[0]
	var once sync.Once
	var killed sync.WaitGroup
	killed.Add(1)
	rep := run(t, cl, s, client.Hooks{OnOutcome: func(o client.Outcome) {
		if o.Worker == victim.Host.ID() {
			once.Do(func() { go func() { defer killed.Done(); _ = victim.Close() }() })
		}
	}})
	killed.Wait()
	if rep.Failed() != 0 {
		for _, o := range rep.Outcomes {
			if o.Err != nil {
				t.Logf("%s: %v", o.ID, o.Err)
			}
		}
		t.Fatalf("%d jobs failed after a worker vanished", rep.Failed())
	}
	by := map[peer.ID]int{}
	for _, o := range rep.Outcomes {
		by[o.Worker]++
	}
	if by[ws[1].Host.ID()] == 0 || by[victim.Host.ID()] == len(s.Jobs) {
		t.Fatalf("jobs not taken over by the surviving worker: %v", by)
	}
}

// TestAllWorkersVanish: the only worker dies mid-series. The client asks
// for a fresh round of discovery and bids, nobody answers, and the jobs
// left fail with a reason that says so (not a bare stream error); the
// jobs done before stay done.
func TestAllWorkersVanish(t *testing.T) {
	_, ws, cl := network(t, 1)
	s := piSeries(20)
	var once sync.Once
	var killed sync.WaitGroup
	killed.Add(1)
	rep := run(t, cl, s, client.Hooks{OnOutcome: func(o client.Outcome) {
		if o.Err == nil {
			once.Do(func() { go func() { defer killed.Done(); _ = ws[0].Close() }() })
		}
	}})
	killed.Wait()
	done, noWorker := 0, 0
	for _, o := range rep.Outcomes {
		switch {
		case o.Err == nil:
			done++
		case errors.Is(o.Err, schedule.ErrNoWorkers):
			noWorker++
		default:
			t.Errorf("%s: %v, want done or %v", o.ID, o.Err, schedule.ErrNoWorkers)
		}
	}
	if done == 0 || noWorker == 0 || done+noWorker != len(s.Jobs) {
		t.Fatalf("%d done, %d failed for want of workers, of %d", done, noWorker, len(s.Jobs))
	}
	t.Logf("%d done, %d failed: %v", done, noWorker, rep.Outcomes[len(s.Jobs)-1].Err)
}

// TestBidVersionNegotiation: a worker that speaks only bid/1.0.0 and a
// client that speaks only bid/1.0.0 both complete jobs against new peers;
// new against new chooses 1.1.0.
func TestBidVersionNegotiation(t *testing.T) {
	auth := nodetest.Start(t, []string{node.RoleAuthority}, nil)
	a := []string{nodetest.Addr(auth)}
	oldW := nodetest.Start(t, []string{node.RoleWorker}, a, node.WithWorkerOptions(worker.WithBidVersions(protocols.Bid10)))
	newC := nodetest.Start(t, []string{node.RoleClient}, a)
	oldC := nodetest.Start(t, []string{node.RoleClient}, a, node.WithClientOptions(client.WithBidVersions(protocols.Bid10)))
	nodetest.WaitFor(t, 10*time.Second, "registration", func() bool { return auth.Authority.Workers() == 1 })

	check := func(name string, cl *node.Node, want protocol.ID) {
		t.Helper()
		var got []client.Offer
		rep := run(t, cl, piSeries(2), client.Hooks{OnBids: func(_ []client.Candidate, o []client.Offer, _ []client.Decline) { got = o }})
		if rep.Failed() != 0 || len(got) == 0 {
			t.Fatalf("%s: %d failed, %d offers", name, rep.Failed(), len(got))
		}
		for _, o := range got {
			if o.Proto != want {
				t.Errorf("%s: negotiated %s, want %s", name, o.Proto, want)
			}
		}
	}
	check("new client, old worker", newC, protocols.Bid10)
	newW := nodetest.Start(t, []string{node.RoleWorker}, a)
	nodetest.WaitFor(t, 10*time.Second, "registration", func() bool { return auth.Authority.Workers() == 2 })
	_ = oldW.Close()
	nodetest.WaitFor(t, 10*time.Second, "old worker expiry", func() bool { return auth.Authority.Workers() == 1 })
	check("old client, new worker", oldC, protocols.Bid10)
	check("new client, new worker", newC, protocols.Bid11)
	_ = newW
}

// TestReregisterAfterAuthorityRestart: an authority that restarts forgets
// its registry; workers are back at their next heartbeat.
func TestReregisterAfterAuthorityRestart(t *testing.T) {
	key, _, _ := crypto.GenerateEd25519Key(nil)
	auth := nodetest.StartKeyed(t, key, func(c *node.Config) { c.Roles = []string{node.RoleAuthority} })
	addr := nodetest.Addr(auth)
	listen := auth.Host.Addrs()[0].String()
	nodetest.Start(t, []string{node.RoleWorker}, []string{addr})
	nodetest.WaitFor(t, 10*time.Second, "registration", func() bool { return auth.Authority.Workers() == 1 })
	if err := auth.Close(); err != nil {
		t.Fatal(err)
	}
	again := nodetest.StartKeyed(t, key, func(c *node.Config) {
		c.Roles = []string{node.RoleAuthority}
		c.Listen = []string{listen}
	})
	nodetest.WaitFor(t, 20*time.Second, "re-registration", func() bool { return again.Authority.Workers() == 1 })
}

// TestExpiredWorkerDropsOut: a worker that stops heartbeating leaves the
// registry after the TTL, and discovery no longer returns it.
func TestExpiredWorkerDropsOut(t *testing.T) {
	auth, ws, cl := network(t, 2)
	_ = ws[0].Close()
	nodetest.WaitFor(t, 10*time.Second, "expiry", func() bool { return auth.Authority.Workers() == 1 })
	cands, err := cl.Client.Discover(context.Background(), client.Filter{Executor: "wasm"})
	if err != nil || len(cands) != 1 || cands[0].ID != ws[1].Host.ID() {
		t.Fatalf("discover after expiry: %v, %v", cands, err)
	}
}

// TestDeclineReasons: every worker declines a series it cannot take, and
// the client's error carries each typed reason.
func TestDeclineReasons(t *testing.T) {
	_, _, cl := network(t, 2)
	s := piSeries(2)
	s.Resources = &pb.Resources{MemoryBytes: 64 << 30}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := cl.Client.Run(ctx, s, client.Hooks{})
	var nb *client.NoBidsError
	if !errors.As(err, &nb) || len(nb.Declines) != 2 {
		t.Fatalf("err %v, want NoBidsError with 2 declines", err)
	}
	for _, d := range nb.Declines {
		if !errors.Is(d.Err, protocols.Code(pb.ErrorCode_MEMORY_TOO_SMALL)) {
			t.Errorf("decline %v, want MEMORY_TOO_SMALL", d.Err)
		}
	}
	_ = wasm.Pi
}
