package exec

import (
	"context"
	"io"
	"io/fs"
	"sync"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"

	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

var errDiskQuota = protocols.Errorf(pb.ErrorCode_JOB_DISK_QUOTA, "exec: the job wrote more than its disk quota (bytes or files)")

// diskQuota counts a WASM job's bytes and files (directories included) in
// its working directory. Sizes are taken from the host file before and
// after each write, so a guest cannot under-count by seeking, truncating
// or writing through two handles; over-counting (a file replaced by a
// rename) only errs on the safe side. The first write or creation past the
// quota fails with EIO (WASI has no EDQUOT in wazero's set) and cancels the
// run with errDiskQuota, so a guest that ignores the error still stops.
type diskQuota struct {
	cancel     context.CancelCauseFunc
	maxBytes   int64
	maxFiles   int
	mu         sync.Mutex
	bytes      int64 // guarded by mu
	files      int   // guarded by mu
	overflowed bool  // guarded by mu
}

func (q *diskQuota) exceed() experimentalsys.Errno {
	q.overflowed = true
	q.cancel(errDiskQuota)
	return experimentalsys.EIO
}

// addFile charges one new file or directory.
func (q *diskQuota) addFile() experimentalsys.Errno {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.files+1 > q.maxFiles {
		return q.exceed()
	}
	q.files++
	return 0
}

// grow charges (or, negative, refunds) bytes; a charge past the quota is
// refused and nothing is charged.
func (q *diskQuota) grow(n int64) experimentalsys.Errno {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n > 0 && q.bytes+n > q.maxBytes {
		return q.exceed()
	}
	q.bytes = max(q.bytes+n, 0)
	return 0
}

func (q *diskQuota) release(files int, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.files = max(q.files-files, 0)
	q.bytes = max(q.bytes-bytes, 0)
}

// quotaFS counts what a guest writes against q. It wraps sandboxFS.
type quotaFS struct {
	experimentalsys.FS
	q *diskQuota
}

func (s quotaFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if flag&experimentalsys.O_CREAT != 0 {
		if _, errno := s.FS.Lstat(p); errno == experimentalsys.ENOENT {
			if errno := s.q.addFile(); errno != 0 {
				return nil, errno
			}
			f, errno := s.FS.OpenFile(p, flag, perm)
			if errno != 0 {
				s.q.release(1, 0)
				return nil, errno
			}
			return &quotaFile{File: f, q: s.q}, 0
		}
	}
	f, errno := s.FS.OpenFile(p, flag, perm)
	if errno != 0 {
		return nil, errno
	}
	// An O_TRUNC open refunds nothing for the bytes it dropped, which
	// over-counts (safe).
	return &quotaFile{File: f, q: s.q}, 0
}

func (s quotaFS) Mkdir(p string, perm fs.FileMode) experimentalsys.Errno {
	if errno := s.q.addFile(); errno != 0 {
		return errno
	}
	if errno := s.FS.Mkdir(p, perm); errno != 0 {
		s.q.release(1, 0)
		return errno
	}
	return 0
}

func (s quotaFS) Link(from, to string) experimentalsys.Errno {
	if errno := s.q.addFile(); errno != 0 {
		return errno
	}
	if errno := s.FS.Link(from, to); errno != 0 {
		s.q.release(1, 0)
		return errno
	}
	return 0
}

func (s quotaFS) Unlink(p string) experimentalsys.Errno {
	st, serr := s.FS.Lstat(p)
	if errno := s.FS.Unlink(p); errno != 0 {
		return errno
	}
	if serr == 0 {
		size := st.Size
		if st.Nlink > 1 {
			size = 0 // other names still hold the bytes
		}
		s.q.release(1, size)
	}
	return 0
}

func (s quotaFS) Rmdir(p string) experimentalsys.Errno {
	if errno := s.FS.Rmdir(p); errno != 0 {
		return errno
	}
	s.q.release(1, 0)
	return 0
}

// quotaFile charges growth of one open file.
type quotaFile struct {
	experimentalsys.File
	q *diskQuota
}

func (f *quotaFile) size() (int64, experimentalsys.Errno) {
	st, errno := f.File.Stat()
	return st.Size, errno
}

// charge runs write, which would extend the file to end, within the quota.
func (f *quotaFile) charge(end int64, write func() (int, experimentalsys.Errno)) (int, experimentalsys.Errno) {
	before, errno := f.size()
	if errno != 0 {
		return 0, errno
	}
	if end > before {
		if errno := f.q.grow(end - before); errno != 0 {
			return 0, errno
		}
	}
	n, werr := write()
	after, errno := f.size()
	if errno != 0 {
		after = max(end, before) // keep the charge
	}
	// Settle the pre-charge to what the file really grew by.
	f.q.grow(after - before - max(end-before, 0))
	return n, werr
}

func (f *quotaFile) Write(buf []byte) (int, experimentalsys.Errno) {
	var off int64
	if f.File.IsAppend() {
		s, errno := f.size()
		if errno != 0 {
			return 0, errno
		}
		off = s
	} else {
		o, errno := f.File.Seek(0, io.SeekCurrent)
		if errno != 0 {
			return 0, errno
		}
		off = o
	}
	return f.charge(off+int64(len(buf)), func() (int, experimentalsys.Errno) { return f.File.Write(buf) })
}

func (f *quotaFile) Pwrite(buf []byte, off int64) (int, experimentalsys.Errno) {
	return f.charge(off+int64(len(buf)), func() (int, experimentalsys.Errno) { return f.File.Pwrite(buf, off) })
}

func (f *quotaFile) Truncate(size int64) experimentalsys.Errno {
	_, errno := f.charge(size, func() (int, experimentalsys.Errno) { return 0, f.File.Truncate(size) })
	return errno
}

var _ experimentalsys.FS = quotaFS{}
