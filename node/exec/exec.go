//go:build unix

package exec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

var _ Executor = (*Exec)(nil)

// ExecOption configures NewExec.
type ExecOption func(*Exec)

// WithExecDefaultTimeout sets the wall-clock limit of jobs that leave it at zero.
func WithExecDefaultTimeout(d time.Duration) ExecOption { return func(e *Exec) { e.timeout = d } }

// WithExecScratchDir puts job working directories under dir.
func WithExecScratchDir(dir string) ExecOption { return func(e *Exec) { e.scratch = dir } }

// WithExecDefaultMaxOutput sets the output cap of jobs that leave it at zero.
func WithExecDefaultMaxOutput(n uint64) ExecOption { return func(e *Exec) { e.maxOutput = n } }

// Exec runs programs from the operator's allowlist, each in a fresh working
// directory holding the job's inputs, in its own process group (killed
// whole at the timeout), with an environment of only Job.Env and
// PATH=/usr/bin:/bin. Job.Args[0] names the program; ModuleHash is unused.
// Job.MemoryBytes is not enforced here: the operator confines the worker
// (cgroups, systemd) if allowlisted programs need a memory cap.
type Exec struct {
	allow     map[string]string
	timeout   time.Duration
	maxOutput uint64
	scratch   string
}

// NewExec creates an exec executor for allow (name -> absolute program path).
func NewExec(allow map[string]string, opts ...ExecOption) (*Exec, error) {
	e := &Exec{allow: make(map[string]string, len(allow)), timeout: DefaultTimeout, maxOutput: DefaultMaxOutputBytes}
	for name, p := range allow {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("exec: allowlisted program %q: path %q is not absolute", name, p)
		}
		e.allow[name] = p
	}
	for _, o := range opts {
		o(e)
	}
	return e, nil
}

// Name implements Executor.
func (e *Exec) Name() string { return "exec" }

// HasModule implements Executor: programs need no module.
func (e *Exec) HasModule([32]byte) bool { return true }

// AddModule implements Executor as a no-op.
func (e *Exec) AddModule(context.Context, []byte) ([32]byte, error) { return [32]byte{}, nil }

// Close implements Executor.
func (e *Exec) Close(context.Context) error { return nil }

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
	env := []string{"PATH=/usr/bin:/bin"}
	for k, v := range job.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return Result{}, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "exec: bad environment variable %q", k)
		}
		env = append(env, k+"="+v)
	}
	timeout := job.Timeout
	if timeout <= 0 {
		timeout = e.timeout
	}
	maxOut := job.MaxOutputBytes
	if maxOut == 0 {
		maxOut = e.maxOutput
	}
	dir, err := prepareDir(e.scratch, &job)
	if err != nil {
		return Result{}, err
	}
	defer removeDir(dir)

	runCtx, cancelTimeout := context.WithTimeoutCause(ctx, timeout, errJobTimeout)
	defer cancelTimeout()
	runCtx, cancel := context.WithCancelCause(runCtx)
	defer cancel(nil)
	budget := &outputBudget{left: maxOut, cancel: cancel}
	stdout := &cappedWriter{budget: budget}
	stderr := &cappedWriter{budget: budget}

	cmd := osexec.CommandContext(runCtx, prog, job.Args[1:]...)
	cmd.Args[0] = job.Args[0]
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(job.Stdin)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second // grandchildren holding the pipes open
	err = cmd.Run()
	res := Result{Stdout: stdout.buf, Stderr: stderr.buf}
	if cause := context.Cause(runCtx); cause != nil {
		res.Duration = time.Since(start)
		var re *protocols.RemoteError
		if errors.As(cause, &re) {
			return res, cause
		}
		return res, fmt.Errorf("exec: run stopped: %w", cause)
	}
	var ee *osexec.ExitError
	switch {
	case errors.As(err, &ee):
		res.ExitCode = int32(ee.ExitCode())
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.ExitCode = 128 + int32(ws.Signal())
		}
	case err != nil:
		res.Duration = time.Since(start)
		return res, protocols.Errorf(pb.ErrorCode_INTERNAL, "exec: %v", err)
	}
	if name := undeclaredFile(dir, &job); name != "" {
		res.Duration = time.Since(start)
		return res, undeclaredErr(name)
	}
	res.Outputs, err = collectOutputs(dir, job.Outputs, budget.left, res.ExitCode)
	res.Duration = time.Since(start)
	return res, err
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
