package exec

import (
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"

	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// sandboxFS wraps wazero's directory file system so a guest stays inside its
// working directory. wazero's DirFS joins guest paths to the host directory
// as given and lets a guest create relative symlinks, so "../x" and a
// planted link "l -> ../../etc" would otherwise reach host files. Here paths
// that climb above the root are refused and symlinks cannot be created; the
// executor only ever writes regular files into the directory.
type sandboxFS struct {
	experimentalsys.FS
}

func escapes(p string) bool {
	c := path.Clean(p)
	return c == ".." || strings.HasPrefix(c, "../") || strings.ContainsRune(p, 0)
}

func (s sandboxFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if escapes(p) {
		return nil, experimentalsys.EPERM
	}
	return s.FS.OpenFile(p, flag, perm)
}

func (s sandboxFS) Lstat(p string) (sys.Stat_t, experimentalsys.Errno) {
	if escapes(p) {
		return sys.Stat_t{}, experimentalsys.EPERM
	}
	return s.FS.Lstat(p)
}

func (s sandboxFS) Stat(p string) (sys.Stat_t, experimentalsys.Errno) {
	if escapes(p) {
		return sys.Stat_t{}, experimentalsys.EPERM
	}
	return s.FS.Stat(p)
}

func (s sandboxFS) Mkdir(p string, perm fs.FileMode) experimentalsys.Errno {
	if escapes(p) {
		return experimentalsys.EPERM
	}
	return s.FS.Mkdir(p, perm)
}

func (s sandboxFS) Chmod(p string, perm fs.FileMode) experimentalsys.Errno {
	if escapes(p) {
		return experimentalsys.EPERM
	}
	return s.FS.Chmod(p, perm)
}

func (s sandboxFS) Rename(from, to string) experimentalsys.Errno {
	if escapes(from) || escapes(to) {
		return experimentalsys.EPERM
	}
	return s.FS.Rename(from, to)
}

func (s sandboxFS) Rmdir(p string) experimentalsys.Errno {
	if escapes(p) {
		return experimentalsys.EPERM
	}
	return s.FS.Rmdir(p)
}

func (s sandboxFS) Unlink(p string) experimentalsys.Errno {
	if escapes(p) {
		return experimentalsys.EPERM
	}
	return s.FS.Unlink(p)
}

func (s sandboxFS) Link(from, to string) experimentalsys.Errno {
	if escapes(from) || escapes(to) {
		return experimentalsys.EPERM
	}
	return s.FS.Link(from, to)
}

// Symlink is refused: a link's target is resolved by the host later.
func (s sandboxFS) Symlink(string, string) experimentalsys.Errno {
	return experimentalsys.EPERM
}

func (s sandboxFS) Readlink(p string) (string, experimentalsys.Errno) {
	if escapes(p) {
		return "", experimentalsys.EPERM
	}
	return s.FS.Readlink(p)
}

func (s sandboxFS) Utimens(p string, atim, mtim int64) experimentalsys.Errno {
	if escapes(p) {
		return experimentalsys.EPERM
	}
	return s.FS.Utimens(p, atim, mtim)
}

// outputGuard refuses, and remembers, the guest's first attempt to open
// for writing a file the job did not declare as an output. Without it a
// job that declared nothing had no directory at all, and its write failed
// with a bare "Bad file number" (EBADF, no preopened directory); with
// inputs, an undeclared file was written and silently dropped. The job
// fails with a message naming the file and the series' outputs: key
// (undeclaredErr).
type outputGuard struct {
	experimentalsys.FS
	declared []string

	mu         sync.Mutex
	undeclared string // guarded by mu: the first undeclared file written
}

func isWrite(flag experimentalsys.Oflag) bool {
	return flag&(experimentalsys.O_WRONLY|experimentalsys.O_RDWR|experimentalsys.O_CREAT|experimentalsys.O_TRUNC|experimentalsys.O_APPEND) != 0
}

func (g *outputGuard) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if isWrite(flag) && flag&experimentalsys.O_DIRECTORY == 0 {
		name := path.Clean(strings.TrimPrefix(p, "/"))
		if !slices.Contains(g.declared, name) {
			g.mu.Lock()
			if g.undeclared == "" {
				g.undeclared = name
			}
			g.mu.Unlock()
			return nil, experimentalsys.EACCES
		}
	}
	return g.FS.OpenFile(p, flag, perm)
}

// undeclaredErr is the job's error when the guest wrote an undeclared
// file, nil otherwise.
func (g *outputGuard) undeclaredErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.undeclared == "" {
		return nil
	}
	return undeclaredErr(g.undeclared)
}

func undeclaredErr(name string) error {
	return protocols.Errorf(pb.ErrorCode_BAD_REQUEST,
		"exec: the job wrote %q, a file its series does not declare: add it to the series' outputs: (outputs: [%s])", name, name)
}
