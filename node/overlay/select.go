package overlay

import (
	"cmp"
	"hash/fnv"
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
// sorted by RTT. It is Rank(ms, "") cut to degree.
func Choose(ms []Measurement, degree int) []peer.ID {
	r := Rank(ms, "")
	return r[:min(degree, len(r))]
}

// rttBucket is the resolution at which round trips count as different:
// below it, the difference is noise (on one LAN, or one machine's loopback,
// every peer is "fastest" by some microseconds).
const rttBucket = time.Millisecond

// Rank orders the reachable peers of ms (once each) by round-trip time in
// whole rttBuckets, and peers in one bucket by a hash of chooser and peer:
// a tie goes a different way for every chooser, so that among equally
// near peers, choices spread uniformly instead of all falling on the
// lowest peer IDs (which made hubs). The order is deterministic for a
// given chooser.
func Rank(ms []Measurement, chooser peer.ID) []peer.ID {
	type ranked struct {
		id     peer.ID
		bucket time.Duration
		tie    uint64
	}
	ok := make([]ranked, 0, len(ms))
	seen := map[peer.ID]bool{}
	for _, m := range ms {
		if m.OK && !seen[m.ID] {
			seen[m.ID] = true
			h := fnv.New64a()
			h.Write([]byte(chooser))
			h.Write([]byte(m.ID))
			ok = append(ok, ranked{id: m.ID, bucket: m.RTT / rttBucket, tie: h.Sum64()})
		}
	}
	slices.SortFunc(ok, func(a, b ranked) int {
		if c := cmp.Compare(a.bucket, b.bucket); c != 0 {
			return c
		}
		if c := cmp.Compare(a.tie, b.tie); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	out := make([]peer.ID, len(ok))
	for i, r := range ok {
		out[i] = r.id
	}
	return out
}

// RandomSlot gives the last of the degree slots of ranked (in place) to a
// peer drawn at random from those ranked below the nearest degree-1: a
// latency-only overlay can split into clusters that never meet, since
// every rebuild ranks the same peers first; a link re-drawn at every
// rebuild joins them, and makes flooding reach further in fewer hops. With
// a degree below 2, or no peer below the slots, ranked is unchanged.
func RandomSlot(ranked []peer.ID, degree int, rng *rand.Rand) {
	if degree < 2 || len(ranked) <= degree {
		return
	}
	i := degree - 1 + rng.IntN(len(ranked)-degree+1)
	ranked[degree-1], ranked[i] = ranked[i], ranked[degree-1]
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
