package runner

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
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

// TestResultParams: each job's sweep values go into its summary line and
// its params.json, for failed jobs too.
func TestResultParams(t *testing.T) {
	dir := t.TempDir()
	w, err := NewResultWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.SetParams([]client.Job{{ID: "job-1", Params: map[string]string{"seed": "17", "samples": "1000"}},
		{ID: "job-2", Params: map[string]string{"seed": "18", "samples": "1000"}}})
	if err := w.Write(client.Outcome{ID: "job-1", Result: &pb.JobResult{Stdout: []byte("ok\n")}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(client.Outcome{ID: "job-2", Err: errors.New("trap")}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "summary.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"params":{"samples":"1000","seed":"17"}`) ||
		!strings.Contains(lines[1], `"params":{"samples":"1000","seed":"18"}`) {
		t.Fatalf("summary.jsonl:\n%s", data)
	}
	for job, seed := range map[string]string{"job-1": "17", "job-2": "18"} {
		b, err := os.ReadFile(filepath.Join(dir, job, "params.json"))
		if err != nil {
			t.Fatal(err)
		}
		var p map[string]string
		if err := json.Unmarshal(b, &p); err != nil || p["seed"] != seed || p["samples"] != "1000" {
			t.Fatalf("%s/params.json = %s (%v)", job, b, err)
		}
	}
}
