package runner

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// TestSentKeepsEverySend: a job the crashed run sent to one worker and
// then to another may come back from either on resume (each kept its
// result and receipt): the journal gives every send, the last one last.
func TestSentKeepsEverySend(t *testing.T) {
	ids := make([]peer.ID, 2)
	for i := range ids {
		_, pub, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		if ids[i], err = peer.IDFromPublicKey(pub); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	l, err := openSent(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if err := l.add("j", id, &pb.Bid{BidId: []byte{byte(i)}, PricePerJob: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	_ = l.Close()
	got, err := Sent(dir)
	if err != nil {
		t.Fatal(err)
	}
	ps := got["j"]
	if len(ps) != 2 || ps[0].Worker != ids[0] || ps[0].Price != 1 || ps[1].Worker != ids[1] || ps[1].Price != 2 {
		t.Fatalf("sends of j: %+v", ps)
	}
}
