package viz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/p2pjobs/p2pnode/node/events"
)

// ErrNoSource is returned when a source is neither a log file nor a directory.
var ErrNoSource = errors.New("viz: no such log file or directory")

// Record is one event of a merged log.
type Record struct {
	events.Event
	// At orders records across logs: the event's time, raised to the
	// previous record's when a log delivers late (live mode), so that the
	// merged sequence is never out of order.
	At time.Time
	// File is the log the event came from.
	File string
}

// Tail reads log files and directories of *.jsonl files, and on each Poll
// returns the complete lines appended since the last one. A line without its
// newline yet (a writer mid-flush) is kept until the rest arrives; files that
// appear later in a directory are picked up. Not safe for concurrent use.
type Tail struct {
	sources []source
	files   map[string]*tailFile
	order   []string // file paths in the order they were found
	skipped int
}

type source struct {
	path string
	dir  bool
}

type tailFile struct {
	path    string
	off     int64
	partial []byte
	// skipping: the line being read grew past events.MaxLine; what comes
	// before its newline is dropped, not kept in partial.
	skipping bool
}

// maxRead bounds what one Poll reads from one file, so a huge log is loaded
// in steps rather than in one allocation.
const maxRead = 64 << 20

// NewTail checks the sources (files or directories) and returns a Tail that
// has read nothing yet.
func NewTail(paths ...string) (*Tail, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: none given", ErrNoSource)
	}
	t := &Tail{files: map[string]*tailFile{}}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrNoSource, p)
		}
		t.sources = append(t.sources, source{path: p, dir: fi.IsDir()})
		if !fi.IsDir() {
			t.addFile(p)
		}
	}
	return t, nil
}

func (t *Tail) addFile(p string) {
	if _, ok := t.files[p]; ok {
		return
	}
	t.files[p] = &tailFile{path: p}
	t.order = append(t.order, p)
}

// Files lists the log files found so far.
func (t *Tail) Files() []string { return append([]string(nil), t.order...) }

// Skipped counts lines that were not valid events.
func (t *Tail) Skipped() int { return t.skipped }

// Poll returns the events appended to every file since the last call, in
// file order (not merged). A file that shrank is read again from the start.
func (t *Tail) Poll() ([]Record, error) {
	for _, s := range t.sources {
		if !s.dir {
			continue
		}
		m, err := filepath.Glob(filepath.Join(s.path, "*.jsonl"))
		if err != nil {
			return nil, err
		}
		sort.Strings(m)
		for _, p := range m {
			t.addFile(p)
		}
	}
	var out []Record
	var firstErr error
	for _, p := range t.order {
		recs, err := t.files[p].read(&t.skipped)
		out = append(out, recs...)
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return out, firstErr
}

func (f *tailFile) read(skipped *int) ([]Record, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil // removed, or not created yet
		}
		return nil, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() < f.off { // truncated or replaced: start over
		f.off, f.partial, f.skipping = 0, nil, false
	}
	if fi.Size() == f.off {
		return nil, nil
	}
	if _, err := fh.Seek(f.off, io.SeekStart); err != nil {
		return nil, err
	}
	buf, err := io.ReadAll(io.LimitReader(fh, maxRead))
	if err != nil {
		return nil, err
	}
	f.off += int64(len(buf))
	if f.skipping {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return nil, nil
		}
		buf = buf[i+1:]
		f.skipping = false
		*skipped++
	}
	if len(f.partial) > 0 {
		buf = append(f.partial, buf...)
		f.partial = nil
	}
	end := bytes.LastIndexByte(buf, '\n')
	if rest := buf[end+1:]; len(rest) > events.MaxLine {
		f.skipping = true // not an event line: never keep it whole
	} else if len(rest) > 0 {
		f.partial = append([]byte(nil), rest...)
	}
	if end < 0 {
		return nil, nil
	}
	var out []Record
	n, err := events.Decode(bytes.NewReader(buf[:end+1]), func(e events.Event) error {
		out = append(out, Record{Event: e, At: e.Time, File: f.path})
		return nil
	})
	*skipped += n
	return out, err
}
