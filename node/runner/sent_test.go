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
