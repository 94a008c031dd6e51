package node

import (
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
)

// TestDHTProtectionsAreTags: the DHT's protections reach the real
// connection manager as tags, so that a trim may close idle DHT
// connections (they were ~40 per worker, never trimmed).
func TestDHTProtectionsAreTags(t *testing.T) {
	cm, err := connmgr.NewConnManager(1, 2)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.NoListenAddrs, libp2p.ConnectionManager(cm))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	k, _, _ := crypto.GenerateEd25519Key(nil)
	p, _ := peer.IDFromPrivateKey(k)
	dh := dhtHost{h}
	dh.ConnManager().Protect(p, "kbucket")
	if h.ConnManager().IsProtected(p, "") {
		t.Fatal("DHT protection reached the connection manager as a protection")
	}
	if v := h.ConnManager().GetTagInfo(p).Tags["kbucket"]; v != dhtProtectValue {
		t.Fatalf("kbucket tag %d, want %d", v, dhtProtectValue)
	}
	if dh.ConnManager().Unprotect(p, "kbucket") {
		t.Error("Unprotect reported other protections")
	}
	if _, ok := h.ConnManager().GetTagInfo(p).Tags["kbucket"]; ok {
		t.Error("tag left after Unprotect")
	}
}

// TestWorkerConnectionMarks: a worker-only node trims to a few dozen
// connections; clients and authorities keep room for every worker.
func TestWorkerConnectionMarks(t *testing.T) {
	for _, c := range []struct {
		roles    []string
		low, top int
	}{
		{[]string{RoleWorker}, 16, 32},
		{[]string{RoleWorker, RoleClient}, 100, 400},
		{[]string{RoleClient}, 100, 400},
		{[]string{RoleAuthority}, 2000, 4000},
	} {
		l := limitsFor(&Config{Roles: c.roles})
		if l.connLow != c.low || l.connHigh != c.top {
			t.Errorf("%v: marks %d/%d, want %d/%d", c.roles, l.connLow, l.connHigh, c.low, c.top)
		}
	}
}
