//go:build linux

package worker

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/p2pjobs/p2pnode/node/exec"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	samples "github.com/p2pjobs/p2pnode/scripts/wasm"
)

// TestModuleUploadsReserveMemory: the job stream buffers a module whole
// before checking it; each chunk is reserved from libp2p's resource
// manager under the worker's service. With the service limited to 1 MiB,
// a 2 MiB module is refused (RATE_LIMITED) instead of buffered, and its
// reservation is given back: a small module goes through afterwards.
func TestModuleUploadsReserveMemory(t *testing.T) {
	limits := rcmgr.DefaultLimits
	limits.AddServiceLimit(ServiceName, rcmgr.BaseLimit{Streams: 64, StreamsInbound: 64, StreamsOutbound: 64, Memory: 1 << 20}, rcmgr.BaseLimitIncrease{})
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()))
	if err != nil {
		t.Fatal(err)
	}
	wkey, _, _ := crypto.GenerateEd25519Key(nil)
	wh, err := libp2p.New(libp2p.Identity(wkey), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(rm), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wh.Close() })
	ch, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.Close() })
	w, err := exec.NewWasm(exec.WithScratchDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	s, err := New(wh, wkey, []exec.Executor{w}, nil, WithCapacity(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := ch.Connect(context.Background(), peer.AddrInfo{ID: wh.ID(), Addrs: wh.Addrs()}); err != nil {
		t.Fatal(err)
	}
	r := &hostileRig{s: s, client: ch}
	// Refused while buffering, before its bytes are even hashed.
	if ack := r.pushModule(t, bytes.Repeat([]byte{0}, 2<<20)); ack.GetError().GetCode() != pb.ErrorCode_RATE_LIMITED {
		t.Fatalf("2 MiB module under a 1 MiB service limit: %v, want RATE_LIMITED", ack.GetError())
	}
	if ack := r.pushModule(t, samples.Trivial); ack.GetError() != nil {
		t.Fatalf("small module after the refusal: %v (reservation not given back?)", ack.GetError())
	}
	// The worker releases after it has replied: poll with a deadline.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var mem int64
		_ = rm.ViewService(ServiceName, func(ss network.ServiceScope) error { mem = ss.Stat().Memory; return nil })
		if mem == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still reserved by the worker service after the uploads", mem)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
