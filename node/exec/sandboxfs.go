package exec

import (
	"io/fs"
	"path"
	"strings"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
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
