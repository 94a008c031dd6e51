package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/api"
)

// TestLedgerHandoverCommand: `p2pnode ledger handover --to B` on a running
// client homed at A moves its account to B through the node's API; a
// stopped node refuses (the old home must countersign over the network);
// the home stays B in the store and after a restart.
func TestLedgerHandoverCommand(t *testing.T) {
	authA := newCrashProc(t, "authA", "", "--role", "authority")
	authA.start()
	authB := newCrashProc(t, "authB", "authority:\n  trust: ["+authA.ready.PeerID+"]\n", "--role", "authority")
	authB.start()
	// A learns to trust B (its identity exists only once it ran).
	authA.stop()
	if err := os.WriteFile(filepath.Join(authA.dir, node.ConfigFile), []byte("authority:\n  trust: ["+authB.ready.PeerID+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	authA.start()
	cl := newCrashProc(t, "client", "", "--role", "client", "--bootstrap", authA.ready.Addrs[0], "--bootstrap", authB.ready.Addrs[0])
	cl.start()
	run := func(want int, args ...string) string {
		t.Helper()
		out, code := p2pnode(t, args...)
		if code != want {
			t.Fatalf("p2pnode %v: exit %d, want %d\n%s", args, code, want, out)
		}
		return out
	}
	home := func() string {
		t.Helper()
		var bi api.BalanceInfo
		if err := json.Unmarshal([]byte(run(0, "ledger", "balance", "--json", "--data-dir", cl.dir)), &bi); err != nil {
			t.Fatal(err)
		}
		return bi.Home
	}
	if h := home(); h != authA.ready.PeerID {
		t.Fatalf("home before: %s, want A", h)
	}
	if out := run(0, "ledger", "handover", "--to", authB.ready.PeerID, "--data-dir", cl.dir); !strings.Contains(out, "home "+authB.ready.PeerID+" (was "+authA.ready.PeerID+")") {
		t.Fatalf("handover: %s", out)
	}
	if h := home(); h != authB.ready.PeerID {
		t.Fatalf("home after: %s, want B", h)
	}
	if out := run(2, "ledger", "handover", "--to", authA.ready.PeerID+"x", "--data-dir", cl.dir); !strings.Contains(out, "--to") {
		t.Fatalf("bad peer ID: %s", out)
	}
	cl.stop()
	if out := run(1, "ledger", "handover", "--to", authA.ready.PeerID, "--data-dir", cl.dir); !strings.Contains(out, "no node runs") {
		t.Fatalf("handover on a stopped node: %s", out)
	}
	if h := home(); h != authB.ready.PeerID { // from the store
		t.Fatalf("home in the stopped node's store: %s, want B", h)
	}
	cl.start()
	if h := home(); h != authB.ready.PeerID {
		t.Fatalf("home after a restart: %s, want B", h)
	}
	if out := run(0, "ledger", "history", "--data-dir", cl.dir); !strings.Contains(out, "handover") {
		t.Fatalf("history:\n%s", out)
	}
}
