package worker

import (
	"crypto/sha256"
	"slices"
	"time"
)

// MeasureCapacity runs a fixed CPU and memory benchmark and returns its run
// time in seconds: the worker's capacity in "wonks" (WOrker Node Kapability,
// as the original called it). Lower is faster. It takes tens of
// milliseconds, so a worker measures at start and whenever load drifts.
func MeasureCapacity() float64 {
	start := time.Now()
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = byte(i * 31)
	}
	sum := sha256.Sum256(buf)
	xs := make([]uint32, 1<<17)
	seed := uint32(sum[0]) | 1
	for i := range xs {
		seed ^= seed << 13
		seed ^= seed >> 17
		seed ^= seed << 5
		xs[i] = seed
	}
	slices.Sort(xs)
	return time.Since(start).Seconds()
}
