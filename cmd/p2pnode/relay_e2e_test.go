package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pjobs/p2pnode/node"
)

// TestRelayByDefaultProcesses: an authority process started with default
// flags (no --reachability, no --announce) relays; a worker process with
// --reachability private gets a relay address through it, and `status`
// says so on both sides.
//
// libp2p's autorelay builds circuit addresses only from a relay's public
// addresses, so the processes treat loopback as public, as the NAT lab
// treats its "internet" segment (P2PNODE_PUBLIC_CIDRS, node/host.go).
func TestRelayByDefaultProcesses(t *testing.T) {
	t.Setenv("P2PNODE_PUBLIC_CIDRS", "127.0.0.0/8")
	adir, wdir := t.TempDir(), t.TempDir()
	auth := daemonIn(t, adir, "authority", "", "--role", "authority")
	daemonIn(t, wdir, "worker", "", "--role", "worker", "--bootstrap", auth.Addrs[0], "--reachability", "private")

	status := func(dir string) node.Status {
		t.Helper()
		out, code := p2pnode(t, "status", "--data-dir", filepath.Join(dir, "data"), "--json")
		if code != 0 {
			t.Fatalf("status: exit %d\n%s", code, out)
		}
		var st node.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		return st
	}
	var ws node.Status
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ws = status(wdir)
		if len(ws.RelayAddrs) > 0 || time.Now().After(end) {
			break
		}
	}
	if len(ws.RelayAddrs) == 0 || !strings.Contains(ws.RelayAddrs[0], "/p2p/"+auth.PeerID+"/p2p-circuit") {
		t.Fatalf("worker relay addresses %v, want one through the authority %s", ws.RelayAddrs, auth.PeerID)
	}
	if ws.Relay.On {
		t.Fatalf("a worker runs no relay service: %+v", ws.Relay)
	}
	as := status(adir)
	if as.Reachability == "public" {
		t.Fatalf("the authority's reachability is %q: the test needs one AutoNAT has not confirmed", as.Reachability)
	}
	if !as.Relay.On || as.Relay.Reservations != 1 {
		t.Fatalf("authority relay service %+v, want on with 1 reservation", as.Relay)
	}
	out, code := p2pnode(t, "status", "--data-dir", filepath.Join(adir, "data"))
	if code != 0 || !strings.Contains(out, "relay service on: 1 of ") {
		t.Fatalf("status (text): exit %d\n%s", code, out)
	}
}
