package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// The scale mode of bench (--scale 4x2,4,64,200): for each network size, an
// authority and N worker processes on loopback, left idle for --idle, then
// a throughput series. Per worker process it measures CPU time over the
// idle window (from /proc/PID/stat), resident memory at its end and at
// peak, and established TCP connections (its socket descriptors matched
// against /proc/net/tcp*). The authority's figures are reported apart.

// scaleSize is one network of the scale run: workers x slots.
type scaleSize struct{ Workers, Slots int }

func parseScale(s string, slots int) ([]scaleSize, error) {
	var out []scaleSize
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		w, sl, ok := strings.Cut(f, "x")
		n, err := strconv.Atoi(w)
		if err != nil || n < 1 {
			return nil, usagef("--scale: %q is not N or NxSLOTS", f)
		}
		size := scaleSize{Workers: n, Slots: slots}
		if ok {
			if size.Slots, err = strconv.Atoi(sl); err != nil || size.Slots < 1 {
				return nil, usagef("--scale: %q is not N or NxSLOTS", f)
			}
		}
		out = append(out, size)
	}
	return out, nil
}

// ScaleRow is one network size's figures.
type ScaleRow struct {
	Workers, Slots     int
	IdleCPUPerWorker   float64 // percent of one core, mean over workers
	IdleCPUMaxWorker   float64
	IdleCPUAuthority   float64
	RSSMiBMedian       float64 // at the end of the idle window
	RSSMiBMax          float64
	AnonMiBMedian      float64 // RssAnon: the worker's private memory, without the executable's shared pages
	PSSMiBMedian       float64 // proportional set size: shared pages divided among the processes sharing them
	PeakRSSMiBMedian   float64 // VmHWM, whole run
	ConnsMaxWorker     int
	ConnsMeanWorker    float64
	ConnsAuthority     int
	JobsPerSec         float64
	Jobs               int
	IdleSeconds        float64
	SettleSeconds      float64
	RegisteredAfterSec float64
}

type procSample struct {
	cpuTicks int64
	rssKiB   int64
	anonKiB  int64
	pssKiB   int64
	hwmKiB   int64
	conns    int
}

func runScale(ctx context.Context, g *globalOptions, o *benchOptions, cmd *cobra.Command, sizes []scaleSize) error {
	dir := o.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "p2pnode-scale-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	errOut := cmd.ErrOrStderr()
	var rows []ScaleRow
	for i, sz := range sizes {
		fmt.Fprintf(errOut, "scale: %d workers x %d slots: starting...\n", sz.Workers, sz.Slots)
		row, err := scaleOne(ctx, cmd, filepath.Join(dir, strconv.Itoa(i)), o, sz)
		if err != nil {
			return fmt.Errorf("%d workers: %w", sz.Workers, err)
		}
		fmt.Fprintf(errOut, "scale: %+v\n", row)
		rows = append(rows, row)
	}
	out := cmd.OutOrStdout()
	if g.JSON {
		return json.NewEncoder(out).Encode(rows)
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "WORKERS\tSLOTS\tIDLE CPU/WORKER\t(MAX)\tAUTHORITY CPU\tRSS/WORKER (MEDIAN, MAX)\tPRIVATE (ANON)\tPSS\tPEAK RSS MEDIAN\tCONNS/WORKER (MAX, MEAN)\tAUTHORITY CONNS\tJOBS/S\n")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%d\t%.2f%%\t%.2f%%\t%.1f%%\t%.1f, %.1f MiB\t%.1f MiB\t%.1f MiB\t%.1f MiB\t%d, %.1f\t%d\t%.0f\n", r.Workers, r.Slots,
			r.IdleCPUPerWorker, r.IdleCPUMaxWorker, r.IdleCPUAuthority, r.RSSMiBMedian, r.RSSMiBMax, r.AnonMiBMedian, r.PSSMiBMedian, r.PeakRSSMiBMedian,
			r.ConnsMaxWorker, r.ConnsMeanWorker, r.ConnsAuthority, r.JobsPerSec)
	}
	return tw.Flush()
}

func scaleOne(ctx context.Context, cmd *cobra.Command, dir string, o *benchOptions, sz scaleSize) (ScaleRow, error) {
	so := *o
	so.Workers, so.Slots = sz.Workers, sz.Slots
	row := ScaleRow{Workers: sz.Workers, Slots: sz.Slots, Jobs: o.Jobs}
	start := time.Now()
	net, err := startBenchNet(ctx, cmd, dir, &so, false)
	if err != nil {
		return row, err
	}
	defer net.stop()
	row.RegisteredAfterSec = time.Since(start).Seconds()
	// Settle: overlay formation, DHT bootstrap and relay reservations are
	// start-up work, not idle cost.
	if err := sleepCtx(ctx, o.Settle); err != nil {
		return row, err
	}
	row.SettleSeconds = o.Settle.Seconds()
	before := sampleProcs(net)
	t0 := time.Now()
	if err := sleepCtx(ctx, o.Idle); err != nil {
		return row, err
	}
	after := sampleProcs(net)
	el := time.Since(t0).Seconds()
	row.IdleSeconds = el
	var cpus, rss, anon, pss, hwm []float64
	connSum := 0
	for i, p := range net.procs {
		cpu := float64(after[i].cpuTicks-before[i].cpuTicks) / clockTicks / el * 100
		if p.name == "authority" {
			row.IdleCPUAuthority, row.ConnsAuthority = cpu, after[i].conns
			continue
		}
		cpus = append(cpus, cpu)
		rss = append(rss, float64(after[i].rssKiB)/1024)
		anon = append(anon, float64(after[i].anonKiB)/1024)
		pss = append(pss, float64(after[i].pssKiB)/1024)
		row.ConnsMaxWorker = max(row.ConnsMaxWorker, after[i].conns)
		connSum += after[i].conns
	}
	for _, c := range cpus {
		row.IdleCPUPerWorker += c / float64(len(cpus))
		row.IdleCPUMaxWorker = max(row.IdleCPUMaxWorker, c)
	}
	row.ConnsMeanWorker = float64(connSum) / float64(max(1, len(cpus)))
	row.RSSMiBMedian, row.RSSMiBMax = percentile(rss, 0.5), percentile(rss, 1)
	row.AnonMiBMedian, row.PSSMiBMedian = percentile(anon, 0.5), percentile(pss, 0.5)
	if o.Jobs > 0 { // --jobs 0: idle figures only (profiling the idle network)
		profile := "" // --cpuprofile F: the client's profile of each size's series, in F.<workers>x<slots>
		if o.Profile != "" {
			profile = fmt.Sprintf("%s.%dx%d", o.Profile, sz.Workers, sz.Slots)
		}
		if row.JobsPerSec, err = throughput(ctx, net.client.Client, o.Jobs, profile); err != nil {
			return row, err
		}
	}
	for _, p := range net.procs {
		if p.name != "authority" {
			hwm = append(hwm, float64(peakRSS(p.cmd.Process.Pid))/1024)
		}
	}
	row.PeakRSSMiBMedian = percentile(hwm, 0.5)
	return row, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux platform Go supports.
const clockTicks = 100

func sampleProcs(net *benchNet) []procSample {
	est := establishedInodes()
	out := make([]procSample, len(net.procs))
	for i, p := range net.procs {
		pid := p.cmd.Process.Pid
		out[i] = procSample{cpuTicks: cpuTicks(pid), rssKiB: statusKiB(pid, "VmRSS:"), anonKiB: statusKiB(pid, "RssAnon:"),
			pssKiB: fileKiB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:"), hwmKiB: statusKiB(pid, "VmHWM:"), conns: countConns(pid, est)}
	}
	return out
}

// cpuTicks is utime+stime of pid.
func cpuTicks(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count fields after ')'.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

func statusKiB(pid int, key string) int64 { return fileKiB(fmt.Sprintf("/proc/%d/status", pid), key) }

// fileKiB reads a "Key: N kB" line of a /proc file.
func fileKiB(path, key string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			v, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return v
		}
	}
	return 0
}

// establishedInodes are the socket inodes of established TCP connections.
func establishedInodes() map[string]bool {
	out := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) > 9 && fs[3] == "01" {
				out[fs[9]] = true
			}
		}
	}
	return out
}

func countConns(pid int, est map[string]bool) int {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	n := 0
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(l, "socket:["); ok && est[strings.TrimSuffix(ino, "]")] {
			n++
		}
	}
	return n
}
