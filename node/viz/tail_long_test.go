package viz

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/p2pjobs/p2pnode/node/events"
)

const okLine = `{"v":1,"t":"2024-01-01T00:00:00Z","mono":1,"node":"a","role":"worker","kind":"started"}` + "\n"

// One over-long line (a corrupt or hostile log) is skipped: the events
// after it in the same read are not lost.
func TestTailSkipsOverlongLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.jsonl")
	long := append(bytes.Repeat([]byte("x"), 5<<20), '\n')
	if err := os.WriteFile(p, append(append([]byte(okLine), long...), okLine...), 0o644); err != nil {
		t.Fatal(err)
	}
	tl, err := NewTail(p)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := tl.Poll()
	if len(recs) != 2 || tl.Skipped() != 1 {
		t.Fatalf("got %d records, %d skipped (err %v); want 2 and 1", len(recs), tl.Skipped(), err)
	}
}

// A file that never ends its line (not a log, or a hostile one) does not
// make the tail keep ever more of it in memory; the events after the line
// ends are read.
func TestTailBoundsUnterminatedLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.jsonl")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tl, err := NewTail(p)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("y"), 3<<20)
	for range 4 {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if _, err := tl.Poll(); err != nil {
			t.Fatal(err)
		}
		if n := len(tl.files[p].partial); n > events.MaxLine {
			t.Fatalf("partial line of %d bytes kept (cap %d)", n, events.MaxLine)
		}
	}
	if _, err := f.WriteString("\n" + okLine); err != nil {
		t.Fatal(err)
	}
	recs, err := tl.Poll()
	if err != nil || len(recs) != 1 || tl.Skipped() != 1 {
		t.Fatalf("after the line ended: %d records, %d skipped, err %v; want 1 and 1", len(recs), tl.Skipped(), err)
	}
}
