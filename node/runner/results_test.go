package runner

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/p2pjobs/p2pnode/node/client"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// TestJournalResume: a resumed series skips exactly the jobs that ended
// done with their outputs on disk, keeps the journal's earlier lines, and
// survives a torn last line (a client killed mid-write).
func TestJournalResume(t *testing.T) {
	dir := t.TempDir()
	w, err := NewResultWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	ok := &pb.JobResult{Stdout: []byte("1"), Outputs: []*pb.File{{Name: "out.txt", Data: []byte("x")}}}
	w.Write(client.Outcome{ID: "job-1", Result: ok})
	w.Write(client.Outcome{ID: "job-2", Err: errors.New("trap")})
	w.Write(client.Outcome{ID: "job-3", Result: ok})
	w.Close()
	os.Remove(filepath.Join(dir, "job-3", "out.txt")) // outputs lost: run it again
	f, _ := os.OpenFile(filepath.Join(dir, "summary.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"job":"job-4","status":"do`)
	f.Close()

	done, err := Journal(dir, []string{"out.txt"})
	if err != nil {
		t.Fatal(err)
	}
	if !done["job-1"] || done["job-2"] || done["job-3"] || done["job-4"] || len(done) != 1 {
		t.Fatalf("journal: %v, want only job-1", done)
	}
	w, err = ResumeResultWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(client.Outcome{ID: "job-2", Result: ok})
	w.Close()
	if done, _ = Journal(dir, []string{"out.txt"}); !done["job-1"] || !done["job-2"] {
		t.Fatalf("after resume: %v", done)
	}
	if done, _ = Journal(t.TempDir(), nil); len(done) != 0 {
		t.Fatalf("empty dir: %v", done)
	}
}
