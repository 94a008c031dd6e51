// Package nodetest starts real p2pjobs nodes on loopback for integration
// tests: real libp2p hosts, real sockets, no mocks. Test code only.
package nodetest

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/exec"
	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

// Start runs a node with roles on 127.0.0.1, bootstrapping from auths
// (full multiaddrs). It is closed when the test ends.
func Start(t testing.TB, roles []string, auths []string, opts ...node.Option) *node.Node {
	t.Helper()
	return StartWith(t, func(c *node.Config) { c.Roles = roles; c.Bootstrap = auths }, opts...)
}

// StartWith runs a node whose config edit sets up.
func StartWith(t testing.TB, edit func(*node.Config), opts ...node.Option) *node.Node {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	return StartKeyed(t, key, edit, opts...)
}

// StartKeyed runs a node with a given identity (restart tests).
func StartKeyed(t testing.TB, key crypto.PrivKey, edit func(*node.Config), opts ...node.Option) *node.Node {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Worker.Slots = 2
	cfg.Authority.TTL = 3 * time.Second
	cfg.Authority.Heartbeat = time.Second
	edit(&cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts = append([]node.Option{node.WithModuleCache(ModuleCache(t))}, opts...)
	n, err := node.New(ctx, cfg, key, opts...)
	if err != nil {
		t.Fatalf("start %v: %v", cfg.Roles, err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

var moduleCache = sync.OnceValues(func() (string, error) {
	// Shared by every test node and every test binary (wazero writes its
	// cache files atomically), and warmed with the sample modules once:
	// compiling the 3 MB pi module takes over a minute under -race, per
	// worker, which is not what these tests are about.
	dir := filepath.Join(os.TempDir(), "p2pnode-test-wasm-cache")
	w, err := exec.NewWasm(exec.WithCacheDir(dir))
	if err != nil {
		return "", err
	}
	defer w.Close(context.Background())
	for _, m := range [][]byte{wasm.Pi, wasm.Trivial} {
		if _, err := w.AddModule(context.Background(), m); err != nil {
			return "", err
		}
	}
	return dir, nil
})

// ModuleCache is the warmed compilation cache test nodes share.
func ModuleCache(t testing.TB) string {
	dir, err := moduleCache()
	if err != nil {
		t.Fatalf("module cache: %v", err)
	}
	return dir
}

// Addr is n's first full multiaddr.
func Addr(n *node.Node) string { return n.Addrs()[0].String() }

// WaitFor polls cond until it holds or the deadline passes.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
