package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/p2pjobs/p2pnode/node"
	wasmexec "github.com/p2pjobs/p2pnode/node/exec"
	"github.com/p2pjobs/p2pnode/node/runner"
	"github.com/p2pjobs/p2pnode/node/viz"
	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

func init() { register(newDemoCmd) }

type demoOptions struct {
	Workers int
	Jobs    int
	Samples int
	Dir     string
	Stagger time.Duration
	Viz     bool
	Open    bool
	VizAddr string
}

func newDemoCmd(g *globalOptions) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a whole network on this machine: an authority, workers and a client farming out a sweep",
		Long: `demo starts one authority and several workers as separate processes on
loopback, submits a parameter sweep of the bundled WASM module (a Monte Carlo
estimate of pi, one seed per job), shows progress, prints a summary table and
stops everything. Every process writes its event log into one directory,
whose path is printed: replay it with 'p2pnode viz DIR'.

With --viz, the visualiser follows the logs live from the start (its URL is
printed), and the network keeps running after the series until Ctrl-C, so
you can watch and replay it; Ctrl-C stops every process and keeps the logs.`,
		Example: `  p2pnode demo
  p2pnode demo --workers 8 --jobs 200
  p2pnode demo --viz --open --stagger 1s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runDemo(cmd.Context(), g, &o, cmd) },
	}
	f := cmd.Flags()
	f.IntVar(&o.Workers, "workers", 4, "number of worker processes")
	f.IntVar(&o.Jobs, "jobs", 50, "number of jobs (seeds) in the sweep")
	f.IntVar(&o.Samples, "samples", 2_000_000, "Monte Carlo samples per job")
	f.StringVar(&o.Dir, "dir", "", "directory for data, logs and results (default: a new temporary directory)")
	f.DurationVar(&o.Stagger, "stagger", 150*time.Millisecond, "delay between worker starts, so the network's formation is visible")
	f.BoolVar(&o.Viz, "viz", false, "serve the visualiser live and keep the network up after the series until Ctrl-C")
	f.BoolVar(&o.Open, "open", false, "with --viz: open the page in a browser, if one is found")
	f.StringVar(&o.VizAddr, "viz-listen", "127.0.0.1:0", "with --viz: address to serve the visualiser on")
	return cmd
}

// proc is one child process of the demo.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProc(dir, name string, args ...string) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, name+".out"))
	if err != nil {
		return nil, err
	}
	c := exec.Command(exe, args...)
	c.Stdout, c.Stderr = logf, logf
	// Own process group: a Ctrl-C on the terminal reaches the demo, which
	// then stops its children in order.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: c, done: make(chan struct{})}
	go func() {
		p.err = c.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitReady polls for a --ready-file while the process lives.
func waitReady(ctx context.Context, p *proc, path string, d time.Duration) (Ready, error) {
	var r Ready
	deadline := time.Now().Add(d)
	for {
		if data, err := os.ReadFile(path); err == nil && json.Unmarshal(data, &r) == nil {
			return r, nil
		}
		select {
		case <-p.done:
			return r, fmt.Errorf("%s exited before it was ready (%v); see its log", p.name, p.err)
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("%s not ready after %v", p.name, d)
		}
	}
}

func runDemo(ctx context.Context, g *globalOptions, o *demoOptions, cmd *cobra.Command) error {
	if o.Workers < 1 || o.Jobs < 1 || o.Samples < 1 {
		return usagef("--workers, --jobs and --samples must be at least 1")
	}
	out := cmd.OutOrStdout()
	dir := o.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "p2pnode-demo-"); err != nil {
			return err
		}
	}
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(out, "demo directory: %s\nevent logs:     %s (replay: p2pnode viz %s)\n", dir, logs, logs)
	if o.Viz {
		vs, err := viz.Start(ctx, o.VizAddr, logs)
		if err != nil {
			return err
		}
		defer vs.Wait()
		fmt.Fprintf(out, "visualiser:     %s\n", vs.URL())
		if o.Open {
			if err := openBrowser(vs.URL()); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "p2pnode: cannot open a browser: %v\n", err)
			}
		}
	}

	var procs []*proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop()
		}
	}()
	common := func(name string) []string {
		return []string{"--data-dir", filepath.Join(dir, name), "--listen", "/ip4/127.0.0.1/tcp/0",
			"--events", filepath.Join(logs, name+".jsonl"), "--ready-file", filepath.Join(dir, name+".ready"), "--log-level", "warn"}
	}
	if err := writeDemoAuthorityConfig(filepath.Join(dir, "authority"), demoGrant); err != nil {
		return err
	}
	auth, err := startProc(dir, "authority", append([]string{"--role", "authority"}, common("authority")...)...)
	if err != nil {
		return err
	}
	procs = append(procs, auth)
	// The workers share one compilation cache, compiled here while the
	// authority starts: otherwise each compiles the 3 MB module on its
	// first job, seconds each on a small machine.
	cache := filepath.Join(dir, "wasm-cache")
	warmed := make(chan error, 1)
	go func() { warmed <- warmModuleCache(ctx, cache, wasm.Pi) }()
	ar, err := waitReady(ctx, auth, filepath.Join(dir, "authority.ready"), 20*time.Second)
	if err != nil {
		return err
	}
	if err := <-warmed; err != nil {
		return err
	}
	authAddr := ar.Addrs[0]
	fmt.Fprintf(out, "authority:      %s\n", authAddr)
	for i := range o.Workers {
		name := fmt.Sprintf("worker-%d", i+1)
		args := append([]string{"--role", "worker", "--bootstrap", authAddr, "--slots", "2",
			"--price", strconv.Itoa(1 + i%3)}, common(name)...)
		if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name, node.ConfigFile), []byte("worker:\n  module_cache: "+cache+"\n"), 0o600); err != nil {
			return err
		}
		p, err := startProc(dir, name, args...)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		select {
		case <-time.After(o.Stagger):
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	cg := &globalOptions{DataDir: filepath.Join(dir, "client"), LogLevel: "warn"}
	copts := &nodeOptions{Bootstrap: []string{authAddr}, Events: filepath.Join(logs, "client.jsonl")}
	n, _, closeAll, err := openNode(ctx, cg, copts, cmd, func(c *node.Config) {
		c.Roles = []string{node.RoleClient}
		c.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		c.Bootstrap = copts.Bootstrap
		c.Events = copts.Events
	})
	if err != nil {
		return err
	}
	defer closeAll()
	if err := n.WaitWorkers(ctx, "wasm", o.Workers, 30*time.Second); err != nil {
		return err
	}
	fmt.Fprintf(out, "workers:        %d registered\n\n", o.Workers)

	spec := fmt.Sprintf(`name: pi-sweep
module: builtin:pi
args: ["-seed", "{seed}", "-samples", "{samples}"]
params:
  seed: {from: 1, to: %d}
  samples: [%d]
outputs: [result.json]
resources: {memory: 64MiB, timeout: 60s}
strategy: balanced
results: %s
`, o.Jobs, o.Samples, filepath.Join(dir, "results"))
	specPath := filepath.Join(dir, "pi-sweep.yaml")
	if err := os.WriteFile(specPath, []byte(spec), 0o644); err != nil {
		return err
	}
	view := newSeriesView(out, g.JSON)
	_, runErr := n.RunSeries(ctx, runner.SubmitRequest{SpecPath: specPath}, builtins(), view.handle)
	failed := view.summary()
	if runErr != nil {
		return runErr
	}
	if home := n.LedgerHome(); home != "" {
		if err := demoLedger(ctx, out, n, home); err != nil {
			return err
		}
	}
	if failed > 0 && !o.Viz {
		return exitError{exitFailure, fmt.Errorf("%d jobs failed", failed)}
	}
	if o.Viz {
		fmt.Fprintln(out, "\nthe network keeps running; press Ctrl-C to stop it")
		<-ctx.Done()
		return nil
	}
	fmt.Fprintf(out, "\nreplay the run: p2pnode viz %s\n", logs)
	return nil
}

// warmModuleCache compiles module into the on-disk cache at dir.
func warmModuleCache(ctx context.Context, dir string, module []byte) error {
	w, err := wasmexec.NewWasm(wasmexec.WithCacheDir(dir))
	if err != nil {
		return err
	}
	defer w.Close(ctx)
	_, err = w.AddModule(ctx, module)
	return err
}
