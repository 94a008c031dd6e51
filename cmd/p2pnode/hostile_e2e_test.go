//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// TestHostileExecJobsOnTheRealBinary sends hostile exec jobs to a worker
// running as its own process of the built binary, so the jail is the real
// `p2pnode __exec-jail` and the job directories the real
// <data-dir>/jobs: a refused LD_PRELOAD, a setsid'd sleeper that must not
// outlive its job, a read of the worker's identity key; then a normal job;
// and nothing left in <data-dir>/jobs.
func TestHostileExecJobsOnTheRealBinary(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: this test must exercise the root path")
		}
		t.Skip("needs root (jobs as nobody, tmpfs quotas, cgroups); run it as root, as CI does")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := "worker:\n  executors: [wasm, exec]\n  exec_allow: {sh: /bin/sh, setsid: /usr/bin/setsid}\n  exec_env: [SEED]\n"
	if err := os.WriteFile(filepath.Join(data, "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready.json")
	cmd := exec.Command(binary(t), "--role", "worker", "--data-dir", data, "--listen", "/ip4/127.0.0.1/tcp/0",
		"--ready-file", ready, "--log-level", "warn")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	var r Ready
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil && json.Unmarshal(b, &r) == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("worker exited: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker not ready:\n%s", out.String())
		}
	}
	wid, err := peer.Decode(r.PeerID)
	if err != nil {
		t.Fatal(err)
	}
	ai := peer.AddrInfo{ID: wid}
	for _, a := range r.Addrs {
		ai.Addrs = append(ai.Addrs, ma.StringCast(a))
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.Connect(ctx, ai); err != nil {
		t.Fatal(err)
	}
	seq := uint64(0)
	run := func(req *pb.JobRequest) *pb.JobResult {
		t.Helper()
		var resp pb.BidResponse
		if _, err := protocols.Call(ctx, h, wid, protocols.BidVersions, protocols.Exchange{Max: protocols.MaxBidMsg, Timeout: protocols.BidTimeout},
			&pb.BidRequest{SeriesId: "hostile", JobCount: 1, Executor: "exec"}, &resp); err != nil || resp.Decline != nil {
			t.Fatalf("bid: %v %v", err, resp.Decline)
		}
		b, _, err := protocols.VerifyBid(resp.Bid)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		req.Seq, req.SeriesId, req.JobId, req.Executor, req.ModuleHash, req.BidId, req.Price =
			seq, "hostile", fmt.Sprint("j", seq), "exec", make([]byte, 32), b.BidId, b.PricePerJob
		st, err := h.NewStream(ctx, wid, protocols.Job)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		_ = st.SetDeadline(time.Now().Add(30 * time.Second))
		if err := protocols.NewWriter(st, protocols.MaxJobMsg).Write(&pb.JobStreamMsg{Msg: &pb.JobStreamMsg_Job{Job: req}}); err != nil {
			t.Fatal(err)
		}
		_ = st.CloseWrite()
		var m pb.JobStreamReply
		if err := protocols.NewReader(st, protocols.MaxJobMsg).Read(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetResult()
	}

	res := run(&pb.JobRequest{Args: []string{"sh", "-c", "touch pwned"}, Env: map[string]string{"LD_PRELOAD": "./evil.so"}})
	if res.GetError().GetCode() != pb.ErrorCode_ENV_REFUSED || !strings.Contains(res.GetError().GetMessage(), "LD_PRELOAD") {
		t.Fatalf("LD_PRELOAD: %v", res.GetError())
	}
	res = run(&pb.JobRequest{Args: []string{"sh", "-c", "setsid sleep 765432 </dev/null >/dev/null 2>&1 & cat ../../identity.key; cat " +
		filepath.Join(data, "identity.key") + "; echo $SEED"}, Env: map[string]string{"SEED": "7"}})
	if res.Error != nil || string(res.Stdout) != "7\n" {
		t.Fatalf("err %v stdout %q (the identity key must stay unreadable)", res.Error, res.Stdout)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		alive := false
		for _, p := range procs {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), "765432") {
				alive = true
			}
		}
		if !alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the setsid'd sleeper outlived its job")
		}
		time.Sleep(10 * time.Millisecond) // polled with a deadline: reaping is asynchronous
	}
	if res := run(&pb.JobRequest{Args: []string{"sh", "-c", "echo fine"}}); res.Error != nil || string(res.Stdout) != "fine\n" {
		t.Fatalf("next job: %v %q", res.Error, res.Stdout)
	}
	ents, err := os.ReadDir(filepath.Join(data, "jobs", "exec"))
	if err != nil || len(ents) != 0 {
		t.Fatalf("<data-dir>/jobs/exec: %v %v", ents, err)
	}
}

// TestHostileWorkerKilledMidJob: the worker binary SIGKILLed while an exec
// job runs (as root: its tmpfs mounted under <data-dir>/jobs/exec) must
// take the job's processes with it and start again on the same data dir,
// leaving no job directory or mount behind. It used to refuse to start
// (EBUSY removing the mountpoint).
func TestHostileWorkerKilledMidJob(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: this test must exercise the root path")
		}
		t.Skip("needs root (tmpfs job directories); run it as root, as CI does")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // if it failed: t.TempDir cannot remove a mountpoint
		left, _ := filepath.Glob(filepath.Join(data, "jobs", "exec", "*"))
		for _, p := range left {
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
		}
	})
	cfg := "worker:\n  executors: [exec]\n  exec_allow: {sh: /bin/sh}\n"
	if err := os.WriteFile(filepath.Join(data, "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() (*exec.Cmd, chan error, *bytes.Buffer, Ready) {
		ready := filepath.Join(dir, "ready.json")
		_ = os.Remove(ready)
		cmd := exec.Command(binary(t), "--role", "worker", "--data-dir", data, "--listen", "/ip4/127.0.0.1/tcp/0",
			"--ready-file", ready, "--log-level", "warn")
		out := &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var r Ready
		deadline := time.Now().Add(30 * time.Second)
		for {
			if b, err := os.ReadFile(ready); err == nil && json.Unmarshal(b, &r) == nil {
				return cmd, done, out, r
			}
			select {
			case err := <-done:
				t.Fatalf("worker exited: %v\n%s", err, out.String())
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("worker not ready:\n%s", out.String())
			}
		}
	}
	cmd, done, _, r := start()
	wid, err := peer.Decode(r.PeerID)
	if err != nil {
		t.Fatal(err)
	}
	ai := peer.AddrInfo{ID: wid}
	for _, a := range r.Addrs {
		ai.Addrs = append(ai.Addrs, ma.StringCast(a))
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.Connect(ctx, ai); err != nil {
		t.Fatal(err)
	}
	var resp pb.BidResponse
	if _, err := protocols.Call(ctx, h, wid, protocols.BidVersions, protocols.Exchange{Max: protocols.MaxBidMsg, Timeout: protocols.BidTimeout},
		&pb.BidRequest{SeriesId: "hostile", JobCount: 1, Executor: "exec"}, &resp); err != nil || resp.Decline != nil {
		t.Fatalf("bid: %v %v", err, resp.Decline)
	}
	b, _, err := protocols.VerifyBid(resp.Bid)
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.NewStream(ctx, wid, protocols.Job)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	req := &pb.JobRequest{Seq: 1, SeriesId: "hostile", JobId: "j1", Executor: "exec", ModuleHash: make([]byte, 32),
		BidId: b.BidId, Price: b.PricePerJob, Args: []string{"sh", "-c", "echo x > f; setsid sleep 765434 </dev/null >/dev/null 2>&1 & sleep 765435"}}
	if err := protocols.NewWriter(st, protocols.MaxJobMsg).Write(&pb.JobStreamMsg{Msg: &pb.JobStreamMsg_Job{Job: req}}); err != nil {
		t.Fatal(err)
	}
	alive := func(marker string) bool {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), marker) {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(10 * time.Second)
	for !alive("765434") || !alive("765435") {
		if time.Now().After(deadline) {
			t.Fatal("the job never started")
		}
		time.Sleep(10 * time.Millisecond) // polled with a deadline: the job starts asynchronously
	}
	_ = cmd.Process.Kill()
	<-done
	deadline = time.Now().Add(5 * time.Second)
	for alive("765434") || alive("765435") {
		if time.Now().After(deadline) {
			t.Fatal("the job's processes outlived the killed worker")
		}
		time.Sleep(10 * time.Millisecond) // polled with a deadline: the kernel kills asynchronously
	}
	cmd, done, _, _ = start()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	ents, err := os.ReadDir(filepath.Join(data, "jobs", "exec"))
	if err != nil || len(ents) != 0 {
		t.Fatalf("<data-dir>/jobs/exec after the restart: %v %v", ents, err)
	}
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), filepath.Join(data, "jobs")) {
		t.Fatal("a job tmpfs is still mounted after the restart")
	}
}
