package authority

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

func ids(t *testing.T, n int) []peer.ID {
	out := make([]peer.ID, n)
	for i := range out {
		k, _, _ := crypto.GenerateEd25519Key(nil)
		out[i], _ = peer.IDFromPrivateKey(k)
	}
	return out
}

func TestRegistryPagesAreStableAndComplete(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRegistry(time.Minute, 1000)
	workers := ids(t, 25)
	for i, id := range workers {
		if _, _, err := r.Register(id, &pb.RegisterRequest{Executors: []string{"wasm"}, PricePerJob: uint64(i), Slots: 1}, now); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[peer.ID]bool{}
	cursor, pages := "", 0
	for {
		page, next, total := r.Discover(Filter{}, cursor, 10, now)
		if total != 25 {
			t.Fatalf("total %d", total)
		}
		for _, rec := range page {
			if seen[rec.ID] {
				t.Fatalf("%s on two pages", rec.ID)
			}
			seen[rec.ID] = true
		}
		pages++
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != 25 || pages != 3 {
		t.Fatalf("saw %d workers in %d pages", len(seen), pages)
	}
}

func TestRegistryFilters(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRegistry(time.Minute, 1000)
	w := ids(t, 3)
	r.Register(w[0], &pb.RegisterRequest{Executors: []string{"wasm"}, MemoryBytes: 1 << 30, PricePerJob: 5, Slots: 1}, now)
	r.Register(w[1], &pb.RegisterRequest{Executors: []string{"wasm", "exec"}, MemoryBytes: 1 << 20, PricePerJob: 1, Slots: 1}, now)
	r.Register(w[2], &pb.RegisterRequest{Executors: []string{"exec"}, MemoryBytes: 1 << 30, PricePerJob: 1, Slots: 1}, now)
	for _, c := range []struct {
		f    Filter
		want int
	}{
		{Filter{}, 3}, {Filter{Executor: "wasm"}, 2}, {Filter{Executor: "exec", MinMemory: 1 << 25}, 1},
		{Filter{MaxPrice: 2}, 2}, {Filter{Executor: "wasm", MaxPrice: 2, MinMemory: 1 << 25}, 0},
	} {
		if _, _, n := r.Discover(c.f, "", 100, now); n != c.want {
			t.Errorf("%+v: %d matches, want %d", c.f, n, c.want)
		}
	}
}

func TestRegistryExpiryAndHeartbeat(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := NewRegistry(10*time.Second, 1000)
	w := ids(t, 2)
	req := &pb.RegisterRequest{Executors: []string{"wasm"}, Slots: 1}
	if _, isNew, _ := r.Register(w[0], req, t0); !isNew {
		t.Fatal("first registration not new")
	}
	r.Register(w[1], req, t0)
	if _, isNew, _ := r.Register(w[0], req, t0.Add(8*time.Second)); isNew {
		t.Fatal("heartbeat counted as new")
	}
	if gone := r.Expire(t0.Add(9 * time.Second)); len(gone) != 0 {
		t.Fatalf("expired early: %v", gone)
	}
	if _, _, n := r.Discover(Filter{}, "", 10, t0.Add(11*time.Second)); n != 1 {
		t.Fatalf("discover returned %d live workers past w1's TTL, want 1", n)
	}
	gone := r.Expire(t0.Add(11 * time.Second))
	if len(gone) != 1 || gone[0] != w[1] || r.Len() != 1 {
		t.Fatalf("expired %v, %d left", gone, r.Len())
	}
}

func TestRegistryFull(t *testing.T) {
	r := NewRegistry(time.Minute, 2)
	w := ids(t, 3)
	req := &pb.RegisterRequest{Executors: []string{"wasm"}, Slots: 1}
	now := time.Unix(0, 0)
	r.Register(w[0], req, now)
	r.Register(w[1], req, now)
	if _, _, err := r.Register(w[2], req, now); err != ErrFull {
		t.Fatalf("third registration: %v", err)
	}
	if _, _, err := r.Register(w[0], req, now); err != nil {
		t.Fatalf("refresh when full: %v", err)
	}
}

func TestValidateRegister(t *testing.T) {
	ok := &pb.RegisterRequest{Executors: []string{"wasm"}, Slots: 2, FreeSlots: 1, Addrs: [][]byte{{4, 127, 0, 0, 1, 6, 0, 80}}}
	if err := ValidateRegister(ok); err != nil {
		t.Fatal(err)
	}
	bad := map[string]*pb.RegisterRequest{
		"no executor":   {Slots: 1},
		"no slots":      {Executors: []string{"wasm"}},
		"free > slots":  {Executors: []string{"wasm"}, Slots: 1, FreeSlots: 2},
		"bad multiaddr": {Executors: []string{"wasm"}, Slots: 1, Addrs: [][]byte{{0xff, 0xff}}},
		"long name":     {Executors: []string{fmt.Sprintf("%040d", 0)}, Slots: 1},
		"many addrs":    {Executors: []string{"wasm"}, Slots: 1, Addrs: make([][]byte, 33)},
	}
	for name, req := range bad {
		if err := ValidateRegister(req); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
