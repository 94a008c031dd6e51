package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/api"
	"github.com/p2pjobs/p2pnode/node/runner"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// The chaos suite: real processes of the built binary (an authority, three
// workers with two slots, a client daemon) run a series of the builtin pi
// module while the test SIGKILLs, SIGSTOPs or restarts one of them. Each
// case asserts that every job ends done, that no worker is paid for more
// than the results the client accepted from it (a job paid twice would
// show there: conservation cannot see it), and that the authority's
// chains conserve the points after settlement. Run: go test -run Chaos
// -v ./cmd/p2pnode (the log prints each case's figures).

const (
	chaosJobs    = 60
	chaosWorkers = 3
	// Hang detection is shortened so that the SIGSTOP case takes seconds:
	// a job is hung 2 job estimates + 2 s after it was sent or its worker
	// last answered (defaults: 4 and 10 s).
	chaosClientConfig = "client:\n  hang_factor: 2\n  hang_grace: 2s\n"
	chaosAuthConfig   = "authority:\n  ttl: 3s\n  heartbeat: 500ms\n  grant: {amount: 1000000}\n"
)

type chaosNet struct {
	t       *testing.T
	auth    *crashProc
	workers []*crashProc
	cl      *crashProc
	spec    string
	results string

	mu       sync.Mutex
	accepted map[string]uint64 // worker -> points of the results the client accepted
	done     map[string]bool   // jobs done
	outcomes int
}

func newChaosNet(t *testing.T) *chaosNet {
	t.Helper()
	n := &chaosNet{t: t, accepted: map[string]uint64{}, done: map[string]bool{}}
	n.auth = newCrashProc(t, "authority", chaosAuthConfig, "--role", "authority")
	n.auth.start()
	boot := n.auth.ready.Addrs[0]
	for i := range chaosWorkers {
		w := newCrashProc(t, fmt.Sprintf("worker%d", i), "", "--role", "worker", "--bootstrap", boot, "--slots", "2", "--price", "1")
		w.start()
		n.workers = append(n.workers, w)
	}
	n.cl = newCrashProc(t, "client", chaosClientConfig, "--role", "client", "--bootstrap", boot)
	n.cl.start()
	dir := t.TempDir()
	n.results = filepath.Join(dir, "results")
	n.spec = filepath.Join(dir, "chaos.yaml")
	body := fmt.Sprintf("name: chaos\nmodule: builtin:pi\nargs: [-seed, \"{i}\", -samples, \"300000\"]\nparams:\n  i: {from: 1, to: %d}\n"+
		"outputs: [result.json]\nresources: {timeout: 60s}\nretries: 5\nresults: %s\n", chaosJobs, n.results)
	if err := os.WriteFile(n.spec, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// submit runs the series on the client daemon (resume: only what is not
// done) and calls onOutcome after each job ends. It returns the series'
// error (nil when the stream ended with "done").
func (n *chaosNet) submit(ctx context.Context, resume bool, onOutcome func(done int)) error {
	var ended bool
	var failed []string
	err := api.Submit(ctx, n.cl.sock(), runner.SubmitRequest{SpecPath: n.spec, Resume: resume}, func(m runner.Message) {
		switch m.Kind {
		case "outcome":
			o := m.Outcome
			n.mu.Lock()
			n.outcomes++
			if o.Status == "done" {
				n.done[o.Job] = true
				n.accepted[o.Worker] += o.Price
			} else {
				failed = append(failed, o.Job+": "+o.Error)
			}
			k := len(n.done)
			n.mu.Unlock()
			if onOutcome != nil {
				onOutcome(k)
			}
		case "done":
			ended = true
		case "error":
			failed = append(failed, m.Error)
		}
	})
	if err == nil && !ended {
		err = errors.New("stream ended without done")
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d failures, e.g. %s", len(failed), failed[0])
	}
	return err
}

// check asserts every job done, nobody paid beyond what the client
// accepted from it, and conservation at the authority, after stopping the
// workers (each settles what it holds on a clean stop).
func (n *chaosNet) check() (done int) {
	t := n.t
	t.Helper()
	n.cl.stop()
	for _, w := range n.workers {
		w.stop()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	journal, err := runner.Journal(filepath.Join(n.results, "chaos"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.done) != chaosJobs || len(journal) != chaosJobs {
		t.Errorf("%d of %d jobs done (%d in the journal)", len(n.done), chaosJobs, len(journal))
	}
	all := n.auth.chains()
	authID, _ := peer.Decode(n.auth.ready.PeerID)
	paid := map[string]uint64{}
	for _, b := range all[authID] {
		if b.Kind == pb.BlockKind_BLOCK_ESCROW_RELEASE {
			paid[peer.ID(b.Counterparty).String()] += b.Amount
		}
	}
	var total uint64
	for w, p := range paid {
		total += p
		if p > n.accepted[w] {
			t.Errorf("worker %s paid %d points for results the client accepted for %d: a job paid twice, or a lost attempt paid", w, p, n.accepted[w])
		}
	}
	if total == 0 {
		t.Errorf("nothing settled: the payment check saw nothing")
	}
	rep, err := ledger.Audit(all, ledger.NewTrustSet(authID))
	if err != nil || !rep.Conserved() {
		t.Errorf("audit over the authority's chains: %+v, %v", rep, err)
	}
	t.Logf("paid %d points for %d jobs accepted; minted %d = balances %d + escrow %d + in flight %d",
		total, len(n.done), rep.Minted, rep.Balances, rep.Escrow, rep.InFlight)
	return len(n.done)
}

// runs counts, over the workers' event logs, the results handed back from
// those kept (job_collected) and the jobs that ran to the end at more than
// one worker or more than once.
func (n *chaosNet) runs() (collected, twice int) {
	ran := map[string]int{}
	for _, w := range n.workers {
		data, _ := os.ReadFile(filepath.Join(w.dir, node.EventsFile))
		for _, l := range strings.Split(string(data), "\n") {
			var e struct{ Kind, Job string }
			if json.Unmarshal([]byte(l), &e) != nil {
				continue
			}
			switch e.Kind {
			case "job_collected":
				collected++
			case "job_finished":
				ran[e.Job]++
			}
		}
	}
	for _, k := range ran {
		if k > 1 {
			twice++
		}
	}
	return collected, twice
}

// logged reports whether the client's event log has an event of kind.
func (n *chaosNet) logged(kind string) bool {
	deadline := time.Now().Add(5 * time.Second) // the log is flushed every 200 ms
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(filepath.Join(n.cl.dir, node.EventsFile))
		if strings.Contains(string(data), `"kind":"`+kind+`"`) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

func (n *chaosNet) dump() string {
	var b strings.Builder
	if data, err := os.ReadFile(filepath.Join(n.cl.dir, node.EventsFile)); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if !strings.Contains(l, `"kind":"msg`) && !strings.Contains(l, "job_finished") && !strings.Contains(l, "job_started") {
				fmt.Fprintln(&b, l)
			}
		}
	}
	for _, p := range append([]*crashProc{n.auth, n.cl}, n.workers...) {
		fmt.Fprintf(&b, "--- %s\n%s\n", p.name, p.output())
	}
	return b.String()
}

// signal sends sig to a running process.
func (p *crashProc) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

type chaosFigure struct {
	name    string
	done    int
	elapsed time.Duration
}

var (
	chaosMu      sync.Mutex
	chaosFigures []chaosFigure
)

func record(name string, done int, d time.Duration) {
	chaosMu.Lock()
	defer chaosMu.Unlock()
	chaosFigures = append(chaosFigures, chaosFigure{name, done, d})
}

// TestChaos runs each case on a fresh network and logs a table of jobs
// done and series time against the undisturbed run.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes for about a minute")
	}
	chaosFigures = nil
	cases := []struct {
		name string
		run  func(t *testing.T, n *chaosNet) error
	}{
		{"undisturbed", func(t *testing.T, n *chaosNet) error {
			return n.submit(context.Background(), false, nil)
		}},
		{"worker SIGKILL during the module push", func(t *testing.T, n *chaosNet) error {
			// Killed as soon as the bids are in: awards, escrow locks and
			// the module push are under way.
			var once sync.Once
			ctx := context.Background()
			var err error
			done := make(chan struct{})
			go func() {
				defer close(done)
				err = api.Submit(ctx, n.cl.sock(), runner.SubmitRequest{SpecPath: n.spec}, func(m runner.Message) {
					switch m.Kind {
					case "bids":
						once.Do(func() { n.workers[0].kill() })
					case "outcome":
						n.mu.Lock()
						if m.Outcome.Status == "done" {
							n.done[m.Outcome.Job] = true
							n.accepted[m.Outcome.Worker] += m.Outcome.Price
						}
						n.mu.Unlock()
					}
				})
			}()
			<-done
			return err
		}},
		{"worker SIGKILL mid-series", func(t *testing.T, n *chaosNet) error {
			var once sync.Once
			return n.submit(context.Background(), false, func(k int) {
				if k == chaosJobs/3 {
					once.Do(func() { n.workers[0].kill() })
				}
			})
		}},
		{"worker SIGSTOP 8s then SIGCONT", func(t *testing.T, n *chaosNet) error {
			// Stopped for 8 s (the 20 s, scaled to the shortened
			// hang detection): its jobs must move to the others, and its
			// late results, once it wakes, must not be paid.
			var once sync.Once
			woke := make(chan struct{})
			err := n.submit(context.Background(), false, func(k int) {
				if k == chaosJobs/6 {
					once.Do(func() {
						n.workers[0].signal(syscall.SIGSTOP)
						time.AfterFunc(8*time.Second, func() { n.workers[0].signal(syscall.SIGCONT); close(woke) })
					})
				}
			})
			<-woke
			if !n.logged("worker_hung") {
				t.Error("the stopped worker was never noticed as hung")
			}
			return err
		}},
		{"client SIGKILL then --resume", func(t *testing.T, n *chaosNet) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var once sync.Once
			err := n.submit(ctx, false, func(k int) {
				if k == chaosJobs/3 {
					once.Do(func() { n.cl.kill() })
				}
			})
			if err == nil || alive(n.cl) {
				t.Fatalf("the series ended (%v) although its client was to be killed", err)
			}
			n.cl.start()
			if err := n.submit(context.Background(), true, nil); err != nil {
				return err
			}
			// The jobs the dead run had sent were collected from the
			// workers that kept their results, not run again.
			collected, twice := n.runs()
			t.Logf("resume: %d results collected from the workers, %d jobs ran twice", collected, twice)
			if collected == 0 {
				t.Error("no result of the dead run was collected")
			}
			return nil
		}},
		{"authority SIGKILL and restart", func(t *testing.T, n *chaosNet) error {
			var once sync.Once
			return n.submit(context.Background(), false, func(k int) {
				if k == chaosJobs/3 {
					once.Do(func() { go func() { n.auth.kill(); n.auth.start() }() })
				}
			})
		}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			n := newChaosNet(t)
			start := time.Now()
			if err := c.run(t, n); err != nil {
				t.Errorf("series: %v\n%s", err, n.dump())
			}
			elapsed := time.Since(start)
			if os.Getenv("CHAOS_DUMP") != "" {
				t.Log(n.dump())
			}
			if strings.HasPrefix(c.name, "authority") {
				// The restart may still be under way.
				deadline := time.Now().Add(20 * time.Second)
				for !alive(n.auth) && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
				}
			}
			done := n.check()
			record(c.name, done, elapsed)
		})
	}
	var base time.Duration
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-40s %10s %10s %8s\n", "case", "jobs done", "series", "vs undisturbed")
	figs := append([]chaosFigure{}, chaosFigures...)
	sort.SliceStable(figs, func(i, j int) bool { return figs[i].name == "undisturbed" && figs[j].name != "undisturbed" })
	for _, f := range figs {
		if f.name == "undisturbed" {
			base = f.elapsed
		}
		ratio := "-"
		if base > 0 {
			ratio = fmt.Sprintf("%.1f×", f.elapsed.Seconds()/base.Seconds())
		}
		fmt.Fprintf(&b, "%-40s %5d/%-4d %9.1fs %8s\n", f.name, f.done, chaosJobs, f.elapsed.Seconds(), ratio)
	}
	t.Log(b.String())
}

func alive(p *crashProc) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}
