package overlay_test

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/node/overlay"
)

// fakeClock drives the formation loop's timers by hand (overlay.WithClock).
type fakeClock struct {
	mu     sync.Mutex
	now    time.Duration // since the start
	timers []fakeTimer
}

type fakeTimer struct {
	at, d time.Duration
	ch    chan time.Time
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.timers = append(c.timers, fakeTimer{at: c.now + d, d: d, ch: ch})
	return ch
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now += d
	c.timers = slices.DeleteFunc(c.timers, func(t fakeTimer) bool {
		if t.at <= c.now {
			t.ch <- time.Now()
			return true
		}
		return false
	})
}

// Waiting reports whether a timer of length d is pending.
func (c *fakeClock) Waiting(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.timers, func(t fakeTimer) bool { return t.d == d })
}

// TestRebuildAfterDrop: with the formation loop on a fake clock, a worker
// whose neighbour drops rebuilds its overlay when the drop delay has
// passed, not before, and long before the periodic rebuild is due.
func TestRebuildAfterDrop(t *testing.T) {
	const dropDelay, every = 3 * time.Second, 10 * time.Minute
	sampler := &listSampler{rng: rand.New(rand.NewPCG(3, 4))}
	var ws []*simNode
	clocks := make([]*fakeClock, 5)
	for i := range clocks {
		clocks[i] = &fakeClock{}
		h, key := realHost(t)
		w := &simNode{h: h, bid: &signer{key: key, id: h.ID()}}
		w.svc = overlay.New(h, w.bid, nil, overlay.WithSampler(sampler), overlay.WithDegree(2), overlay.WithSeed(uint64(i+1)),
			overlay.WithRebuild(every, dropDelay), overlay.WithWait(hop, base), overlay.WithClock(time.Now, clocks[i].After))
		t.Cleanup(func() { _ = w.svc.Close() })
		ws = append(ws, w)
		sampler.all = append(sampler.all, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	}
	// The first round is due a second after start.
	for _, c := range clocks {
		waitFor(t, 5*time.Second, "the loop's first timer", func() bool { return c.Waiting(time.Second) })
		c.Advance(time.Second)
	}
	waitFor(t, 20*time.Second, "every worker with 2 chosen neighbours, waiting for the periodic rebuild", func() bool {
		for i, w := range ws {
			if len(w.svc.Outbound()) != 2 || !clocks[i].Waiting(every) {
				return false
			}
		}
		return true
	})

	w, clock := ws[0], clocks[0]
	victim := w.svc.Outbound()[0]
	for _, x := range ws[1:] {
		if x.h.ID() == victim {
			_ = x.svc.Close()
			_ = x.h.Close()
		}
	}
	waitFor(t, 10*time.Second, "the drop noticed and a rebuild scheduled after the drop delay", func() bool {
		return !slices.Contains(w.svc.Outbound(), victim) && clock.Waiting(dropDelay)
	})
	clock.Advance(dropDelay - time.Millisecond)
	if len(w.svc.Outbound()) != 1 || !clock.Waiting(dropDelay) {
		t.Fatalf("rebuilt before the drop delay: %d chosen neighbours", len(w.svc.Outbound()))
	}
	clock.Advance(time.Millisecond)
	waitFor(t, 15*time.Second, "the rebuild after the drop: 2 chosen neighbours again", func() bool {
		out := w.svc.Outbound()
		return len(out) == 2 && !slices.Contains(out, victim)
	})
}
