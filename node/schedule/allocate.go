// Package schedule chooses among workers' bids and drives the dispatch of a
// series' jobs. It is pure: no I/O, no goroutines, no clock; callers pass
// bids, events and time in and act on the decisions returned. The client
// (node/client) imports it; so does node/series to validate strategy names.
//
// Allocate spreads a series' jobs over bids by a named Strategy. A Scheduler
// then hands jobs to workers one at a time (own allocation first, then work
// stealing from a shared pool), takes back the jobs of failed or vanished
// workers and retries them elsewhere, and guarantees that every job ends
// exactly once, done or failed with a reason.
package schedule

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"
)

// Errors returned by Allocate and ParseStrategy.
var (
	ErrNoBids          = errors.New("schedule: no bids")
	ErrNoCapacity      = errors.New("schedule: no usable bid (all above the maximum price or offering no jobs)")
	ErrUnknownStrategy = errors.New("schedule: unknown strategy")
)

// Bid is one worker's offer for a series.
type Bid struct {
	Worker      string        // peer ID string
	PricePerJob uint64        // points
	MaxJobs     int           // most jobs it takes
	Slots       int           // concurrent jobs at the worker; < 1 counts as 1
	EstStart    time.Time     // when it can start; zero = as early as the earliest bid
	EstJob      time.Duration // per-job time; <= 0 = unknown, counted as the slowest known
	Reputation  float64       // 0..1; 0 (or out of range) = unknown, counted as 0.5
}

// Strategy names how Allocate spreads jobs.
type Strategy string

// Strategies.
const (
	Cheapest   Strategy = "cheapest"   // lowest price first, each bid filled to its MaxJobs
	Fastest    Strategy = "fastest"    // smallest estimated makespan
	Balanced   Strategy = "balanced"   // makespan and price, see Allocate
	Reputation Strategy = "reputation" // balanced plus a penalty for low reputation
)

// Strategies lists the valid strategies.
var Strategies = []Strategy{Cheapest, Fastest, Balanced, Reputation}

// ParseStrategy validates a strategy name.
func ParseStrategy(s string) (Strategy, error) {
	for _, st := range Strategies {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("%w %q (want cheapest, fastest, balanced or reputation)", ErrUnknownStrategy, s)
}

// worker is a usable bid with its running allocation.
type worker struct {
	Bid
	start time.Duration // EstStart relative to the earliest start
	job   time.Duration
	k     int     // jobs given so far
	fixed float64 // score terms that do not depend on k
}

// finish is the estimated finish time in nanoseconds after the earliest
// start if the worker got k jobs (float64: no overflow).
func (w *worker) finish(k int) float64 {
	rounds := (k + w.Slots - 1) / w.Slots
	return float64(w.start) + float64(rounds)*float64(w.job)
}

// Allocate spreads n jobs over bids and returns worker -> job count. The
// counts sum to min(n, total capacity of usable bids); no bid gets more than
// its MaxJobs; bids priced above maxPrice (0 = any) are never used. Only the
// first bid of each worker counts. The result is deterministic: ties go to
// the smaller Worker string.
//
// Strategies:
//   - cheapest: bids by ascending price, each filled to MaxJobs.
//   - fastest: jobs given one at a time to the worker whose finish time
//     EstStart + ceil(k/Slots)*EstJob, with k its jobs so far plus this one,
//     would be earliest (minimises the estimated makespan).
//   - balanced: one at a time to the lowest score
//     finish/T + price/P, where finish is measured from the earliest
//     EstStart, T is the makespan the fastest strategy reaches and P the
//     highest price among usable bids. One unit of price (the dearest bid)
//     weighs as much as the whole fastest makespan, so balanced never takes
//     more than about twice the fastest makespan, and a dearer worker gets
//     jobs only when it finishes them sooner by its price difference.
//   - reputation: balanced plus (1 - reputation), unknown reputation 0.5:
//     distrust costs like price.
//
// It returns ErrNoBids for no bids and ErrNoCapacity when no bid is usable.
func Allocate(bids []Bid, n int, maxPrice uint64, strat Strategy) (map[string]int, error) {
	if _, err := ParseStrategy(string(strat)); err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("schedule: negative job count %d", n)
	}
	if len(bids) == 0 {
		return nil, ErrNoBids
	}
	ws := usable(bids, maxPrice)
	if len(ws) == 0 {
		return nil, ErrNoCapacity
	}
	out := make(map[string]int, len(ws))
	if n == 0 {
		return out, nil
	}
	switch strat {
	case Cheapest:
		sort.SliceStable(ws, func(i, j int) bool {
			if ws[i].PricePerJob != ws[j].PricePerJob {
				return ws[i].PricePerJob < ws[j].PricePerJob
			}
			return ws[i].Worker < ws[j].Worker
		})
		left := n
		for _, w := range ws {
			if left == 0 {
				break
			}
			k := min(left, w.MaxJobs)
			out[w.Worker] = k
			left -= k
		}
		return out, nil
	case Fastest:
		greedy(ws, n, (*worker).finish)
	default:
		// Reference makespan from a fastest run.
		greedy(ws, n, (*worker).finish)
		var T float64
		var P uint64
		for _, w := range ws {
			T = max(T, w.finish(w.k))
			P = max(P, w.PricePerJob)
			w.k = 0
		}
		t := max(T, 1)
		p := float64(max(P, 1))
		for _, w := range ws {
			w.fixed = float64(w.PricePerJob) / p
			if strat == Reputation {
				r := w.Reputation
				if !(r > 0 && r <= 1) {
					r = 0.5
				}
				w.fixed += 1 - r
			}
		}
		greedy(ws, n, func(w *worker, k int) float64 { return w.finish(k)/t + w.fixed })
	}
	for _, w := range ws {
		if w.k > 0 {
			out[w.Worker] = w.k
		}
	}
	return out, nil
}

// usable filters and normalises bids.
func usable(bids []Bid, maxPrice uint64) []*worker {
	seen := make(map[string]bool, len(bids))
	var ws []*worker
	var earliest time.Time
	var slowest time.Duration
	for _, b := range bids {
		if b.Worker == "" || seen[b.Worker] {
			continue
		}
		seen[b.Worker] = true
		if b.MaxJobs <= 0 || maxPrice != 0 && b.PricePerJob > maxPrice {
			continue
		}
		if b.Slots < 1 {
			b.Slots = 1
		}
		if !b.EstStart.IsZero() && (earliest.IsZero() || b.EstStart.Before(earliest)) {
			earliest = b.EstStart
		}
		slowest = max(slowest, b.EstJob)
		ws = append(ws, &worker{Bid: b})
	}
	if slowest <= 0 {
		slowest = time.Second // nothing known: all equal
	}
	for _, w := range ws {
		if !w.EstStart.IsZero() {
			w.start = w.EstStart.Sub(earliest)
		}
		w.job = w.EstJob
		if w.job <= 0 {
			w.job = slowest
		}
	}
	return ws
}

// greedy gives n jobs one at a time to the worker with the lowest
// score(w, w.k+1), ties to the smaller Worker, until n or all capacity is
// used. Scores must not decrease as k grows. O(n log workers).
func greedy(ws []*worker, n int, score func(w *worker, k int) float64) {
	h := &workerHeap{score: score}
	for _, w := range ws {
		if w.k < w.MaxJobs {
			h.ws = append(h.ws, w)
		}
	}
	heap.Init(h)
	for given := 0; given < n && h.Len() > 0; given++ {
		w := h.ws[0]
		w.k++
		if w.k >= w.MaxJobs {
			heap.Pop(h)
		} else {
			heap.Fix(h, 0)
		}
	}
}

type workerHeap struct {
	ws    []*worker
	score func(w *worker, k int) float64
}

func (h *workerHeap) Len() int { return len(h.ws) }
func (h *workerHeap) Less(i, j int) bool {
	a, b := h.ws[i], h.ws[j]
	sa, sb := h.score(a, a.k+1), h.score(b, b.k+1)
	if sa != sb && !(math.IsNaN(sa) || math.IsNaN(sb)) {
		return sa < sb
	}
	return a.Worker < b.Worker
}
func (h *workerHeap) Swap(i, j int) { h.ws[i], h.ws[j] = h.ws[j], h.ws[i] }
func (h *workerHeap) Push(x any)    { h.ws = append(h.ws, x.(*worker)) }
func (h *workerHeap) Pop() any {
	w := h.ws[len(h.ws)-1]
	h.ws = h.ws[:len(h.ws)-1]
	return w
}
