package client

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestReputationScore(t *testing.T) {
	r := NewReputation()
	a, b, c := peer.ID("a"), peer.ID("b"), peer.ID("c")
	if s := r.Score(a); s != 0.5 {
		t.Fatalf("unknown worker scores %v, want 0.5 (schedule's unknown)", s)
	}
	r.Done(a, 9)
	r.Failed(b, 1)
	r.Done(c, 5)
	r.Failed(c, 5)
	if sa, sb, sc := r.Score(a), r.Score(b), r.Score(c); !(sa > sc && sc > sb) || sc != 0.5 {
		t.Fatalf("scores a %v (9 done) c %v (5/5) b %v (1 failed): want a > c = 0.5 > b", sa, sc, sb)
	}
	r.Failed(b, 10000)
	if s := r.Score(b); s <= 0 || s > 0.02 {
		t.Fatalf("a worker that failed everything scores %v, want a small positive number (0 is unknown)", s)
	}
	// The window: 200 recent jobs. A worker that failed long ago and has
	// done well since recovers.
	r.Done(b, 10*repWindow)
	if s := r.Score(b); s < 0.9 {
		t.Fatalf("after %d good jobs the old failures still weigh: %v", 10*repWindow, s)
	}
	if rec := r.Record(b); rec.Done+rec.Failed > repWindow+1e-9 {
		t.Fatalf("record %+v exceeds the window", rec)
	}
}

func TestReputationFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), ReputationFile)
	r, err := OpenReputation(path)
	if err != nil {
		t.Fatalf("no file yet: %v", err)
	}
	good, bad := peer.ID("\x00\x04good"), peer.ID("\x00\x03bad")
	r.Done(good, 3)
	r.Failed(bad, 2)
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved file: %v %v", fi, err)
	}
	r2, err := OpenReputation(path)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Record(good).Done != 3 || r2.Record(bad).Failed != 2 || r2.Score(bad) >= r2.Score(good) {
		t.Fatalf("reloaded %+v %+v", r2.Record(good), r2.Record(bad))
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	r3, err := OpenReputation(path)
	if err == nil || r3 == nil || r3.Score(good) != 0.5 {
		t.Fatalf("damaged file: %v, want an error and an empty record", err)
	}
	if err := r3.Save(); err != nil { // replaced by a good one
		t.Fatal(err)
	}
	if _, err := OpenReputation(path); err != nil {
		t.Fatal(err)
	}
	if err := NewReputation().Save(); err != nil {
		t.Fatalf("in-memory save: %v", err)
	}
}
