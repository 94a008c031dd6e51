package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrLocked means another process uses the data directory.
var ErrLocked = errors.New("node: data directory in use by another p2pnode process")

// Paths inside a data directory.
const (
	LockFile   = "lock"
	ConfigFile = "config.yaml"
	SocketFile = "api.sock"
	LedgerFile = "ledger.db"
	EventsFile = "events.jsonl"
	ModuleDir  = "modules"
	JobDir     = "jobs" // job working directories, emptied at start
)

// DataDir is a locked data directory.
type DataDir struct {
	Path string
	lock *os.File
}

// OpenDataDir creates dir (0700) if needed and takes its exclusive lock, so
// that one process at a time owns the identity, ledger and API socket.
func OpenDataDir(dir string) (*DataDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("node: lock %s: %w", dir, err)
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
	return &DataDir{Path: dir, lock: f}, nil
}

// Join returns a path inside the directory.
func (d *DataDir) Join(name string) string { return filepath.Join(d.Path, name) }

// Close releases the lock.
func (d *DataDir) Close() error {
	if d == nil || d.lock == nil {
		return nil
	}
	err := d.lock.Close() // closing the descriptor releases the flock
	d.lock = nil
	return err
}
