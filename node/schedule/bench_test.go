package schedule

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkAllocate spreads a maximal series (1M jobs) over 200 bids.
func BenchmarkAllocate(b *testing.B) {
	bids := make([]Bid, 200)
	for i := range bids {
		bids[i] = Bid{Worker: fmt.Sprintf("w%03d", i), PricePerJob: uint64(1 + i%7), MaxJobs: 10000,
			Slots: 1 + i%4, EstStart: t0.Add(time.Duration(i%5) * time.Second), EstJob: time.Duration(1+i%3) * time.Second}
	}
	for _, st := range Strategies {
		b.Run(string(st), func(b *testing.B) {
			for b.Loop() {
				if _, err := Allocate(bids, 1_000_000, 0, st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
