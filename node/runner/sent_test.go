package runner

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

func testPeer(t *testing.T) peer.ID {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestSentKeepsEverySend: a job sent to one worker and then to a backup
// (or again by a resumed run) has every send in the journal read back,
// oldest first: each of those workers may hand back a result it kept,
// under the bid it was sent then, and that receipt must be expected, not
// disputed (before, only the last send was kept, and the first worker's
// kept result was disputed). Torn, foreign and hostile lines are skipped
// and change nothing.
func TestSentKeepsEverySend(t *testing.T) {
	dir := t.TempDir()
	w1, w2 := testPeer(t), testPeer(t)
	l, err := openSent(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.add("j", w1, &pb.Bid{BidId: []byte("b1"), PricePerJob: 2}); err != nil {
		t.Fatal(err)
	}
	if err := l.add("j", w2, &pb.Bid{BidId: []byte("b2"), PricePerJob: 5}); err != nil {
		t.Fatal(err)
	}
	if err := l.add("k", w2, &pb.Bid{BidId: []byte("b2"), PricePerJob: 5}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, SentFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"job":"j","worker":"not-a-peer","bid":"YjM=","price":1}` + "\n" + `{"job":"","worker":"` + w1.String() + `"}` + "\n" + `[1,2]` + "\n" + `{"job":"j","wor`)
	_ = f.Close()

	sent, err := Sent(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(sent) != 2 || len(sent["k"]) != 1 {
		t.Fatalf("jobs %v", sent)
	}
	j := sent["j"]
	if len(j) != 2 || j[0].Worker != w1 || !bytes.Equal(j[0].BidID, []byte("b1")) || j[0].Price != 2 ||
		j[1].Worker != w2 || !bytes.Equal(j[1].BidID, []byte("b2")) || j[1].Price != 5 {
		t.Fatalf("sends of j: %+v", j)
	}
}

// TestSentSurvivesLongGarbage: a journal whose tail a power loss filled
// with zeros (the file grew, its data never reached the disk) has one
// "line" far longer than any real one; resuming must skip it and keep the
// sends around it, not fail on it (before: bufio.ErrTooLong, and the
// series could not be resumed at all).
func TestSentSurvivesLongGarbage(t *testing.T) {
	dir := t.TempDir()
	w := testPeer(t)
	l, err := openSent(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.add("a", w, &pb.Bid{BidId: []byte("b"), PricePerJob: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.f.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	_ = l.Close()
	l, err = openSent(dir, true) // a resumed run appends after the garbage
	if err != nil {
		t.Fatal(err)
	}
	if err := l.add("b", w, &pb.Bid{BidId: []byte("b"), PricePerJob: 1}); err != nil {
		t.Fatal(err)
	}
	_ = l.Close()
	sent, err := Sent(dir)
	if err != nil {
		t.Fatalf("Sent: %v", err)
	}
	if len(sent["a"]) != 1 || len(sent["b"]) != 1 || len(sent) != 2 {
		t.Fatalf("sends %v", sent)
	}
}

// FuzzSent: whatever a crash or a hostile hand left in the journal, Sent
// reads it without error or panic, and every send it returns names a job.
func FuzzSent(f *testing.F) {
	f.Add([]byte(`{"job":"j","worker":"12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN","bid":"YjE=","price":2}` + "\n"))
	f.Add([]byte("\x00\x00\n{\"job\":"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, SentFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		sent, err := Sent(dir)
		if err != nil {
			t.Fatalf("Sent: %v", err)
		}
		for j, ps := range sent {
			if j == "" || len(ps) == 0 {
				t.Fatalf("job %q with %d sends", j, len(ps))
			}
		}
	})
}
