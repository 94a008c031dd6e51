package node

import (
	"strconv"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func newID(t *testing.T) peer.ID {
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return id
}

// TestAuthorityBookBounded: any peer that says in identify that it serves
// the register protocol is learned as an authority; peers with fresh
// identities, or one repeating new addresses, must not grow the book (and
// the registrations, discoveries and relay candidates that follow it)
// without bound. Bootstrap authorities always count.
func TestAuthorityBookBounded(t *testing.T) {
	boot := peer.AddrInfo{ID: newID(t)}
	b := newAuthorityBook(newID(t), []peer.AddrInfo{boot})
	for range 3 * maxLearned {
		b.add(peer.AddrInfo{ID: newID(t)}, SourceIdentify)
	}
	if got := len(b.list()); got != 1+maxLearned {
		t.Fatalf("%d authorities known, want 1 bootstrap + %d learned", got, maxLearned)
	}
	for i := range 3 * maxAddrsPerAuthority {
		b.add(peer.AddrInfo{ID: boot.ID, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/10.0.0.1/tcp/" + strconv.Itoa(1000+i))}}, SourceIdentify)
	}
	if got := len(b.list()[0].Addrs); got != maxAddrsPerAuthority {
		t.Fatalf("%d addresses kept, want %d", got, maxAddrsPerAuthority)
	}
}
