package exec

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Defaults applied when a Job leaves a limit at zero.
const (
	DefaultMemoryBytes    = 256 << 20
	DefaultTimeout        = 60 * time.Second
	DefaultMaxOutputBytes = 4 << 20
	DefaultDiskBytes      = 64 << 20
	DefaultMaxFiles       = 1024
	DefaultMaxProcs       = 64
)

// File is a named blob: an input placed in the job's working directory or
// an output read back from it. Name is relative ("data/x.csv").
type File struct {
	Name string
	Data []byte
}

// Job is one run of a module (or of an allowlisted program).
type Job struct {
	ModuleHash     [32]byte // sha256 of the module bytes (unused by Exec)
	Args           []string // argv[1:]; for Exec, Args[0] names the program
	Env            map[string]string
	Stdin          []byte
	Inputs         []File
	Outputs        []string // declared output files, read back after the run
	MemoryBytes    uint64   // 0: executor default
	Timeout        time.Duration
	MaxOutputBytes uint64 // cap on stdout+stderr+outputs together
	DiskBytes      uint64 // cap on the bytes in the working directory, inputs included
	MaxFiles       int    // cap on files and directories in it, inputs included
}

// inputUsage is what the inputs take of the disk quota: their bytes, and
// their files and the directories holding them.
func inputUsage(job *Job) (bytes int64, files int) {
	dirs := map[string]bool{}
	for _, f := range job.Inputs {
		bytes += int64(len(f.Data))
		files++
		for d := path.Dir(f.Name); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	return bytes, files + len(dirs)
}

// checkInputsFit refuses a job whose inputs alone exceed its disk quota.
func checkInputsFit(job *Job) error {
	b, n := inputUsage(job)
	if uint64(b) > job.DiskBytes || n > job.MaxFiles {
		return protocols.Errorf(pb.ErrorCode_JOB_DISK_QUOTA, "exec: inputs (%d bytes, %d files) exceed the disk quota (%d bytes, %d files)",
			b, n, job.DiskBytes, job.MaxFiles)
	}
	return nil
}

// Result is what a finished run produced. A non-zero ExitCode is not an
// error.
type Result struct {
	ExitCode       int32
	Stdout, Stderr []byte
	Outputs        []File
	Duration       time.Duration
}

// Executor runs jobs. Implementations are safe for concurrent use.
type Executor interface {
	// Name is "wasm" or "exec".
	Name() string
	// HasModule reports whether a module is ready to run (compiled and
	// cached). The worker asks the client for the bytes otherwise.
	HasModule(hash [32]byte) bool
	// AddModule hashes, validates, compiles and caches a module and returns
	// its sha256. Invalid bytes give MODULE_INVALID.
	AddModule(ctx context.Context, module []byte) ([32]byte, error)
	// Run runs a job to completion, the timeout or ctx's end.
	Run(ctx context.Context, job Job) (Result, error)
	// Close releases everything; Run must not be called afterwards.
	Close(ctx context.Context) error
}

var _ Executor = (*Wasm)(nil)

// validName checks a job file name: relative, clean, no "..", no NUL.
func validName(name string) error {
	switch {
	case name == "" || name == "." || strings.ContainsRune(name, 0) || strings.Contains(name, `\`):
		return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "exec: bad file name %q", name)
	case path.IsAbs(name) || path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../"):
		return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "exec: file name %q must be relative and clean", name)
	}
	return nil
}

func validateFiles(job *Job) error {
	for _, f := range job.Inputs {
		if err := validName(f.Name); err != nil {
			return err
		}
	}
	for _, n := range job.Outputs {
		if err := validName(n); err != nil {
			return err
		}
	}
	return nil
}

// prepareDir creates a fresh working directory under base (the system temp
// directory if empty) holding the job's inputs. The caller removes it.
func prepareDir(base string, job *Job) (string, error) {
	dir, err := os.MkdirTemp(base, "p2pjob-")
	if err != nil {
		return "", protocols.Errorf(pb.ErrorCode_INTERNAL, "exec: %v", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", protocols.Errorf(pb.ErrorCode_INTERNAL, "exec: %v", err)
	}
	defer root.Close()
	for _, f := range job.Inputs {
		if d := path.Dir(f.Name); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				os.RemoveAll(dir)
				return "", protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "exec: input %q: %v", f.Name, err)
			}
		}
		if err := root.WriteFile(f.Name, f.Data, 0o644); err != nil {
			os.RemoveAll(dir)
			return "", protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "exec: input %q: %v", f.Name, err)
		}
	}
	return dir, nil
}

// collectOutputs reads the declared outputs back from dir through an
// os.Root, so a symlink planted by the job cannot leak host files. budget is
// what remains of the output cap. A job that exited non-zero may not have
// written its outputs: then missing ones are skipped, so the exit code (the
// real reason) reaches the client instead of "output missing".
func collectOutputs(dir string, names []string, budget uint64, exitCode int32) ([]File, error) {
	if len(names) == 0 {
		return nil, nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, protocols.Errorf(pb.ErrorCode_INTERNAL, "exec: %v", err)
	}
	defer root.Close()
	out := make([]File, 0, len(names))
	for _, n := range names {
		// O_NONBLOCK: a FIFO planted as an output must not block the
		// worker in open (it is then refused as not a regular file).
		f, err := root.OpenFile(n, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if exitCode != 0 {
					continue
				}
				return nil, protocols.Errorf(pb.ErrorCode_JOB_OUTPUT_MISSING, "exec: output %q was not written", n)
			}
			return nil, protocols.Errorf(pb.ErrorCode_JOB_OUTPUT_MISSING, "exec: output %q: %v", n, err)
		}
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			f.Close()
			return nil, protocols.Errorf(pb.ErrorCode_JOB_OUTPUT_MISSING, "exec: output %q is not a regular file", n)
		}
		// A hard link may name a host file the job could not read (the
		// worker reads outputs with its own rights): refuse any file
		// with another name.
		if hardLinked(st) {
			f.Close()
			return nil, protocols.Errorf(pb.ErrorCode_JOB_OUTPUT_MISSING, "exec: output %q has other hard links", n)
		}
		if uint64(st.Size()) > budget {
			f.Close()
			return nil, protocols.Errorf(pb.ErrorCode_JOB_OUTPUT_TOO_LARGE, "exec: output %q (%d bytes) exceeds the output cap", n, st.Size())
		}
		data, err := io.ReadAll(io.LimitReader(f, int64(budget)+1))
		f.Close()
		if err != nil {
			return nil, protocols.Errorf(pb.ErrorCode_INTERNAL, "exec: output %q: %v", n, err)
		}
		if uint64(len(data)) > budget {
			return nil, protocols.Errorf(pb.ErrorCode_JOB_OUTPUT_TOO_LARGE, "exec: output %q exceeds the output cap", n)
		}
		budget -= uint64(len(data))
		out = append(out, File{Name: n, Data: data})
	}
	return out, nil
}

var errOutputTooLarge = protocols.Errorf(pb.ErrorCode_JOB_OUTPUT_TOO_LARGE, "exec: stdout and stderr exceed the output cap")

// outputBudget is shared by the stdout and stderr writers of one run. When
// the job writes past it, the run's context is cancelled with
// errOutputTooLarge so a guest that ignores write errors still stops.
type outputBudget struct {
	cancel context.CancelCauseFunc
	mu     sync.Mutex // stdout and stderr may be written concurrently (Exec)
	left   uint64     // guarded by mu
}

// cappedWriter appends to buf while the shared budget lasts.
type cappedWriter struct {
	buf    []byte
	budget *outputBudget
}

func (w *cappedWriter) Write(p []byte) (int, error) {
	w.budget.mu.Lock()
	defer w.budget.mu.Unlock()
	if uint64(len(p)) > w.budget.left {
		w.budget.left = 0
		w.budget.cancel(errOutputTooLarge)
		return 0, errOutputTooLarge
	}
	w.budget.left -= uint64(len(p))
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func removeDir(dir string) { _ = removeAllForced(dir) }

// removeAllForced is os.RemoveAll that first gives back the rights a job
// took away: on a worker that is not root a job runs as the worker's user
// and can chmod its own directories to 0 (or 0500), which stops the
// worker, not root either, from reading or emptying them; the files would
// stay, and the next start's CleanJobDirs would fail.
func removeAllForced(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	// Top down: WalkDir calls fn on a directory before reading it. Dirs
	// only (a symlink is not one here), so Chmod touches nothing outside.
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if d != nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
