//go:build linux

package exec

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

func newTestExec(t *testing.T) *Exec {
	t.Helper()
	allow := map[string]string{}
	for name, p := range map[string]string{"env": "/usr/bin/env", "cat": "/bin/cat", "sleep": "/bin/sleep", "cp": "/bin/cp"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not available", p)
		}
		allow[name] = p
	}
	e, err := NewExec(allow, WithExecEnv("A"), WithExecScratchDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestExecEnvScrubbed(t *testing.T) {
	e := newTestExec(t)
	t.Setenv("P2PNODE_SECRET", "leak")
	res, err := e.Run(context.Background(), Job{Args: []string{"env"}, Env: map[string]string{"A": "1"}})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("res %+v err %v", res, err)
	}
	got := strings.Fields(string(res.Stdout))
	slices.Sort(got)
	if !slices.Equal(got, []string{"A=1", "HOME=.", "PATH=/usr/bin:/bin", "TMPDIR=."}) {
		t.Fatalf("env %q", got)
	}
}

func TestExecInputsOutputs(t *testing.T) {
	e := newTestExec(t)
	ctx := context.Background()
	res, err := e.Run(ctx, Job{
		Args:    []string{"cp", "in/a.txt", "out.txt"},
		Inputs:  []File{{Name: "in/a.txt", Data: []byte("hello")}},
		Outputs: []string{"out.txt"},
	})
	if err != nil || len(res.Outputs) != 1 || string(res.Outputs[0].Data) != "hello" {
		t.Fatalf("res %+v err %v", res, err)
	}
	res, err = e.Run(ctx, Job{Args: []string{"cat"}, Stdin: []byte("piped")})
	if err != nil || string(res.Stdout) != "piped" {
		t.Fatalf("res %+v err %v", res, err)
	}
	res, err = e.Run(ctx, Job{Args: []string{"cat", "nope"}})
	if err != nil || res.ExitCode == 0 || len(res.Stderr) == 0 {
		t.Fatalf("res %+v err %v", res, err)
	}
	// Exit 0 without a declared output: the job is broken.
	_, err = e.Run(ctx, Job{Args: []string{"cat"}, Outputs: []string{"missing"}})
	if !errors.Is(err, protocols.Code(pb.ErrorCode_JOB_OUTPUT_MISSING)) {
		t.Fatalf("err %v", err)
	}
	// Non-zero exit without it: the exit code is the news, not the output.
	res, err = e.Run(ctx, Job{Args: []string{"cat", "x"}, Outputs: []string{"missing"}})
	if err != nil || res.ExitCode == 0 {
		t.Fatalf("res %+v err %v, want a non-zero exit and no error", res, err)
	}
	_, err = e.Run(ctx, Job{Args: []string{"cat"}, Inputs: []File{{Name: "../x"}}})
	if !errors.Is(err, protocols.Code(pb.ErrorCode_BAD_REQUEST)) {
		t.Fatalf("err %v", err)
	}
}

func TestExecTimeout(t *testing.T) {
	e := newTestExec(t)
	start := time.Now()
	_, err := e.Run(context.Background(), Job{Args: []string{"sleep", "30"}, Timeout: 300 * time.Millisecond})
	if !errors.Is(err, protocols.Code(pb.ErrorCode_JOB_TIMEOUT)) {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestExecOutputCap(t *testing.T) {
	e := newTestExec(t)
	_, err := e.Run(context.Background(), Job{Args: []string{"cat", "/dev/zero"}, MaxOutputBytes: 1 << 16})
	if !errors.Is(err, protocols.Code(pb.ErrorCode_JOB_OUTPUT_TOO_LARGE)) {
		t.Fatalf("err %v", err)
	}
}

func TestExecUnknownProgram(t *testing.T) {
	e := newTestExec(t)
	_, err := e.Run(context.Background(), Job{Args: []string{"rm", "-rf", "/"}})
	if !errors.Is(err, protocols.Code(pb.ErrorCode_EXECUTOR_MISSING)) {
		t.Fatalf("err %v", err)
	}
	if _, err := NewExec(map[string]string{"x": "relative/path"}); err == nil {
		t.Fatal("relative path accepted")
	}
}

// BenchmarkExecTrivial is the cost per job of the exec executor and its
// isolation: /bin/true in a fresh directory.
func BenchmarkExecTrivial(b *testing.B) {
	e, err := NewExec(map[string]string{"true": "/bin/true"}, WithExecScratchDir(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		if res, err := e.Run(ctx, Job{Args: []string{"true"}}); err != nil || res.ExitCode != 0 {
			b.Fatalf("res %+v err %v", res, err)
		}
	}
}

// TestExecCleansLeftoversAtStart: a worker killed mid-job leaves its job
// directory (a mounted tmpfs, as root) and its job cgroups; the next start
// removes them.
func TestExecCleansLeftoversAtStart(t *testing.T) {
	scratch := t.TempDir()
	left := filepath.Join(scratch, "deadbeef")
	if err := os.MkdirAll(left, 0o700); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	if root {
		if err := unix.Mount("tmpfs", left, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(left, "junk"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A leftover cgroup of this executor (same owner tag) and one of
	// another worker, which must be left alone.
	owner := sha256.Sum256([]byte(scratch))
	cg := detectCgroups(hex.EncodeToString(owner[:4]))
	var mine, theirs *jobCgroup
	if cg.v2 != "" || len(cg.v1) > 0 {
		var err error
		if mine, err = cg.create("crashed", jobLimits{memory: 1 << 20, pids: 4}); err != nil {
			t.Fatal(err)
		}
		other := detectCgroups("0ther000")
		if theirs, err = other.create("running", jobLimits{memory: 1 << 20, pids: 4}); err != nil {
			t.Fatal(err)
		}
		defer theirs.remove()
	} else if os.Getenv("CI") == "true" {
		t.Fatal("no writable cgroup hierarchy in CI")
	}
	if _, err := NewExec(map[string]string{"true": "/bin/true"}, WithExecScratchDir(scratch)); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
		t.Fatalf("leftovers remain: %v", ents)
	}
	if root {
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		if strings.Contains(string(mounts), left) {
			t.Fatal("leftover tmpfs still mounted")
		}
	}
	if mine != nil {
		for _, d := range mine.dirs {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Fatalf("leftover cgroup %s remains", d)
			}
		}
		for _, d := range theirs.dirs {
			if _, err := os.Stat(d); err != nil {
				t.Fatalf("another worker's cgroup %s was removed", d)
			}
		}
	}
}

// TestExecFallbackWithoutIsolation runs attacks against the executor as it
// behaves on a machine without cgroups, Landlock, namespaces or root
// (forced here, since CI has them all): the timeout, output cap, disk
// quota by measurement and RLIMIT_FSIZE, and the subreaper still hold.
// Fork and memory bombs are not tried: without cgroups they are limited
// only by RLIMIT_NPROC and RLIMIT_AS, which root ignores (see README).
func TestExecFallbackWithoutIsolation(t *testing.T) {
	scratch := t.TempDir()
	e, err := NewExec(map[string]string{"sh": "/bin/sh", "setsid": "/usr/bin/setsid"}, WithExecScratchDir(scratch),
		WithExecDefaults(32<<20, 1<<20, 64, 32), func(e *Exec) { e.fallback = true })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.Isolation(), "no cgroups") || !strings.Contains(e.Isolation(), "no landlock") {
		t.Fatalf("isolation %q", e.Isolation())
	}
	ctx := context.Background()
	run := func(script string, timeout time.Duration) (Result, error) {
		return e.Run(ctx, Job{Args: []string{"sh", "-c", script}, Timeout: timeout, MaxOutputBytes: 64 << 10})
	}
	if _, err := run("while :; do :; done", 300*time.Millisecond); !errors.Is(err, protocols.Code(pb.ErrorCode_JOB_TIMEOUT)) {
		t.Errorf("endless loop: %v", err)
	}
	if _, err := run("while :; do echo flood; done", 10*time.Second); !errors.Is(err, protocols.Code(pb.ErrorCode_JOB_OUTPUT_TOO_LARGE)) {
		t.Errorf("stdout flood: %v", err)
	}
	if _, err := run("dd if=/dev/zero of=fill bs=64k count=100", 10*time.Second); !errors.Is(err, protocols.Code(pb.ErrorCode_JOB_DISK_QUOTA)) {
		t.Errorf("disk fill: %v", err)
	}
	if _, err := run("i=0; while :; do : > f$i; i=$((i+1)); sleep 0.001; done", 10*time.Second); !errors.Is(err, protocols.Code(pb.ErrorCode_JOB_DISK_QUOTA)) {
		t.Errorf("many files: %v", err)
	}
	res, err := run("setsid sleep 876543 </dev/null >/dev/null 2>&1 & echo started", 10*time.Second)
	if err != nil || string(res.Stdout) != "started\n" {
		t.Fatalf("setsid: %v %q", err, res.Stdout)
	}
	deadline := time.Now().Add(5 * time.Second)
	for sleeperAlive("876543") {
		if time.Now().After(deadline) {
			t.Fatal("the setsid'd sleeper outlived its job")
		}
		time.Sleep(10 * time.Millisecond) // polled with a deadline: reaping is asynchronous
	}
	if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
		t.Fatalf("job directories left: %v", ents)
	}
}

func sleeperAlive(marker string) bool {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		b, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if strings.Contains(string(b), marker) {
			return true
		}
	}
	return false
}

// TestExecSeesOnlyItsOwnProcesses: in its PID namespace a job sees its own
// processes in /proc, not the worker's or anyone else's.
func TestExecSeesOnlyItsOwnProcesses(t *testing.T) {
	e, err := NewExec(map[string]string{"sh": "/bin/sh"}, WithExecScratchDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Run(context.Background(), Job{Args: []string{"sh", "-c", "cat /proc/self/stat >/dev/null && echo self-ok; ls /proc | grep -c '^[0-9]'"}})
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Fields(string(res.Stdout))
	if e.nsFlags&syscall.CLONE_NEWPID == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("no PID namespace in CI (root)")
		}
		t.Skip("no PID namespace on this machine: the job sees the host's /proc (README)")
	}
	if len(out) != 2 || out[0] != "self-ok" {
		t.Fatalf("stdout %q stderr %q", res.Stdout, res.Stderr)
	}
	// The jail, sh, ls and grep: a handful, not the host's hundreds.
	if n, _ := strconv.Atoi(out[1]); n == 0 || n > 6 {
		t.Fatalf("the job sees %d processes", n)
	}
}

// TestExecHardLinkedOutputRefused: the worker reads outputs with its own
// rights, so an output hard-linked to a host file (possible where the
// job's directory shares a filesystem with it) is refused.
func TestExecHardLinkedOutputRefused(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("SECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Link(secret, filepath.Join(dir, "out.txt")); err != nil {
		t.Skipf("no hard links across these directories: %v", err)
	}
	_, err := collectOutputs(dir, []string{"out.txt"}, 1<<20, 0)
	if !errors.Is(err, protocols.Code(pb.ErrorCode_JOB_OUTPUT_MISSING)) {
		t.Fatalf("%v, want JOB_OUTPUT_MISSING", err)
	}
}

// TestExecUndeclaredOutput: a native program that leaves a file it did not
// declare fails with the message the WASM executor gives: the file's name
// and the outputs: key.
func TestExecUndeclaredOutput(t *testing.T) {
	e := newTestExec(t)
	_, err := e.Run(context.Background(), Job{
		Args:    []string{"cp", "a.txt", "stray.txt"},
		Inputs:  []File{{Name: "a.txt", Data: []byte("x")}},
		Outputs: []string{"out.txt"},
	})
	if !errors.Is(err, protocols.Code(pb.ErrorCode_BAD_REQUEST)) || !strings.Contains(err.Error(), `"stray.txt"`) ||
		!strings.Contains(err.Error(), "outputs:") {
		t.Fatalf("err %v, want one naming stray.txt and outputs:", err)
	}
}
