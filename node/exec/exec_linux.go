//go:build linux

package exec

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	osexec "os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"

	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

var _ Executor = (*Exec)(nil)

// ExecOption configures NewExec.
type ExecOption func(*Exec)

// WithExecDefaultTimeout sets the wall-clock limit of jobs that leave it at zero.
func WithExecDefaultTimeout(d time.Duration) ExecOption { return func(e *Exec) { e.timeout = d } }

// WithExecScratchDir puts job working directories under dir (normally
// <data-dir>/jobs). NewExec empties it: what is there is a crashed
// worker's leftovers.
func WithExecScratchDir(dir string) ExecOption { return func(e *Exec) { e.scratch = dir } }

// WithExecDefaultMaxOutput sets the output cap of jobs that leave it at zero.
func WithExecDefaultMaxOutput(n uint64) ExecOption { return func(e *Exec) { e.maxOutput = n } }

// WithExecDefaults sets the memory, disk (bytes and files) and process
// limits of jobs that leave them at zero.
func WithExecDefaults(memory, disk uint64, files, procs int) ExecOption {
	return func(e *Exec) { e.memory, e.disk, e.maxFiles, e.maxProcs = memory, disk, files, procs }
}

// WithExecEnv lists the environment variable names jobs may set
// (worker.exec_env). Loader and path variables are refused by NewExec.
func WithExecEnv(names ...string) ExecOption {
	return func(e *Exec) { e.envNames = append(e.envNames, names...) }
}

// WithExecUser runs jobs as uid:gid when the worker is root (default: the
// user "nobody", else 65534:65534).
func WithExecUser(uid, gid int) ExecOption { return func(e *Exec) { e.uid, e.gid = uid, gid } }

// WithJailHelper sets the binary started as the jail (default: this
// process's own executable, which must call [MaybeRunJail] first thing).
func WithJailHelper(path string) ExecOption { return func(e *Exec) { e.helper = path } }

// readOnlySystem are the directories a job may read and execute from:
// programs, libraries and the system's configuration. Nothing else of the
// host is visible through Landlock (the data dir and identity key are not).
// /proc is added when the job has its own PID namespace (and so its own
// /proc, showing only its processes).
var readOnlySystem = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/sys/devices/system/cpu"}

// Exec runs programs from the operator's allowlist. Each job gets:
//   - a fresh directory under the scratch dir, a tmpfs sized to the job's
//     disk quota (bytes and inodes) when the worker is root;
//   - its own cgroups (memory, pids, cpu; v2 where its controllers are
//     enabled, v1 otherwise), killed whole at the end;
//   - its own PID, mount (for its /proc), network, IPC and UTS namespaces (no network at all;
//     every process dies with the jail, PID 1);
//   - an unprivileged user when the worker is root;
//   - Landlock: read-only system paths, read-write only the job directory;
//   - rlimits (core, open files, file size, CPU time, and memory and
//     processes where no cgroup limits them);
//   - an environment of PATH, HOME and TMPDIR plus only the variables the
//     operator allows (never loader or path variables).
//
// Job.Args[0] names the program; ModuleHash is unused.
type Exec struct {
	allow     map[string]string
	envAllow  map[string]bool
	envNames  []string
	timeout   time.Duration
	maxOutput uint64
	memory    uint64
	disk      uint64
	maxFiles  int
	maxProcs  int
	scratch   string
	helper    string
	uid, gid  int

	// fallback makes the executor behave as on a machine without cgroups,
	// Landlock, namespaces or root (tests of the weaker path on a machine
	// that has them all).
	fallback bool

	root     bool
	landlock bool
	cg       *cgroups
	nsMu     sync.Mutex
	nsFlags  uintptr // guarded by nsMu: namespaces that worked (probed at first run)
	nsProbed bool    // guarded by nsMu
}

// NewExec creates an exec executor for allow (name -> absolute program path).
func NewExec(allow map[string]string, opts ...ExecOption) (*Exec, error) {
	e := &Exec{allow: make(map[string]string, len(allow)), envAllow: map[string]bool{},
		timeout: DefaultTimeout, maxOutput: DefaultMaxOutputBytes, memory: DefaultMemoryBytes,
		disk: DefaultDiskBytes, maxFiles: DefaultMaxFiles, maxProcs: DefaultMaxProcs, uid: -1, gid: -1}
	for name, p := range allow {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("exec: allowlisted program %q: path %q is not absolute", name, p)
		}
		e.allow[name] = p
	}
	for _, o := range opts {
		o(e)
	}
	if err := CheckExecEnvAllow(e.envNames); err != nil {
		return nil, err
	}
	for _, n := range e.envNames {
		e.envAllow[n] = true
	}
	if e.helper == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("exec: the jail helper is this binary: %w", err)
		}
		e.helper = self
	}
	if e.scratch == "" {
		// A directory of our own: emptying a shared one would remove
		// another executor's running jobs.
		d, err := os.MkdirTemp("", "p2pnode-exec-")
		if err != nil {
			return nil, fmt.Errorf("exec: %w", err)
		}
		e.scratch = d
	}
	abs, err := filepath.Abs(e.scratch)
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	e.scratch = abs
	if err := CleanJobDirs(e.scratch); err != nil {
		return nil, err
	}
	e.root = os.Geteuid() == 0 && !e.fallback
	if e.root && e.uid < 0 {
		e.uid, e.gid = 65534, 65534
		if u, err := user.Lookup("nobody"); err == nil {
			e.uid, _ = strconv.Atoi(u.Uid)
			e.gid, _ = strconv.Atoi(u.Gid)
		}
	}
	if v, err := llsys.LandlockGetABIVersion(); err == nil && v >= 1 && !e.fallback {
		e.landlock = true
	}
	if e.fallback {
		e.cg = &cgroups{describe: "no cgroups (rlimits only)"}
		e.nsProbed = true // no namespaces
		return e, nil
	}
	owner := sha256.Sum256([]byte(e.scratch))
	e.cg = detectCgroups(hex.EncodeToString(owner[:4]))
	return e, nil
}

// Isolation describes what this machine lets the executor enforce, for
// the worker's log and `p2pnode status`.
func (e *Exec) Isolation() string {
	var parts []string
	parts = append(parts, e.cg.describe)
	if e.landlock {
		v, _ := llsys.LandlockGetABIVersion()
		parts = append(parts, fmt.Sprintf("landlock ABI %d", v))
	} else {
		parts = append(parts, "no landlock")
	}
	if e.root {
		parts = append(parts, fmt.Sprintf("uid %d, tmpfs disk quota", e.uid))
	} else {
		parts = append(parts, "worker's own uid, disk quota by polling")
	}
	return strings.Join(parts, "; ")
}

// CleanJobDirs empties dir (creating it if needed): unmounts the tmpfs
// of each job a crashed worker left and removes everything in it.
func CleanJobDirs(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("exec: job directory: %w", err)
	}
	unmountUnder(dir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("exec: job directory: %w", err)
	}
	var errs []error
	for _, en := range ents {
		p := filepath.Join(dir, en.Name())
		_ = unix.Unmount(p, unix.MNT_DETACH)
		if err := removeAllForced(p); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("exec: clean job directory: %w", errors.Join(errs...))
	}
	return nil
}

// unmountUnder detaches every mount below dir, deepest first: a worker
// killed mid-job leaves its jobs' tmpfs mounted, and the node empties
// <data-dir>/jobs, a level above them, where removing a mountpoint
// fails (EBUSY) and the worker would not start.
func unmountUnder(dir string) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	unescape := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if mp := unescape.Replace(f[4]); strings.HasPrefix(mp, real+"/") {
			mounts = append(mounts, mp)
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, mp := range mounts {
		_ = unix.Unmount(mp, unix.MNT_DETACH)
	}
}

// Name implements Executor.
func (e *Exec) Name() string { return "exec" }

// HasModule implements Executor: programs need no module.
func (e *Exec) HasModule([32]byte) bool { return true }

// AddModule implements Executor as a no-op.
func (e *Exec) AddModule(context.Context, []byte) ([32]byte, error) { return [32]byte{}, nil }

// Close implements Executor.
func (e *Exec) Close(context.Context) error { return nil }

var (
	errMemoryLimit = protocols.Errorf(pb.ErrorCode_JOB_MEMORY, "exec: the job went over its memory limit and was killed")
	errPidsLimit   = protocols.Errorf(pb.ErrorCode_JOB_PIDS, "exec: the job tried to start more processes than allowed")
)

// Run implements Executor.
func (e *Exec) Run(ctx context.Context, job Job) (Result, error) {
	start := time.Now()
	if len(job.Args) == 0 {
		return Result{}, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "exec: no program named (Args[0])")
	}
	prog, ok := e.allow[job.Args[0]]
	if !ok {
		return Result{}, protocols.Errorf(pb.ErrorCode_EXECUTOR_MISSING, "exec: program %q is not allowlisted", job.Args[0])
	}
	if err := validateFiles(&job); err != nil {
		return Result{}, err
	}
	for _, a := range job.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return Result{}, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "exec: argument contains NUL")
		}
	}
	env, err := execEnv(e.envAllow, []string{"PATH=/usr/bin:/bin", "HOME=.", "TMPDIR=."}, job.Env)
	if err != nil {
		return Result{}, err
	}
	timeout := job.Timeout
	if timeout <= 0 {
		timeout = e.timeout
	}
	maxOut := cmp.Or(job.MaxOutputBytes, e.maxOutput)
	memory := cmp.Or(job.MemoryBytes, e.memory)
	job.DiskBytes = cmp.Or(job.DiskBytes, e.disk)
	job.MaxFiles = cmp.Or(job.MaxFiles, e.maxFiles)
	if err := checkInputsFit(&job); err != nil {
		return Result{}, err
	}

	var idb [8]byte
	_, _ = rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	dir := filepath.Join(e.scratch, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return Result{}, protocols.Errorf(pb.ErrorCode_INTERNAL, "exec: %v", err)
	}
	mounted := false
	defer func() {
		if mounted {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
		removeDir(dir)
	}()
	if e.root {
		// The job's disk is a tmpfs of exactly its quota: the kernel
		// refuses the byte or inode past it (ENOSPC).
		opts := fmt.Sprintf("size=%d,nr_inodes=%d,mode=0700,uid=%d,gid=%d", job.DiskBytes, job.MaxFiles+1, e.uid, e.gid)
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
			return Result{}, protocols.Errorf(pb.ErrorCode_INTERNAL, "exec: job tmpfs: %v", err)
		}
		mounted = true
	}
	if err := writeInputs(dir, &job, e.uid, e.gid); err != nil {
		return Result{}, err
	}

	limits := jobLimits{memory: memory, pids: e.maxProcs, cpus: 1}
	if mounted {
		limits.memory += job.DiskBytes // tmpfs pages are charged to the writer's memory cgroup
	}
	cg, err := e.cg.create(id, limits)
	if err != nil {
		return Result{}, protocols.Errorf(pb.ErrorCode_INTERNAL, "%v", err)
	}
	defer cg.remove()

	runCtx, cancelTimeout := context.WithTimeoutCause(ctx, timeout, errJobTimeout)
	defer cancelTimeout()
	runCtx, cancel := context.WithCancelCause(runCtx)
	defer cancel(nil)
	budget := &outputBudget{left: maxOut, cancel: cancel}
	stdout := &cappedWriter{budget: budget}
	stderr := &cappedWriter{budget: budget}

	rl := map[int]uint64{
		unix.RLIMIT_CORE:   0,
		unix.RLIMIT_NOFILE: 1024,
		unix.RLIMIT_FSIZE:  job.DiskBytes + 1, // one byte over, so a file stopped by it shows as over quota
		unix.RLIMIT_CPU:    uint64(timeout/time.Second) + 2,
	}
	if !cg.has("memory") {
		rl[unix.RLIMIT_AS] = memory + 64<<20 // address space: weaker, counts reservations too
	}
	if !cg.has("pids") {
		rl[unix.RLIMIT_NPROC] = uint64(e.maxProcs) // per user, not per job: weaker
	}
	spec := jailSpec{Prog: prog, Argv: job.Args, Env: env, Dir: dir, ReadOnly: readOnlySystem,
		Landlock: e.landlock, Rlimits: rl, UID: -1, GID: -1}
	if e.root {
		spec.UID, spec.GID = e.uid, e.gid
	}

	stopWatch := func() {}
	if !mounted {
		// No tmpfs: watch the directory's size instead (weaker: a burst
		// between two looks gets through, up to RLIMIT_FSIZE per file).
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			watchDisk(runCtx, stop, dir, int64(job.DiskBytes), job.MaxFiles, cancel)
		}()
		stopWatch = func() { close(stop); <-done }
	}
	code, err := e.runJail(runCtx, cg, spec, job.Stdin, stdout, stderr)
	stopWatch() // before the directory is read back and removed
	res := Result{Stdout: stdout.buf, Stderr: stderr.buf, ExitCode: code}
	cg.kill() // whatever is left, before outputs are read
	// Typed causes, most specific first.
	switch cause := context.Cause(runCtx); {
	case cg.oomKilled():
		err = errMemoryLimit
	case cause == error(errOutputTooLarge) || cause == error(errDiskQuota):
		err = cause
	case cg.pidsExhausted():
		err = errPidsLimit
	case mounted && diskFull(dir):
		err = errDiskQuota
	case !mounted && overQuota(dir, int64(job.DiskBytes), job.MaxFiles):
		err = errDiskQuota
	case cause != nil:
		var re *protocols.RemoteError
		if errors.As(cause, &re) {
			err = cause
		} else {
			err = fmt.Errorf("exec: run stopped: %w", cause)
		}
	}
	if err != nil {
		res.Duration = time.Since(start)
		return res, err
	}
	if name := undeclaredFile(dir, &job); name != "" {
		res.Duration = time.Since(start)
		return res, undeclaredErr(name)
	}
	res.Outputs, err = collectOutputs(dir, job.Outputs, budget.left, res.ExitCode)
	res.Duration = time.Since(start)
	return res, err
}

// runJail starts the jail for spec and waits for it. It returns the job's
// exit code, or an error if the jail could not start it.
func (e *Exec) runJail(ctx context.Context, cg *jobCgroup, spec jailSpec, stdin []byte, stdout, stderr io.Writer) (int32, error) {
	specR, specW, err := os.Pipe()
	if err != nil {
		return 0, protocols.Errorf(pb.ErrorCode_INTERNAL, "exec: %v", err)
	}
	defer specR.Close()
	defer specW.Close()
	statR, statW, err := os.Pipe()
	if err != nil {
		return 0, protocols.Errorf(pb.ErrorCode_INTERNAL, "exec: %v", err)
	}
	defer statR.Close()
	defer statW.Close()

	start := func(flags uintptr) (*osexec.Cmd, error) {
		cmd := osexec.Command(e.helper, JailArg)
		cmd.Env = []string{}
		cmd.Stdin = bytes.NewReader(stdin)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		cmd.ExtraFiles = []*os.File{specR, statW}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Cloneflags: flags}
		if flags&syscall.CLONE_NEWUSER != 0 {
			// Root inside (our own uid outside): mounting the job's
			// /proc needs it, and a non-zero uid loses every
			// capability at the jail's exec, so the jail could not set
			// itself up and every job failed. The jail drops that root
			// before the program (DropCaps).
			cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
			cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
		}
		cmd.WaitDelay = time.Second // grandchildren holding the pipes open
		return cmd, cmd.Start()
	}
	e.nsMu.Lock()
	flags, probed := e.nsFlags, e.nsProbed
	e.nsMu.Unlock()
	if !probed {
		// The namespaces this machine allows: as root all four; as
		// another user, inside a user namespace if permitted; else none.
		flags = syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS
		if !e.root {
			flags |= syscall.CLONE_NEWUSER
		}
	}
	cmd, err := start(flags)
	if err != nil && !probed && flags != 0 {
		flags = 0
		cmd, err = start(0)
	}
	if err != nil {
		return 0, protocols.Errorf(pb.ErrorCode_INTERNAL, "exec: start jail: %v", err)
	}
	if !probed {
		e.nsMu.Lock()
		e.nsFlags, e.nsProbed = flags, true
		e.nsMu.Unlock()
	}
	specR.Close()
	statW.Close()
	spec.DropCaps = flags&syscall.CLONE_NEWUSER != 0
	if flags&syscall.CLONE_NEWPID != 0 {
		spec.ReadOnly = append(slices.Clip(spec.ReadOnly), "/proc")
	}
	pid := cmd.Process.Pid
	killAll := func() {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Process.Kill()
		cg.kill()
	}
	waited := make(chan error, 1)
	if err := cg.join(pid); err != nil {
		killAll()
		_ = cmd.Wait()
		return 0, protocols.Errorf(pb.ErrorCode_INTERNAL, "%v", err)
	}
	if err := json.NewEncoder(specW).Encode(spec); err != nil {
		killAll()
		_ = cmd.Wait()
		return 0, protocols.Errorf(pb.ErrorCode_INTERNAL, "exec: jail spec: %v", err)
	}
	specW.Close()
	go func() { waited <- cmd.Wait() }()
	stop := context.AfterFunc(ctx, killAll)
	defer stop()
	msg, _ := io.ReadAll(io.LimitReader(statR, 4096))
	err = <-waited
	if len(msg) > 0 && ctx.Err() == nil {
		return 0, protocols.Errorf(pb.ErrorCode_INTERNAL, "exec: %s", msg)
	}
	var ee *osexec.ExitError
	switch {
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int32(ws.Signal()), nil
		}
		return int32(ee.ExitCode()), nil
	case err != nil && ctx.Err() == nil:
		return 0, protocols.Errorf(pb.ErrorCode_INTERNAL, "exec: %v", err)
	}
	return 0, nil
}

// writeInputs writes the job's inputs into dir (through an os.Root) owned
// by uid:gid (when >= 0) so an unprivileged job can use them.
func writeInputs(dir string, job *Job, uid, gid int) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return protocols.Errorf(pb.ErrorCode_INTERNAL, "exec: %v", err)
	}
	defer root.Close()
	chown := func(name string) {
		if uid >= 0 {
			_ = root.Lchown(name, uid, gid)
		}
	}
	chown(".")
	for _, f := range job.Inputs {
		if d := filepath.Dir(f.Name); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "exec: input %q: %v", f.Name, err)
			}
			for p := d; p != "."; p = filepath.Dir(p) {
				chown(p)
			}
		}
		if err := root.WriteFile(f.Name, f.Data, 0o644); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return errDiskQuota
			}
			return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "exec: input %q: %v", f.Name, err)
		}
		chown(f.Name)
	}
	return nil
}

// diskFull reports whether the job's tmpfs ran out of bytes or inodes.
func diskFull(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Bavail == 0 || st.Ffree == 0
}

// watchDisk polls dir's size and file count and stops the run with
// errDiskQuota when either goes over.
// It returns when ctx ends or stop is closed.
func watchDisk(ctx context.Context, stop <-chan struct{}, dir string, maxBytes int64, maxFiles int, cancel context.CancelCauseFunc) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-t.C:
		}
		if overQuota(dir, maxBytes, maxFiles) {
			cancel(errDiskQuota)
			return
		}
	}
}

// overQuota measures dir: more than maxBytes in regular files, or more
// than maxFiles entries (dir itself not counted).
func overQuota(dir string, maxBytes int64, maxFiles int) bool {
	var bytes int64
	files := 0
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		files++
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			bytes += info.Size()
		}
		if bytes > maxBytes || files > maxFiles+1 {
			return filepath.SkipAll
		}
		return nil
	})
	return bytes > maxBytes || files > maxFiles+1
}

// undeclaredFile names a file the program left in dir that is neither an
// input nor a declared output ("" if none): a native program cannot be
// stopped at the write, as a WASM guest is (outputGuard), so it is caught
// after the run, with the same message.
func undeclaredFile(dir string, job *Job) string {
	known := map[string]bool{}
	for _, f := range job.Inputs {
		known[f.Name] = true
	}
	for _, o := range job.Outputs {
		known[o] = true
	}
	var found string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, rerr := filepath.Rel(dir, p)
		if rerr == nil && !known[filepath.ToSlash(rel)] {
			found = filepath.ToSlash(rel)
			return filepath.SkipAll
		}
		return nil
	})
	return found
}
