package schedule

import (
	"errors"
	"maps"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestParseStrategy(t *testing.T) {
	for _, s := range []string{"cheapest", "fastest", "balanced", "reputation"} {
		if got, err := ParseStrategy(s); err != nil || string(got) != s {
			t.Errorf("ParseStrategy(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "Cheapest", "random"} {
		if _, err := ParseStrategy(s); !errors.Is(err, ErrUnknownStrategy) {
			t.Errorf("ParseStrategy(%q) err = %v", s, err)
		}
	}
}

func TestAllocate(t *testing.T) {
	sec := time.Second
	tests := []struct {
		name     string
		bids     []Bid
		n        int
		maxPrice uint64
		strat    Strategy
		want     map[string]int
		err      error
	}{
		{
			name:  "cheapest fills the cheap worker to MaxJobs, then the next",
			bids:  []Bid{{Worker: "b", PricePerJob: 5, MaxJobs: 10}, {Worker: "a", PricePerJob: 1, MaxJobs: 3}, {Worker: "c", PricePerJob: 9, MaxJobs: 10}},
			n:     8,
			strat: Cheapest,
			want:  map[string]int{"a": 3, "b": 5},
		},
		{
			name:  "cheapest ties by worker",
			bids:  []Bid{{Worker: "b", PricePerJob: 1, MaxJobs: 5}, {Worker: "a", PricePerJob: 1, MaxJobs: 5}},
			n:     6,
			strat: Cheapest,
			want:  map[string]int{"a": 5, "b": 1},
		},
		{
			name:     "a bid above maxPrice is never used",
			bids:     []Bid{{Worker: "a", PricePerJob: 11, MaxJobs: 100, EstJob: sec}, {Worker: "b", PricePerJob: 10, MaxJobs: 2, EstJob: 100 * sec}},
			n:        5,
			maxPrice: 10,
			strat:    Fastest,
			want:     map[string]int{"b": 2},
		},
		{
			name:     "all above maxPrice",
			bids:     []Bid{{Worker: "a", PricePerJob: 11, MaxJobs: 100}},
			n:        5,
			maxPrice: 10,
			strat:    Cheapest,
			err:      ErrNoCapacity,
		},
		{name: "no bids", n: 5, strat: Balanced, err: ErrNoBids},
		{name: "bad strategy", bids: []Bid{{Worker: "a", MaxJobs: 1}}, n: 1, strat: "x", err: ErrUnknownStrategy},
		{
			name:  "fastest spreads over slots",
			bids:  []Bid{{Worker: "a", MaxJobs: 100, Slots: 4, EstJob: sec}, {Worker: "b", MaxJobs: 100, Slots: 1, EstJob: sec}},
			n:     10,
			strat: Fastest,
			// a: 8 jobs in 2 rounds (2s), b: 2 jobs (2s).
			want: map[string]int{"a": 8, "b": 2},
		},
		{
			name:  "fastest accounts for start times",
			bids:  []Bid{{Worker: "a", MaxJobs: 100, Slots: 1, EstJob: sec, EstStart: t0.Add(5 * sec)}, {Worker: "b", MaxJobs: 100, Slots: 1, EstJob: sec, EstStart: t0}},
			n:     7,
			strat: Fastest,
			want:  map[string]int{"a": 1, "b": 6},
		},
		{
			name:  "capacity below n",
			bids:  []Bid{{Worker: "a", MaxJobs: 2, EstJob: sec}, {Worker: "b", MaxJobs: 3, EstJob: sec}},
			n:     100,
			strat: Balanced,
			want:  map[string]int{"a": 2, "b": 3},
		},
		{
			name: "balanced prefers the cheap worker unless the dear one is much faster",
			// Fastest makespan T: a (1s) and b (1s) share 10 jobs -> 5s.
			// Price term: a 0.1, b 1. b gets a job only when a's finish/T
			// exceeds b's by 0.9, i.e. a is 4.5s ahead.
			bids:  []Bid{{Worker: "a", PricePerJob: 1, MaxJobs: 100, EstJob: sec}, {Worker: "b", PricePerJob: 10, MaxJobs: 100, EstJob: sec}},
			n:     10,
			strat: Balanced,
			want:  map[string]int{"a": 7, "b": 3},
		},
		{
			name:  "balanced with equal prices is fastest",
			bids:  []Bid{{Worker: "a", PricePerJob: 3, MaxJobs: 100, EstJob: sec}, {Worker: "b", PricePerJob: 3, MaxJobs: 100, EstJob: 2 * sec}},
			n:     9,
			strat: Balanced,
			want:  map[string]int{"a": 6, "b": 3},
		},
		{
			name:  "reputation shifts work to the trusted worker",
			bids:  []Bid{{Worker: "a", PricePerJob: 1, MaxJobs: 100, EstJob: sec, Reputation: 1}, {Worker: "b", PricePerJob: 1, MaxJobs: 100, EstJob: sec}},
			n:     10,
			strat: Reputation,
			// b pays 0.5 penalty = 2.5s of the 5s fastest makespan: a runs
			// up to 2.5 jobs ahead.
			want: map[string]int{"a": 6, "b": 4},
		},
		{
			name:  "duplicate worker bids: first wins; zero MaxJobs skipped",
			bids:  []Bid{{Worker: "a", MaxJobs: 1}, {Worker: "a", MaxJobs: 50}, {Worker: "z", MaxJobs: 0}},
			n:     5,
			strat: Fastest,
			want:  map[string]int{"a": 1},
		},
		{
			name:  "zero jobs",
			bids:  []Bid{{Worker: "a", MaxJobs: 1}},
			n:     0,
			strat: Fastest,
			want:  map[string]int{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Allocate(tt.bids, tt.n, tt.maxPrice, tt.strat)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestAllocateInvariants checks sums, caps and price limits on random bids.
func TestAllocateInvariants(t *testing.T) {
	for seed := range 300 {
		r := newRand(uint64(seed))
		var bids []Bid
		for i := range r.intn(8) {
			bids = append(bids, Bid{
				Worker:      string(rune('a' + i)),
				PricePerJob: uint64(r.intn(20)),
				MaxJobs:     r.intn(30),
				Slots:       r.intn(5),
				EstStart:    t0.Add(time.Duration(r.intn(10)) * time.Second),
				EstJob:      time.Duration(r.intn(5)) * time.Second,
				Reputation:  float64(r.intn(11)) / 10,
			})
		}
		n := r.intn(100)
		maxPrice := uint64(r.intn(25))
		for _, st := range Strategies {
			got, err := Allocate(bids, n, maxPrice, st)
			if err != nil {
				if !errors.Is(err, ErrNoBids) && !errors.Is(err, ErrNoCapacity) {
					t.Fatalf("seed %d %s: %v", seed, st, err)
				}
				continue
			}
			capacity, sum := 0, 0
			byWorker := map[string]Bid{}
			for _, b := range bids {
				if b.MaxJobs > 0 && (maxPrice == 0 || b.PricePerJob <= maxPrice) {
					capacity += b.MaxJobs
					byWorker[b.Worker] = b
				}
			}
			for w, k := range got {
				b, ok := byWorker[w]
				if !ok || k <= 0 || k > b.MaxJobs {
					t.Fatalf("seed %d %s: %s got %d (bid %+v)", seed, st, w, k, b)
				}
				sum += k
			}
			if sum != min(n, capacity) {
				t.Fatalf("seed %d %s: sum %d, want %d", seed, st, sum, min(n, capacity))
			}
			again, _ := Allocate(bids, n, maxPrice, st)
			if !maps.Equal(got, again) {
				t.Fatalf("seed %d %s: not deterministic", seed, st)
			}
		}
	}
}

// rnd is a tiny deterministic PRNG (splitmix64) for property tests.
type rnd struct{ s uint64 }

func newRand(seed uint64) *rnd { return &rnd{s: seed*0x9e3779b97f4a7c15 + 1} }

func (r *rnd) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *rnd) intn(n int) int {
	if n <= 0 {
		return 0
	}
	return int(r.next() % uint64(n))
}
