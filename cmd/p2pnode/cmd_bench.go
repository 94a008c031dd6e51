package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/schedule"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

func init() { register(newBenchCmd) }

type benchOptions struct {
	Workers int
	Jobs    int
	Singles int
	Slots   int
	Dir     string
	Profile string
	Scale   string
	Idle    time.Duration
	Settle  time.Duration
}

func newBenchCmd(g *globalOptions) *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the framework: jobs/s, single-job latency, memory, on a loopback network of processes",
		Long: `bench starts one authority and several workers as separate processes on
loopback (this process is the client) and measures, with a trivial WASM
module so that the framework is measured rather than a language runtime:

  - throughput: jobs/s for a series of --jobs jobs, with event logs on and off
  - latency: p50/p99 of single-job series on a warm network (--singles runs)
  - peak RSS of every process

It prints a table (or --json). Figures depend on the machine; the README
records them for a 2-core machine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runBench(cmd.Context(), g, &o, cmd) },
	}
	f := cmd.Flags()
	f.IntVar(&o.Workers, "workers", 4, "worker processes")
	f.IntVar(&o.Jobs, "jobs", 10000, "jobs in the throughput series")
	f.IntVar(&o.Singles, "singles", 200, "single-job series for the latency figures")
	f.IntVar(&o.Slots, "slots", 2, "slots per worker")
	f.StringVar(&o.Dir, "dir", "", "working directory (default: a new temporary directory)")
	f.StringVar(&o.Profile, "cpuprofile", "", "write the client's CPU profile of the throughput run to this file")
	f.StringVar(&o.Scale, "scale", "", "scale mode: network sizes N or NxSLOTS, comma separated (e.g. 4x2,64x1,200x1): idle CPU, RSS and connections per worker, and jobs/s")
	f.DurationVar(&o.Idle, "idle", 30*time.Second, "scale mode: idle window measured")
	f.DurationVar(&o.Settle, "settle", 20*time.Second, "scale mode: wait after all workers registered, before the idle window")
	return cmd
}

// BenchResult is what bench reports.
type BenchResult struct {
	Workers        int              `json:"workers"`
	Jobs           int              `json:"jobs"`
	JobsPerSec     float64          `json:"jobs_per_sec"`
	JobsPerSecLogs float64          `json:"jobs_per_sec_events_on"`
	SeriesP50ms    float64          `json:"single_series_p50_ms"`
	SeriesP99ms    float64          `json:"single_series_p99_ms"`
	JobP50ms       float64          `json:"single_job_p50_ms"`
	JobP99ms       float64          `json:"single_job_p99_ms"`
	PeakRSSKiB     map[string]int64 `json:"peak_rss_kib"`
}

type benchNet struct {
	procs  []*proc
	client *node.Node
	close  func() error
}

func (b *benchNet) stop() {
	if b.close != nil {
		_ = b.close()
	}
	for i := len(b.procs) - 1; i >= 0; i-- {
		b.procs[i].stop()
	}
}

func startBenchNet(ctx context.Context, cmd *cobra.Command, dir string, o *benchOptions, events bool) (*benchNet, error) {
	b := &benchNet{}
	common := func(name string) []string {
		ev := "off"
		if events {
			ev = filepath.Join(dir, "logs", name+".jsonl")
		}
		return []string{"--data-dir", filepath.Join(dir, name), "--listen", "/ip4/127.0.0.1/tcp/0",
			"--events", ev, "--ready-file", filepath.Join(dir, name+".ready"), "--log-level", "error"}
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	// Every job costs a point: grant the client enough for all of them.
	if err := writeDemoAuthorityConfig(filepath.Join(dir, "authority"), uint64(2*(o.Jobs+o.Singles+200))); err != nil {
		return nil, err
	}
	auth, err := startProc(dir, "authority", append([]string{"--role", "authority"}, common("authority")...)...)
	if err != nil {
		return nil, err
	}
	b.procs = append(b.procs, auth)
	ar, err := waitReady(ctx, auth, filepath.Join(dir, "authority.ready"), 20*time.Second)
	if err != nil {
		b.stop()
		return nil, err
	}
	for i := range o.Workers {
		name := fmt.Sprintf("worker-%d", i+1)
		p, err := startProc(dir, name, append([]string{"--role", "worker", "--bootstrap", ar.Addrs[0],
			"--slots", strconv.Itoa(o.Slots)}, common(name)...)...)
		if err != nil {
			b.stop()
			return nil, err
		}
		b.procs = append(b.procs, p)
	}
	ev := "off"
	if events {
		ev = filepath.Join(dir, "logs", "client.jsonl")
	}
	cg := &globalOptions{DataDir: filepath.Join(dir, "client"), LogLevel: "error"}
	n, _, closeAll, err := openNode(ctx, cg, &nodeOptions{}, cmd, func(c *node.Config) {
		c.Roles = []string{node.RoleClient}
		c.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		c.Bootstrap = []string{ar.Addrs[0]}
		c.Events = ev
	})
	if err != nil {
		b.stop()
		return nil, err
	}
	b.client, b.close = n, closeAll
	if err := n.WaitWorkers(ctx, "wasm", o.Workers, max(30*time.Second, time.Duration(o.Workers)*500*time.Millisecond)); err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

func trivialSeries(id string, n int) *client.Series {
	s := &client.Series{ID: id, Executor: "wasm", Module: wasm.Trivial, Strategy: schedule.Fastest, Retries: 2,
		Resources: &pb.Resources{MemoryBytes: 1 << 20, TimeoutMs: 10000}, Jobs: make([]client.Job, n)}
	for i := range s.Jobs {
		s.Jobs[i] = client.Job{ID: "j" + strconv.Itoa(i)}
	}
	return s
}

func throughput(ctx context.Context, c *client.Client, n int, profile string) (float64, error) {
	// Warm-up: every worker compiles the module and the streams are set up.
	if _, err := c.Run(ctx, trivialSeries("warmup", 200), client.Hooks{}); err != nil {
		return 0, err
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	rep, err := c.Run(ctx, trivialSeries("throughput", n), client.Hooks{})
	if err != nil {
		return 0, err
	}
	if f := rep.Failed(); f > 0 {
		return 0, fmt.Errorf("%d of %d jobs failed", f, n)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[min(len(xs)-1, int(p*float64(len(xs))))]
}

// peakRSS reads VmHWM (the peak resident set) of a process, in KiB.
func peakRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			v, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return v
		}
	}
	return 0
}

func runBench(ctx context.Context, g *globalOptions, o *benchOptions, cmd *cobra.Command) error {
	if o.Scale != "" {
		sizes, err := parseScale(o.Scale, o.Slots)
		if err != nil {
			return err
		}
		return runScale(ctx, g, o, cmd, sizes)
	}
	if o.Workers < 1 || o.Jobs < 1 || o.Singles < 1 {
		return usagef("--workers, --jobs and --singles must be at least 1")
	}
	dir := o.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "p2pnode-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	errOut := cmd.ErrOrStderr()
	res := BenchResult{Workers: o.Workers, Jobs: o.Jobs, PeakRSSKiB: map[string]int64{}}

	// Events off: the framework alone.
	fmt.Fprintf(errOut, "bench: %d workers, %d trivial jobs, events off...\n", o.Workers, o.Jobs)
	net, err := startBenchNet(ctx, cmd, filepath.Join(dir, "off"), o, false)
	if err != nil {
		return err
	}
	res.JobsPerSec, err = throughput(ctx, net.client.Client, o.Jobs, o.Profile)
	if err == nil {
		fmt.Fprintf(errOut, "bench: %d single-job series on a warm network...\n", o.Singles)
		var series, jobs []float64
		for i := range o.Singles {
			start := time.Now()
			rep, rerr := net.client.Client.Run(ctx, trivialSeries("single-"+strconv.Itoa(i), 1), client.Hooks{})
			if rerr != nil || rep.Failed() > 0 {
				err = fmt.Errorf("single-job series %d: %v", i, rerr)
				break
			}
			series = append(series, float64(time.Since(start).Microseconds())/1000)
			jobs = append(jobs, float64(rep.Outcomes[0].Elapsed.Microseconds())/1000)
		}
		res.SeriesP50ms, res.SeriesP99ms = percentile(series, 0.50), percentile(series, 0.99)
		res.JobP50ms, res.JobP99ms = percentile(jobs, 0.50), percentile(jobs, 0.99)
	}
	for _, p := range net.procs {
		res.PeakRSSKiB[p.name] = peakRSS(p.cmd.Process.Pid)
	}
	res.PeakRSSKiB["client"] = peakRSS(os.Getpid())
	net.stop()
	if err != nil {
		return err
	}

	fmt.Fprintf(errOut, "bench: %d trivial jobs, events on...\n", o.Jobs)
	net, err = startBenchNet(ctx, cmd, filepath.Join(dir, "on"), o, true)
	if err != nil {
		return err
	}
	res.JobsPerSecLogs, err = throughput(ctx, net.client.Client, o.Jobs, "")
	net.stop()
	if err != nil {
		return err
	}

	out := cmd.OutOrStdout()
	if g.JSON {
		return json.NewEncoder(out).Encode(res)
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "MEASURE\tVALUE\n")
	fmt.Fprintf(tw, "throughput, %d trivial jobs, %d workers x %d slots, events off\t%.0f jobs/s\n", o.Jobs, o.Workers, o.Slots, res.JobsPerSec)
	fmt.Fprintf(tw, "throughput, same, event logs on\t%.0f jobs/s\n", res.JobsPerSecLogs)
	fmt.Fprintf(tw, "single-job series (discover, bid, dispatch, result) p50 / p99\t%.1f / %.1f ms\n", res.SeriesP50ms, res.SeriesP99ms)
	fmt.Fprintf(tw, "single job round trip (dispatch to result) p50 / p99\t%.2f / %.2f ms\n", res.JobP50ms, res.JobP99ms)
	names := make([]string, 0, len(res.PeakRSSKiB))
	for n := range res.PeakRSSKiB {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(tw, "peak RSS %s\t%.1f MiB\n", n, float64(res.PeakRSSKiB[n])/1024)
	}
	return tw.Flush()
}
