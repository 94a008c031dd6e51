//go:build linux

package exec

import (
	"context"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

// TestHostileJobTakesAwayItsDirRights: a job on a worker that is not root
// runs as the worker's own user, so it can chmod its directories to 0500
// or 0; the worker, also not root, then could not remove them: the files
// stayed under <data-dir>/jobs and, at the next start, CleanJobDirs failed
// and the worker refused to start. As root (CI) the test re-runs itself as
// the user nobody, the case it is about.
func TestHostileJobTakesAwayItsDirRights(t *testing.T) {
	if os.Geteuid() == 0 {
		runAsNobody(t, "^TestHostileJobTakesAwayItsDirRights$")
		return
	}
	scratch, err := os.MkdirTemp("", "p2pnode-hostile-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = removeAllForced(scratch) })
	e, err := NewExec(map[string]string{"sh": "/bin/sh"}, WithExecScratchDir(scratch))
	if err != nil {
		t.Fatal(err)
	}
	for _, script := range []string{
		"mkdir d && echo x > d/f && chmod 500 d && echo ran",
		"mkdir -p d/e && echo x > d/e/f && chmod 0 d/e d && echo ran",
		"echo x > d; chmod 0 . && echo ran",
		// Root of its user namespace only to set up: none of it for the job.
		"grep -q '^CapEff:.0000000000000000$' /proc/self/status && grep -q '^CapBnd:.0000000000000000$' /proc/self/status && echo ran",
	} {
		res, err := e.Run(context.Background(), Job{Args: []string{"sh", "-c", script}, Outputs: []string{"d"}})
		t.Logf("%s: exit %d err %v stderr %q", script, res.ExitCode, err, res.Stderr)
		if string(res.Stdout) != "ran\n" {
			t.Fatalf("%s: the job did not run: %v", script, err)
		}
		if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
			t.Fatalf("%s: job directory left behind: %v", script, ents)
		}
	}
	// A crash's leftovers with the same trick must not stop the next start.
	left := filepath.Join(scratch, "crashed", "d")
	if err := os.MkdirAll(left, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(left, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(left, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := NewExec(map[string]string{"sh": "/bin/sh"}, WithExecScratchDir(scratch)); err != nil {
		t.Fatalf("restart over a crashed job's unreadable directory: %v", err)
	}
	if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
		t.Fatalf("crash leftovers remain: %v", ents)
	}
}

// runAsNobody runs the test named by run in a copy of this test binary as
// the user nobody (65534), and fails if it fails.
func runAsNobody(t *testing.T, run string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The go-build directory is not reachable by nobody: copy the binary
	// (it is also the jail helper) to a directory that is.
	dir, err := os.MkdirTemp("", "p2pnode-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "exec.test")
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(dst, src)
	src.Close()
	if cerr := dst.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	cmd := osexec.Command(bin, "-test.run", run, "-test.v")
	cmd.Env = []string{"TMPDIR=/tmp", "PATH=/usr/bin:/bin"}
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	t.Logf("as nobody:\n%s", out)
	if err != nil {
		t.Fatalf("as nobody: %v", err)
	}
}

// TestHostileJobOutlivesDeadWorker: where the machine allows no namespaces
// (and no cgroups), the jail is the program's parent, and dies with the
// worker (parent-death signal). The program must die with the jail, or a
// worker killed mid-job (SIGKILL, OOM, crash) leaves it running forever.
func TestHostileJobOutlivesDeadWorker(t *testing.T) {
	e, err := NewExec(map[string]string{"sh": "/bin/sh"}, WithExecScratchDir(t.TempDir()),
		func(e *Exec) { e.fallback = true })
	if err != nil {
		t.Fatal(err)
	}
	const marker = "876545"
	done := make(chan error, 1)
	go func() {
		_, err := e.Run(context.Background(), Job{Args: []string{"sh", "-c", "exec sleep " + marker}, Timeout: 20 * time.Second})
		done <- err
	}()
	sleeper := 0
	deadline := time.Now().Add(10 * time.Second)
	for sleeper == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the job never started")
		}
		time.Sleep(10 * time.Millisecond) // polled with a deadline: the jail starts asynchronously
		sleeper = pidWithArg(marker)
	}
	// The worker's death reaches the jail as SIGKILL (Pdeathsig): do
	// the same to the jail.
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", sleeper))
	var jail int
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			jail, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if jail <= 1 {
		t.Fatalf("jail pid %d", jail)
	}
	if err := syscall.Kill(jail, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Not waiting for Run first: the worker's own timeout would kill
	// it, but a dead worker has no timeout.
	deadline = time.Now().Add(5 * time.Second)
	for sleeperAlive(marker) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(sleeper, syscall.SIGKILL)
			t.Fatal("the job's program outlived its jail")
		}
		time.Sleep(10 * time.Millisecond) // polled with a deadline: the kernel delivers asynchronously
	}
	<-done
}

func pidWithArg(marker string) int {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if strings.Contains(string(b), marker) && !strings.Contains(string(b), "sh\x00-c") {
			return pid
		}
	}
	return 0
}

// TestHostileModuleFloodFillsDiskCache: any peer may push modules on a
// job stream, without a bid or a point paid. Each distinct module was
// compiled into the on-disk compilation cache (<data-dir>/modules) and
// never removed, while the in-memory cache evicted it: a stranger pushing
// modules that differ by a byte filled the worker's disk. The disk cache
// now keeps no more modules than the memory one.
func TestHostileModuleFloodFillsDiskCache(t *testing.T) {
	dir := t.TempDir()
	const keep = 2
	w, err := NewWasm(WithCacheDir(dir), WithMaxModules(keep))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	for i := range 12 {
		// The same code with a custom section naming i: a new module.
		mod := append(append([]byte{}, wasm.Trivial...), 0x00, 0x03, 0x01, 'x', byte(i))
		if _, err := w.AddModule(context.Background(), mod); err != nil {
			t.Fatal(err)
		}
	}
	files := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files++
		}
		return nil
	})
	if files > keep {
		t.Fatalf("%d compiled modules on disk after 12 pushed, keeping %d in memory: the disk cache grows without bound", files, keep)
	}
}

// TestHostileCrashLeavesMountedJobDir: a worker killed mid-job (as root)
// leaves the job's tmpfs mounted at <data-dir>/jobs/exec/<job>. The node
// empties <data-dir>/jobs at start, one level above the mounts: a
// mountpoint cannot be removed (EBUSY), so the worker refused to start
// until the operator unmounted it by hand.
func TestHostileCrashLeavesMountedJobDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("job tmpfs mounts need root (CI is root)")
	}
	jobs := t.TempDir()
	left := filepath.Join(jobs, "exec", "deadbeef")
	if err := os.MkdirAll(left, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", left, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(left, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(left, "junk"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CleanJobDirs(jobs); err != nil {
		t.Fatalf("restart after a crash mid-job: %v", err)
	}
	if ents, _ := os.ReadDir(jobs); len(ents) != 0 {
		t.Fatalf("leftovers remain: %v", ents)
	}
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), left) {
		t.Fatal("leftover tmpfs still mounted")
	}
}
