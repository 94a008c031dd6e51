package node

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func startClient(t *testing.T) *Node {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Roles = []string{RoleClient}
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	key, _, _ := crypto.GenerateEd25519Key(nil)
	n, err := New(context.Background(), cfg, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func (n *Node) observedPeers() int {
	n.nat.mu.Lock()
	defer n.nat.mu.Unlock()
	return len(n.nat.observed)
}

// TestObservedForgetsGonePeers: the address each peer last saw us at is
// kept while it is connected, not forever: peers come and go (and a hostile
// one can come back under a fresh identity each time).
func TestObservedForgetsGonePeers(t *testing.T) {
	a, b := startClient(t), startClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Host.Connect(ctx, peer.AddrInfo{ID: b.Host.ID(), Addrs: b.Host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return a.observedPeers() == 1 }, "identify")
	if err := a.Host.Network().ClosePeer(b.Host.ID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return a.observedPeers() == 0 }, "the observed address dropped")
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
