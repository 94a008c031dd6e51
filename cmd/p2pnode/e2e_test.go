package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The end-to-end tests build the real binary once and run the authority,
// the workers and the client as separate OS processes on loopback.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "p2pnode-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "p2pnode")
		// As scripts/build.sh does: the revision goes in at link time.
		// -tags p2pnode_testhooks: the crash point of ledger_crash_test.go.
		out, err := exec.Command("go", "build", "-tags", "p2pnode_testhooks", "-ldflags", "-X github.com/p2pjobs/p2pnode/node.revision="+testRevision, "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// daemon runs the binary until the test ends and returns its ready info.
func daemon(t *testing.T, name string, args ...string) Ready {
	t.Helper()
	return daemonWithConfig(t, name, "", args...)
}

// daemonWithConfig is daemon with a config.yaml in the data directory.
func daemonWithConfig(t *testing.T, name, config string, args ...string) Ready {
	t.Helper()
	return daemonIn(t, t.TempDir(), name, config, args...)
}

// daemonIn is daemonWithConfig in dir; its data directory is dir/data.
func daemonIn(t *testing.T, dir, name, config string, args ...string) Ready {
	t.Helper()
	if config != "" {
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "data", "config.yaml"), []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ready := filepath.Join(dir, "ready.json")
	args = append(args, "--data-dir", filepath.Join(dir, "data"), "--listen", "/ip4/127.0.0.1/tcp/0",
		"--ready-file", ready, "--log-level", "warn")
	cmd := exec.Command(binary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		var r Ready
		if data, err := os.ReadFile(ready); err == nil && json.Unmarshal(data, &r) == nil {
			return r
		}
		select {
		case err := <-done:
			t.Fatalf("%s exited early: %v\n%s", name, err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready:\n%s", name, out.String())
		}
	}
}

// p2pnode runs one command to completion and returns its output and exit code.
func p2pnode(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary(t), args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	default:
		t.Fatalf("p2pnode %v: %v", args, err)
		return "", -1
	}
}

// submitWhenRegistered runs a submit command, again while it finds no
// workers: they register within a heartbeat of starting, and a submit
// before that rightly finds none.
func submitWhenRegistered(t *testing.T, args ...string) (string, int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := p2pnode(t, args...)
		if code == 0 || time.Now().After(deadline) || !strings.Contains(out, "no workers found") {
			return out, code
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func writeSpec(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "sweep.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitRegistered polls until n workers are registered with the authority,
// by asking a throw-away client (the ledger-free discover path).
func startNetwork(t *testing.T, workers int) string {
	t.Helper()
	// New accounts get points, so clients can pay for their series.
	auth := daemonWithConfig(t, "authority", "authority:\n  grant:\n    amount: 1000\n", "--role", "authority")
	addr := auth.Addrs[0]
	for i := range workers {
		daemon(t, fmt.Sprintf("worker-%d", i), "--role", "worker", "--bootstrap", addr, "--slots", "2")
	}
	return addr
}

func TestSubmitEndToEnd(t *testing.T) {
	addr := startNetwork(t, 2)
	dir := t.TempDir()
	spec := writeSpec(t, dir, `name: e2e
module: builtin:pi
args: ["-seed", "{seed}", "-samples", "100000"]
params:
  seed: {from: 1, to: 12}
outputs: [result.json]
resources: {memory: 64MiB, timeout: 30s}
`)
	data := filepath.Join(dir, "client")
	out, code := submitWhenRegistered(t, "submit", spec, "--bootstrap", addr, "--data-dir", data)
	if code != 0 {
		t.Fatalf("submit exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "12 jobs: 12 done, 0 failed") {
		t.Errorf("summary line missing:\n%s", out)
	}
	if !strings.Contains(out, "PARAMS") || !strings.Contains(out, "seed=12") {
		t.Errorf("the table does not show each job's params:\n%s", out)
	}
	f, err := os.Open(filepath.Join(dir, "results", "e2e", "summary.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); n++ {
		var l struct {
			Job, Status string
			Params      map[string]string
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Status != "done" || l.Params["seed"] == "" {
			t.Errorf("summary line %q: %v", sc.Text(), err)
		}
		var p map[string]string
		if b, err := os.ReadFile(filepath.Join(dir, "results", "e2e", l.Job, "params.json")); err != nil ||
			json.Unmarshal(b, &p) != nil || p["seed"] != l.Params["seed"] {
			t.Errorf("%s/params.json = %s (%v), want seed %s", l.Job, b, err, l.Params["seed"])
		}
		if _, err := os.Stat(filepath.Join(dir, "results", "e2e", l.Job, "result.json")); err != nil {
			t.Errorf("%s: %v", l.Job, err)
		}
	}
	if n != 12 {
		t.Errorf("%d summary lines, want 12", n)
	}

	// A job that fails makes the exit code 1, and its reason is printed.
	spec = writeSpec(t, dir, `name: e2e-fail
module: builtin:pi
args: ["{mode}", "-samples", "1000"]
params:
  mode: ["-trap", "-env"]
resources: {timeout: 10s}
retries: 0
`)
	out, code = p2pnode(t, "submit", spec, "--bootstrap", addr, "--data-dir", data)
	if code != 1 || !strings.Contains(out, "FAILED: exit status 2") || !strings.Contains(out, "1 done, 1 failed") {
		t.Errorf("failing series: exit %d, want 1 with the reason:\n%s", code, out)
	}
}

func TestSubmitBadInput(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"unknown key":    "name: x\nmodule: builtin:pi\nbogus: 1\n",
		"bad range":      "name: x\nmodule: builtin:pi\nparams:\n  s: {from: 1, to: 5, step: 0}\n",
		"missing module": "name: x\nmodule: nowhere.wasm\n",
		"bad strategy":   "name: x\nmodule: builtin:pi\nstrategy: luckiest\n",
	}
	for name, body := range cases {
		out, code := p2pnode(t, "submit", writeSpec(t, dir, body), "--data-dir", filepath.Join(dir, "d"))
		if code != 2 || !strings.Contains(out, "p2pnode:") {
			t.Errorf("%s: exit %d, want 2 with a message:\n%s", name, code, out)
		}
	}
	if out, code := p2pnode(t, "submit", filepath.Join(dir, "absent.yaml")); code != 2 {
		t.Errorf("absent file: exit %d:\n%s", code, out)
	}
	if out, code := p2pnode(t, "--role", "worker", "--bootstrap", "/ip4/127.0.0.1/tcp/1", "--data-dir", filepath.Join(dir, "w")); code != 2 {
		t.Errorf("bootstrap without /p2p: exit %d:\n%s", code, out)
	}
}

func TestInitAndDataDirLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	out, code := p2pnode(t, "init", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "peer ID:") {
		t.Fatalf("init: %d\n%s", code, out)
	}
	st, err := os.Stat(filepath.Join(dir, "identity.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity: %v %v", st.Mode(), err)
	}
	id := strings.TrimSpace(strings.SplitN(strings.SplitN(out, "peer ID:", 2)[1], "\n", 2)[0])
	// The identity persists across runs.
	out2, _ := p2pnode(t, "init", "--data-dir", dir)
	if !strings.Contains(out2, id) {
		t.Fatalf("identity changed:\n%s\n%s", out, out2)
	}
	// A running node locks its data directory.
	ready := filepath.Join(t.TempDir(), "r")
	cmd := exec.Command(binary(t), "--role", "worker", "--data-dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0",
		"--ready-file", ready)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for _, err := os.Stat(ready); err != nil; _, err = os.Stat(ready) {
		if time.Now().After(deadline) {
			t.Fatal("first node not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, code = p2pnode(t, "--role", "worker", "--data-dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0")
	if code == 0 || !strings.Contains(out, "in use") {
		t.Fatalf("second node on a locked data dir: exit %d\n%s", code, out)
	}
}

// TestSubmitToRunningNode: with a worker,client node running on a data
// directory, submit hands the series to it over the local API instead of
// opening the (locked) directory itself; status reads the same socket.
func TestSubmitToRunningNode(t *testing.T) {
	addr := startNetwork(t, 1)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	ready := filepath.Join(dir, "ready.json")
	cmd := exec.Command(binary(t), "--role", "worker,client", "--bootstrap", addr, "--data-dir", data,
		"--listen", "/ip4/127.0.0.1/tcp/0", "--ready-file", ready, "--log-level", "warn")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for _, err := os.Stat(ready); err != nil; _, err = os.Stat(ready) {
		if time.Now().After(deadline) {
			t.Fatal("node not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	spec := writeSpec(t, dir, `name: handed
module: builtin:trivial
params:
  n: {from: 1, to: 6}
`)
	out, code := submitWhenRegistered(t, "submit", spec, "--data-dir", data)
	if code != 0 || !strings.Contains(out, "handing the series to the node running") || !strings.Contains(out, "6 jobs: 6 done") {
		t.Fatalf("submit to a running node: exit %d\n%s", code, out)
	}
	out, code = p2pnode(t, "status", "--data-dir", data, "--json")
	var st struct {
		PeerID string   `json:"peer_id"`
		Roles  []string `json:"roles"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.PeerID == "" || len(st.Roles) != 2 {
		t.Fatalf("status --json: exit %d\n%s", code, out)
	}
}

// TestSubmitResume: after a run, --resume runs only the jobs the journal
// does not record as done (here: one whose output was deleted).
func TestSubmitResume(t *testing.T) {
	addr := startNetwork(t, 1)
	dir := t.TempDir()
	spec := writeSpec(t, dir, `name: resumable
module: builtin:pi
args: ["-seed", "{seed}", "-samples", "1000"]
params:
  seed: {from: 1, to: 5}
outputs: [result.json]
`)
	data := filepath.Join(dir, "client")
	out, code := submitWhenRegistered(t, "submit", spec, "--bootstrap", addr, "--data-dir", data)
	if code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, out)
	}
	if err := os.Remove(filepath.Join(dir, "results", "resumable", "job-3", "result.json")); err != nil {
		t.Fatal(err)
	}
	out, code = p2pnode(t, "submit", spec, "--bootstrap", addr, "--data-dir", data, "--resume")
	if code != 0 || !strings.Contains(out, "4 jobs already done are skipped") || !strings.Contains(out, "1 jobs: 1 done") {
		t.Fatalf("resumed run: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "results", "resumable", "job-3", "result.json")); err != nil {
		t.Fatalf("job-3 not re-run: %v", err)
	}
	out, code = p2pnode(t, "submit", spec, "--bootstrap", addr, "--data-dir", data, "--resume")
	if code != 0 || !strings.Contains(out, "5 jobs already done") {
		t.Fatalf("nothing-to-do run: exit %d\n%s", code, out)
	}
}
