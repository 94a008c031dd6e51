package authority

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"google.golang.org/protobuf/proto"
)

// TestDiscoverPageFitsTheCap: registrations as large as ValidateRegister
// allows must not make a page of workers too large to send (the stream was
// reset and nobody could discover through this authority): the page stops
// short and the cursor carries on, so every worker is still listed.
func TestDiscoverPageFitsTheCap(t *testing.T) {
	now := time.Unix(1000, 0)
	s := &Service{reg: NewRegistry(time.Minute, 1000), now: func() time.Time { return now }}
	var addrs [][]byte
	for i := range maxAddrs {
		a := ma.StringCast(fmt.Sprintf("/dns4/%s%d.example.org/tcp/4001", strings.Repeat("x", 200), i))
		addrs = append(addrs, a.Bytes())
	}
	const n = 300
	for _, id := range ids(t, n) {
		req := &pb.RegisterRequest{Addrs: addrs, Executors: []string{"wasm"}, Slots: 1, Agent: strings.Repeat("a", maxAgentLen)}
		if err := ValidateRegister(req); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.reg.Register(id, req, now); err != nil {
			t.Fatal(err)
		}
	}
	seen, cursor := 0, ""
	for range n {
		resp := s.discover(&pb.DiscoverRequest{Limit: maxDiscoverPage, Cursor: cursor})
		if resp.Error != nil {
			t.Fatal(resp.Error)
		}
		if size := proto.Size(resp); size > protocols.MaxDiscoverMsg {
			t.Fatalf("page of %d workers is %d bytes, over the %d-byte cap", len(resp.Workers), size, protocols.MaxDiscoverMsg)
		}
		seen += len(resp.Workers)
		if cursor = resp.NextCursor; cursor == "" {
			break
		}
	}
	if seen != n {
		t.Fatalf("listed %d of %d workers", seen, n)
	}
}

// TestDiscoverWhileRegistering: discovers page a snapshot outside the lock
// while registrations and heartbeats change the registry (run with -race):
// every page is sorted, and a worker registered before the discovers began
// and never removed is always listed.
func TestDiscoverWhileRegistering(t *testing.T) {
	now := time.Unix(1000, 0)
	s := &Service{reg: NewRegistry(time.Minute, 10000), now: func() time.Time { return now }}
	workers := ids(t, 200)
	req := &pb.RegisterRequest{Executors: []string{"wasm"}, Slots: 1}
	for _, id := range workers[:100] {
		s.register(id, nil, req)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 600 {
			s.register(workers[100+i%100], nil, &pb.RegisterRequest{Executors: []string{"wasm"}, Slots: 1, FreeSlots: uint32(i % 2)})
			s.register(workers[i%100], nil, req) // heartbeats
		}
	}()
	for range 60 {
		resp := s.discover(&pb.DiscoverRequest{Executor: "wasm", Limit: maxDiscoverPage})
		if len(resp.Workers) < 100 || resp.Total < 100 {
			t.Fatalf("listed %d of at least 100 workers (total %d)", len(resp.Workers), resp.Total)
		}
		for i := 1; i < len(resp.Workers); i++ {
			a, _ := peer.IDFromBytes(resp.Workers[i-1].PeerId)
			b, _ := peer.IDFromBytes(resp.Workers[i].PeerId)
			if a.String() >= b.String() {
				t.Fatal("page not in peer-ID order")
			}
		}
	}
	<-done
}
