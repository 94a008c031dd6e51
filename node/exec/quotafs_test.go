package exec

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
)

// TestQuotaFSCountsWrites drives the quota filesystem as a guest would, on
// a real directory: appends, positioned writes past the end, truncation,
// a second handle on the same file and unlinks are all counted from the
// file's real size, and the first write or creation past the quota fails
// and stops the run with errDiskQuota.
func TestQuotaFSCountsWrites(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	q := &diskQuota{cancel: cancel, maxBytes: 1000, maxFiles: 3}
	fsys := quotaFS{FS: sandboxFS{sysfs.DirFS(dir)}, q: q}
	open := func(name string, flag experimentalsys.Oflag) experimentalsys.File {
		t.Helper()
		f, errno := fsys.OpenFile(name, flag, 0o644)
		if errno != 0 {
			t.Fatalf("open %s: %v", name, errno)
		}
		return f
	}
	check := func(bytes int64, files int) {
		t.Helper()
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.bytes != bytes || q.files != files {
			t.Fatalf("counted %d bytes, %d files; want %d, %d", q.bytes, q.files, bytes, files)
		}
	}
	f := open("a", experimentalsys.O_CREAT|experimentalsys.O_RDWR)
	if _, errno := f.Write(make([]byte, 100)); errno != 0 {
		t.Fatal(errno)
	}
	check(100, 1)
	if _, errno := f.Pwrite(make([]byte, 10), 300); errno != 0 { // a hole counts: the size is 310
		t.Fatal(errno)
	}
	check(310, 1)
	g := open("a", experimentalsys.O_RDWR) // a second handle, no new file
	if _, errno := g.Seek(0, io.SeekStart); errno != 0 {
		t.Fatal(errno)
	}
	if _, errno := g.Write(make([]byte, 50)); errno != 0 { // overwrite: no growth
		t.Fatal(errno)
	}
	check(310, 1)
	if errno := f.Truncate(20); errno != 0 {
		t.Fatal(errno)
	}
	check(20, 1)
	if errno := fsys.Mkdir("d", 0o755); errno != 0 {
		t.Fatal(errno)
	}
	check(20, 2)
	// Growing past 1000 bytes is refused whole, and stops the run.
	if _, errno := f.Pwrite(make([]byte, 10), 995); errno == 0 {
		t.Fatal("write past the quota accepted")
	}
	if st, _ := os.Stat(filepath.Join(dir, "a")); st.Size() != 20 {
		t.Fatalf("refused write changed the file to %d bytes", st.Size())
	}
	if !errors.Is(context.Cause(ctx), errDiskQuota) {
		t.Fatalf("run not stopped: %v", context.Cause(ctx))
	}
	f.Close()
	g.Close()
	if errno := fsys.Unlink("a"); errno != 0 {
		t.Fatal(errno)
	}
	check(0, 1)
	open("b", experimentalsys.O_CREAT|experimentalsys.O_WRONLY).Close()
	open("c", experimentalsys.O_CREAT|experimentalsys.O_WRONLY).Close()
	if _, errno := fsys.OpenFile("d/e", experimentalsys.O_CREAT|experimentalsys.O_WRONLY, 0o644); errno == 0 {
		t.Fatal("a fourth file accepted under a cap of 3")
	}
	if _, err := os.Stat(filepath.Join(dir, "d", "e")); !os.IsNotExist(err) {
		t.Fatalf("refused file exists: %v", err)
	}
}
