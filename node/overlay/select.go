package overlay

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Formation defaults, as in the original: 4 neighbours out of up to 8
// probed candidates drawn from the current neighbours and up to 40 sampled
// workers; rebuilt every 10 minutes and 5 s after a neighbour drops.
const (
	DefaultDegree    = 4
	DefaultSample    = 40
	DefaultProbes    = 8
	DefaultRebuild   = 10 * time.Minute
	DefaultDropDelay = 5 * time.Second
)

// PickProbes chooses the peers to measure in one rebuild: the current
// neighbours first, then peers from sample in random order, up to max in
// all, never self and never twice.
func PickProbes(self peer.ID, current, sample []peer.ID, max int, rng *rand.Rand) []peer.ID {
	out := make([]peer.ID, 0, max)
	seen := map[peer.ID]bool{self: true}
	add := func(p peer.ID) {
		if len(out) < max && p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, p := range current {
		add(p)
	}
	perm := rng.Perm(len(sample))
	for _, i := range perm {
		add(sample[i])
	}
	return out
}

// Measurement is one probe's result. A failed probe (OK false) is never
// chosen.
type Measurement struct {
	ID  peer.ID
	RTT time.Duration
	OK  bool
}

// Choose keeps the degree reachable peers with the lowest round-trip time,
// ties broken by peer ID so the choice is deterministic. The result is
// sorted by RTT.
func Choose(ms []Measurement, degree int) []peer.ID {
	ok := make([]Measurement, 0, len(ms))
	seen := map[peer.ID]bool{}
	for _, m := range ms {
		if m.OK && !seen[m.ID] {
			seen[m.ID] = true
			ok = append(ok, m)
		}
	}
	slices.SortFunc(ok, func(a, b Measurement) int {
		if c := cmp.Compare(a.RTT, b.RTT); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	out := make([]peer.ID, 0, min(degree, len(ok)))
	for _, m := range ok[:min(degree, len(ok))] {
		out = append(out, m.ID)
	}
	return out
}

// Diff says which peers next adds to and removes from prev.
func Diff(prev, next []peer.ID) (added, removed []peer.ID) {
	for _, p := range next {
		if !slices.Contains(prev, p) {
			added = append(added, p)
		}
	}
	for _, p := range prev {
		if !slices.Contains(next, p) {
			removed = append(removed, p)
		}
	}
	return added, removed
}
