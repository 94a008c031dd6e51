package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/api"
	"github.com/p2pjobs/p2pnode/node/ledgersvc"
	"github.com/p2pjobs/p2pnode/node/runner"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// crashProc is a p2pnode process the test may SIGKILL and restart on the same
// data directory (same identity, same ledger.db).
type crashProc struct {
	t      *testing.T
	name   string
	dir    string // data directory
	args   []string
	listen string
	env    []string // for the next start only

	mu   sync.Mutex // guards cmd, done, out
	cmd  *exec.Cmd
	done chan error
	out  bytes.Buffer

	ready Ready
}

func newCrashProc(t *testing.T, name, config string, args ...string) *crashProc {
	t.Helper()
	p := &crashProc{t: t, name: name, dir: filepath.Join(t.TempDir(), name), args: args, listen: "/ip4/127.0.0.1/tcp/0"}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if config != "" {
		if err := os.WriteFile(filepath.Join(p.dir, node.ConfigFile), []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { p.stop() })
	return p
}

func (p *crashProc) sock() string { return filepath.Join(p.dir, node.SocketFile) }

// launch starts the process without waiting for it.
func (p *crashProc) launch() {
	p.t.Helper()
	ready := filepath.Join(p.dir, "ready.json")
	_ = os.Remove(ready)
	args := append(append([]string{}, p.args...), "--data-dir", p.dir, "--listen", p.listen, "--ready-file", ready, "--log-level", "warn")
	cmd := exec.Command(binary(p.t), args...)
	cmd.Env = append(os.Environ(), p.env...)
	p.env = nil
	p.mu.Lock()
	p.out.Reset()
	cmd.Stdout, cmd.Stderr = &lockedWriter{p}, &lockedWriter{p}
	p.mu.Unlock()
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

type lockedWriter struct{ p *crashProc }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

func (p *crashProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// start launches the process and waits for its ready file. The first
// start's TCP port is kept for later starts: others bootstrap from it.
func (p *crashProc) start() {
	p.t.Helper()
	p.launch()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var r Ready
		if data, err := os.ReadFile(filepath.Join(p.dir, "ready.json")); err == nil && json.Unmarshal(data, &r) == nil {
			p.ready = r
			if p.listen == "/ip4/127.0.0.1/tcp/0" {
				p.listen = strings.Split(r.Addrs[0], "/p2p/")[0]
			}
			return
		}
		select {
		case err := <-p.done:
			p.t.Fatalf("%s exited early: %v\n%s", p.name, err, p.output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s not ready:\n%s", p.name, p.output())
		}
	}
}

// kill SIGKILLs the process and reaps it.
func (p *crashProc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// wait waits for a process that is to die on its own; it reports how.
func (p *crashProc) wait(d time.Duration) error {
	p.t.Helper()
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case err := <-done:
		p.mu.Lock()
		p.cmd = nil
		p.mu.Unlock()
		return err
	case <-time.After(d):
		p.t.Fatalf("%s still running after %v:\n%s", p.name, d, p.output())
		return nil
	}
}

// stop ends the process with SIGTERM (a clean shutdown).
func (p *crashProc) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// chains reads every chain a process holds: through its API while it runs,
// from its store otherwise.
func (p *crashProc) chains() map[peer.ID][]*pb.Block {
	p.t.Helper()
	out, code := p2pnode(p.t, "ledger", "export", "--data-dir", p.dir)
	if code != 0 {
		p.t.Fatalf("%s: ledger export: exit %d\n%s", p.name, code, out)
	}
	blocks, err := ledger.Import(strings.NewReader(out))
	if err != nil {
		p.t.Fatalf("%s: export: %v", p.name, err)
	}
	return ledger.GroupChains(blocks)
}

// ownChain is the process's own chain, as it holds it.
func (p *crashProc) ownChain() []*pb.Block {
	p.t.Helper()
	id, err := peer.Decode(p.ready.PeerID)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.chains()[id]
}

// isPrefix fails the test unless every block of short is the block at the
// same seq of long (same hash).
func isPrefix(t *testing.T, what string, short, long []*pb.Block) {
	t.Helper()
	if len(short) > len(long) {
		t.Fatalf("%s: %d blocks, the longer copy has %d", what, len(short), len(long))
	}
	for i, b := range short {
		if !bytes.Equal(ledger.Hash(b), ledger.Hash(long[i])) {
			t.Fatalf("%s: block #%d differs", what, b.Seq)
		}
	}
}

// loggedBlocks lists the ledger_block events of the node's own chain in
// its event log (written only after the block was stored): seq -> kind.
func loggedBlocks(t *testing.T, dir string) (map[uint64]string, int) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, node.EventsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[uint64]string{}
	resyncs := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e struct {
			Kind  string         `json:"kind"`
			Attrs map[string]any `json:"attrs"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Kind != "ledger_block" {
			continue // a line torn by the kill
		}
		if e.Attrs["resync"] == true {
			if n, _ := e.Attrs["caught_up"].(float64); n > 0 {
				resyncs++
			}
			continue
		}
		seq, _ := e.Attrs["seq"].(float64)
		kind, _ := e.Attrs["kind"].(string)
		seen[uint64(seq)] = kind
	}
	return seen, resyncs
}

// TestLedgerCrashSafety runs an authority, a worker and a client as real
// processes while the client runs series back to back (escrow locks on
// the client's chain, releases on the authority's, claims on the
// worker's), SIGKILLs the authority and/or the client at random moments
// and restarts them on the same data directories. After each round nothing
// acknowledged is lost: every block the client had stored (the authority
// acknowledged it) is in the authority's copy after its restart, and every
// block the client logged as stored is in its chain after its own restart.
// One round kills the client at the crash point between the authority's
// reply and the client's store: on restart the account catches up from its
// home (resync) before it signs anything. At the end every data directory
// passes `p2pnode ledger verify` and the points are conserved.
func TestLedgerCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes for ~20 s")
	}
	auth := newCrashProc(t, "authority", "authority:\n  ttl: 3s\n  heartbeat: 500ms\n  grant: {amount: 1000000}\n  dispute_window: 2s\n",
		"--role", "authority")
	auth.start()
	boot := auth.ready.Addrs[0]
	worker := newCrashProc(t, "worker", "", "--role", "worker", "--bootstrap", boot, "--slots", "4", "--price", "1")
	worker.start()
	cl := newCrashProc(t, "client", "", "--role", "client", "--bootstrap", boot)
	cl.start()
	clientID, _ := peer.Decode(cl.ready.PeerID)

	// The client runs series back to back through its API; kills make
	// some fail, which is expected.
	specDir := t.TempDir()
	var (
		upMu     sync.Mutex // guards up: the client is running
		up       = true
		finished atomic.Int64 // series with every job done
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			upMu.Lock()
			ok := up
			upMu.Unlock()
			if !ok {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			spec := filepath.Join(specDir, fmt.Sprintf("s%d.yaml", i))
			body := fmt.Sprintf("name: crash-%d\nmodule: builtin:trivial\nparams:\n  i: {from: 1, to: 20}\nresources: {timeout: 10s}\nretries: 1\nresults: %s\n",
				i, filepath.Join(specDir, "results"))
			if err := os.WriteFile(spec, []byte(body), 0o644); err != nil {
				t.Error(err)
				return
			}
			done := false
			_ = api.Submit(ctx, cl.sock(), runner.SubmitRequest{SpecPath: spec}, func(m runner.Message) {
				if m.Kind == "done" {
					done = m.Done.Failed == 0
				}
			})
			if done {
				finished.Add(1)
			} else {
				time.Sleep(50 * time.Millisecond) // no workers yet, authority down: try again
			}
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	setUp := func(v bool) { upMu.Lock(); up = v; upMu.Unlock() }
	// progress waits until series complete again (the network works).
	progress := func(what string) {
		t.Helper()
		from := finished.Load()
		deadline := time.Now().Add(30 * time.Second)
		for finished.Load() < from+1 {
			if time.Now().After(deadline) {
				t.Fatalf("no series completed after %s\nauthority:\n%s\nclient:\n%s\nworker:\n%s", what, auth.output(), cl.output(), worker.output())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	progress("start")

	authChainOf := func(id peer.ID) []*pb.Block { return auth.chains()[id] }
	rounds := []string{"authority", "client", "both", "authority"} // then the crash point, a client kill
	for r, victim := range rounds {
		time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond) // a random moment of a running series
		switch victim {
		case "authority":
			auth.kill()
			acked := cl.ownChain() // everything the authority replied to, as the client stored it
			auth.start()
			isPrefix(t, fmt.Sprintf("round %d: client chain vs the restarted authority's copy", r), acked, authChainOf(clientID))
		case "client", "both":
			setUp(false)
			if victim == "both" {
				auth.kill()
			}
			cl.kill()
			logged, _ := loggedBlocks(t, cl.dir)
			if victim == "both" {
				auth.start()
			}
			cl.start()
			setUp(true)
			chain := cl.ownChain()
			for seq, kind := range logged {
				if seq >= uint64(len(chain)) || ledgersvc.KindName(chain[seq].Kind) != kind {
					t.Fatalf("round %d: block #%d (%s) the client logged as stored is not in its chain after restart (%d blocks)", r, seq, kind, len(chain))
				}
			}
			isPrefix(t, fmt.Sprintf("round %d: restarted client's chain vs the authority's copy", r), chain, authChainOf(clientID))
		}
		progress(fmt.Sprintf("round %d (%s killed)", r, victim))
		t.Logf("round %d: %s killed; %d series done so far", r, victim, finished.Load())
	}

	// The crash point: the client dies between the authority's reply to a
	// countersign and its own store.
	setUp(false)
	cl.stop()
	cl.env = []string{crashEnv + "=1"}
	cl.start()
	setUp(true)
	err := cl.wait(30 * time.Second)
	setUp(false)
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("client at the crash point: %v, want killed by SIGKILL\n%s", err, cl.output())
	}
	stored := cl.ownChain() // from its store: the process is gone
	held := authChainOf(clientID)
	if len(held) <= len(stored) {
		t.Fatalf("crash point: the authority holds %d blocks of the client, the client %d: nothing was lost in between?", len(held), len(stored))
	}
	isPrefix(t, "crash point: client's store vs the authority", stored, held)
	_, before := loggedBlocks(t, cl.dir)
	cl.start() // resyncs from its home while it opens
	setUp(true)
	deadline := time.Now().Add(10 * time.Second) // the event log is flushed every 200 ms
	for _, after := loggedBlocks(t, cl.dir); after <= before; _, after = loggedBlocks(t, cl.dir) {
		if time.Now().After(deadline) {
			t.Fatalf("no resync logged after the crash point (%d before, %d after)", before, after)
		}
		time.Sleep(50 * time.Millisecond)
	}
	isPrefix(t, "after resync: the authority's copy vs the client's chain", held, cl.ownChain())
	progress("the crash point")
	t.Logf("crash point: client had %d blocks stored, the authority %d; after resync the client has %d", len(stored), len(held), len(cl.ownChain()))

	// The end: clean stops, then offline verification of each directory.
	cancel()
	wg.Wait()
	for _, p := range []*crashProc{cl, worker, auth} {
		p.stop()
	}
	for _, p := range []*crashProc{auth, cl, worker} {
		out, code := p2pnode(t, "ledger", "verify", p.dir, "--trust", auth.ready.PeerID)
		if code != 0 {
			t.Fatalf("ledger verify %s: exit %d\n%s", p.name, code, out)
		}
		t.Logf("%s: %s", p.name, strings.TrimSpace(out))
	}
	all := auth.chains()
	authID, _ := peer.Decode(auth.ready.PeerID)
	rep, err := ledger.Audit(all, ledger.NewTrustSet(authID))
	if err != nil || !rep.Conserved() {
		t.Fatalf("audit over the authority's chains: %+v, %v", rep, err)
	}
	for _, p := range []*crashProc{cl, worker} {
		id, _ := peer.Decode(p.ready.PeerID)
		own := p.ownChain()
		isPrefix(t, p.name+": own chain vs the authority's copy", own, all[id])
		// A reply lost to a kill is caught up at the account's next operation.
		t.Logf("%s: %d blocks stored, the authority holds %d", p.name, len(own), len(all[id]))
	}
	kinds := map[string]int{}
	for _, b := range all[clientID] {
		kinds[ledgersvc.KindName(b.Kind)]++
	}
	t.Logf("client blocks: %v", kinds)
	t.Logf("%d series done across %d kills; %d blocks, minted %d = balances %d + escrow %d + in flight %d",
		finished.Load(), len(rounds)+1, rep.Blocks, rep.Minted, rep.Balances, rep.Escrow, rep.InFlight)
}
