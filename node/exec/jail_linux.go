package exec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/landlock-lsm/go-landlock/landlock"
	"golang.org/x/sys/unix"
)

// JailArg, as the first argument, makes the p2pnode binary (or a test
// binary whose TestMain calls [MaybeRunJail]) run as the exec jail: the
// small init that the Exec executor starts for each job. Landlock and
// rlimits restrict the calling process, so they must be applied in a
// process of the job's own; this is it. It runs as the job's (unprivileged)
// user, in the job's cgroups and namespaces, as PID 1 of its own PID
// namespace where the kernel allows one, where it then becomes the
// program (so every process the job starts dies with it), and a child
// subreaper that outlives the program otherwise.
const JailArg = "__exec-jail"

// MaybeRunJail runs the jail and exits if this process was started as one
// (os.Args[1] == JailArg); otherwise it returns at once. Call it first in
// main, and in TestMain of packages whose tests run exec jobs.
func MaybeRunJail() {
	if len(os.Args) > 1 && os.Args[1] == JailArg {
		os.Exit(jailMain())
	}
}

// jailSpec is what the worker tells the jail, as JSON on fd 3. The jail
// reads it only after the worker moved it into the job's cgroups.
type jailSpec struct {
	Prog     string   // absolute program path
	Argv     []string // argv, argv[0] the allowlisted name
	Env      []string
	Dir      string   // working directory, the only writable place
	UID, GID int      // the job's user, when the jail starts as root; -1 keep
	ReadOnly []string // read-only (and executable) system directories
	Landlock bool
	Rlimits  map[int]uint64 // resource -> soft and hard limit
	// DropCaps: the jail is root of a user namespace of its own (a
	// worker that is not root); it keeps that root only to mount the
	// job's /proc, then drops every capability for good before the job.
	DropCaps bool
}

// Exit codes of the jail itself (the job's own code passes through).
const (
	jailSetupFailed = 125
)

func jailMain() int {
	specF := os.NewFile(3, "spec")
	status := os.NewFile(4, "status")
	if specF == nil || status == nil {
		fmt.Fprintln(os.Stderr, "p2pnode: "+JailArg+" is started by the worker, not by hand")
		return jailSetupFailed
	}
	fail := func(err error) int {
		fmt.Fprintf(status, "%v", err)
		status.Close()
		return jailSetupFailed
	}
	var sp jailSpec
	if err := json.NewDecoder(io.LimitReader(specF, 1<<20)).Decode(&sp); err != nil {
		return fail(fmt.Errorf("jail: spec: %w", err))
	}
	specF.Close()
	if os.Getpid() == 1 {
		// A PID namespace needs its own /proc (in its own mount
		// namespace): the host's shows other processes, and Landlock's
		// all-threads restriction looks for our threads under
		// /proc/<getpid()>.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fail(fmt.Errorf("jail: private mounts: %w", err))
		}
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fail(fmt.Errorf("jail: mount /proc: %w", err))
		}
	}
	// Orphans of the job become ours (when we are not already PID 1), and
	// we die with the worker.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0)
	for res, v := range sp.Rlimits {
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: v, Max: v}); err != nil {
			return fail(fmt.Errorf("jail: rlimit %d: %w", res, err))
		}
	}
	// Enter the job directory while still root: the path to it (the data
	// dir) need not be reachable by the job's user.
	if err := os.Chdir(sp.Dir); err != nil {
		return fail(fmt.Errorf("jail: %w", err))
	}
	if sp.Landlock {
		rules := []landlock.Rule{
			landlock.RODirs(sp.ReadOnly...).IgnoreIfMissing(),
			landlock.ROFiles(sp.Prog),
			landlock.RWDirs(sp.Dir),
			landlock.RWFiles("/dev/null").IgnoreIfMissing(),
			landlock.ROFiles("/dev/zero", "/dev/urandom", "/dev/random").IgnoreIfMissing(),
		}
		// Best effort: each kernel enforces what its Landlock ABI knows
		// (paths from v1, TCP from v4, scoped signals and sockets from v6).
		if err := landlock.V7.BestEffort().Restrict(rules...); err != nil {
			return fail(fmt.Errorf("jail: landlock: %w", err))
		}
	}
	if sp.DropCaps {
		if err := dropCapabilities(); err != nil {
			return fail(fmt.Errorf("jail: drop capabilities: %w", err))
		}
	}
	if sp.UID >= 0 {
		// Drop to the job's user after Landlock (which no_new_privs and
		// the lost privileges cannot undo) and before the job's code.
		if err := syscall.Setgroups(nil); err != nil {
			return fail(fmt.Errorf("jail: setgroups: %w", err))
		}
		if err := syscall.Setresgid(sp.GID, sp.GID, sp.GID); err != nil {
			return fail(fmt.Errorf("jail: setgid: %w", err))
		}
		if err := syscall.Setresuid(sp.UID, sp.UID, sp.UID); err != nil {
			return fail(fmt.Errorf("jail: setuid: %w", err))
		}
		// A change of credentials clears the parent-death signal.
		_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0)
	}
	if os.Getpid() == 1 {
		// PID 1 of the job's namespace: become the program. When it
		// exits, the kernel kills every other process in the namespace,
		// and the jail's own memory is not held for the job's life.
		unix.CloseOnExec(4) // EOF to the worker once the program runs
		err := syscall.Exec(sp.Prog, sp.Argv, sp.Env)
		return fail(fmt.Errorf("jail: exec %s: %w", sp.Argv[0], err))
	}
	// No PID namespace: stay as the program's parent, a subreaper that
	// kills what the program leaves behind.
	cmd := osexec.Command(sp.Prog)
	cmd.Args = sp.Argv
	cmd.Env = sp.Env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// The program dies with the jail, as the jail dies with the worker:
	// else a worker killed mid-job (no timeout left to kill it) leaves
	// the program running for ever. (What the program itself forks does
	// not inherit this; only cgroups or a PID namespace catch those.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("jail: start %s: %w", sp.Argv[0], err))
	}
	status.Close() // EOF with nothing written: the job runs
	err := cmd.Wait()
	killChildren()
	var ee *osexec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		return jailSetupFailed
	}
	return 0
}

// killChildren ends what the job left behind before the jail exits. As
// PID 1 of a namespace the kernel does it when we exit; as a subreaper the
// job's orphans are our children, re-parented to us.
func killChildren() {
	for range 1000 {
		kids := children()
		if len(kids) == 0 {
			return
		}
		for _, p := range kids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		for _, p := range kids {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(p, &ws, 0, nil)
		}
	}
}

func children() []int {
	self := os.Getpid()
	tasks, _ := os.ReadDir("/proc/self/task")
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(self) + "/task/" + t.Name() + "/children")
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				out = append(out, p)
			}
		}
	}
	return out
}

// dropCapabilities makes the jail, root of its own user namespace, an
// ordinary process for good: securebits so that uid 0 gains nothing at
// exec (and cannot undo it), no capability in the bounding, ambient,
// effective, permitted or inheritable sets.
func dropCapabilities() error {
	const (
		secbitNoroot, secbitNorootLocked            = 1 << 0, 1 << 1
		secbitNoSetuidFixup, secbitNoSetuidLocked   = 1 << 2, 1 << 3
		secbitKeepCapsLocked                        = 1 << 5
		secbitNoAmbientRaise, secbitNoAmbientLocked = 1 << 6, 1 << 7
	)
	bits := secbitNoroot | secbitNorootLocked | secbitNoSetuidFixup | secbitNoSetuidLocked |
		secbitKeepCapsLocked | secbitNoAmbientRaise | secbitNoAmbientLocked
	if err := unix.Prctl(unix.PR_SET_SECUREBITS, uintptr(bits), 0, 0, 0); err != nil {
		return fmt.Errorf("securebits: %w", err)
	}
	for c := 0; c <= unix.CAP_LAST_CAP+24; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("bounding set: %w", err)
		}
	}
	_ = unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
	var data [2]unix.CapUserData
	if err := unix.Capset(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}
