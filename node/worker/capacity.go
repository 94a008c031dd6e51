package worker

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
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

// Load is a sample of how busy the machine is.
type Load struct {
	PerCPU  float64 // 1-minute load average per CPU (0 idle, 1 every CPU busy)
	FreeMem uint64  // available memory in bytes; 0 unknown
}

// Drifted reports whether load or free memory moved by more than 10 %
// since the sample the wonk was measured at. Load is compared against at
// least 0.1 so an idle machine's jitter does not count.
func Drifted(at, now Load) bool {
	if math.Abs(now.PerCPU-at.PerCPU) > 0.1*math.Max(at.PerCPU, 1) {
		return true
	}
	if at.FreeMem > 0 && now.FreeMem > 0 {
		d := math.Abs(float64(now.FreeMem) - float64(at.FreeMem))
		return d > 0.1*float64(at.FreeMem)
	}
	return false
}

// ScaleWonk interpolates a wonk measured under load at to the load now:
// the benchmark shares the CPUs with the load, so its idle run time is
// measured/(1+at) and now it takes idle×(1+now).
func ScaleWonk(measured, at, now float64) float64 {
	return measured / (1 + max(at, 0)) * (1 + max(now, 0))
}

// Capacity keeps the worker's wonk current: re-measured when the load or
// free memory drifts by more than 10 %, scaled for the current load in
// between. Safe for concurrent use.
type Capacity struct {
	measure func() float64
	sample  func() (Load, error)

	minGap time.Duration    // least time between two measurements
	clock  func() time.Time // for minGap

	mu       sync.Mutex // guards the fields below
	wonk     float64    // as measured
	at       Load       // load when measured
	atTime   time.Time  // when measured
	measured int        // how many times
}

// remeasureGap is the least time between two runs of the benchmark. Each
// run costs ~10 ms of CPU and a 4 MiB buffer; on a busy shared machine the
// load drifts by 10 % between almost any two bid requests, and re-measuring
// at every bid made each bid round cost every worker a benchmark (a
// quarter of the workers' CPU in a 64-worker bench). In between, ScaleWonk
// follows the load.
const remeasureGap = time.Minute

// NewCapacity measures once with measure and samples load with sample.
func NewCapacity(measure func() float64, sample func() (Load, error)) *Capacity {
	c := &Capacity{measure: measure, sample: sample, minGap: remeasureGap, clock: time.Now}
	at, _ := sample()
	c.wonk, c.at, c.atTime, c.measured = measure(), at, c.clock(), 1
	return c
}

// FixedCapacity is a capacity that never changes (tests, --capacity).
func FixedCapacity(wonk float64) *Capacity {
	return &Capacity{measure: func() float64 { return wonk }, sample: func() (Load, error) { return Load{}, nil },
		wonk: wonk, measured: 1}
}

// Now returns the current wonk and load, re-measuring first when the load
// drifted; own (0..1, the worker's busy slots) raises the load when the
// machine's figure lags behind.
func (c *Capacity) Now(own float64) (wonk, load float64) {
	now, err := c.sample()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && Drifted(c.at, now) && (c.clock == nil || c.clock().Sub(c.atTime) >= c.minGap) {
		c.wonk, c.at = c.measure(), now
		if c.clock != nil {
			c.atTime = c.clock()
		}
		c.measured++
	}
	load = math.Max(now.PerCPU, own)
	return ScaleWonk(c.wonk, c.at.PerCPU, load), load
}

// Measurements counts benchmark runs so far.
func (c *Capacity) Measurements() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.measured
}

// SystemLoad reads /proc/loadavg and /proc/meminfo (Linux); elsewhere it
// reports an error and the wonk is never re-measured.
func SystemLoad() (Load, error) {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return Load{}, err
	}
	return parseLoad(raw, readFile("/proc/meminfo"), runtime.NumCPU())
}

func readFile(p string) []byte {
	b, _ := os.ReadFile(p)
	return b
}

func parseLoad(loadavg, meminfo []byte, cpus int) (Load, error) {
	f := bytes.Fields(loadavg)
	if len(f) == 0 {
		return Load{}, fmt.Errorf("worker: empty loadavg")
	}
	l1, err := strconv.ParseFloat(string(f[0]), 64)
	if err != nil {
		return Load{}, fmt.Errorf("worker: loadavg: %w", err)
	}
	out := Load{PerCPU: l1 / float64(max(cpus, 1))}
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		if kb, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemAvailable:")); ok {
			if fs := bytes.Fields(kb); len(fs) > 0 {
				if n, err := strconv.ParseUint(string(fs[0]), 10, 64); err == nil {
					out.FreeMem = n << 10
				}
			}
		}
	}
	return out, nil
}
