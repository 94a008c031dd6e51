package authority

import (
	"fmt"
	"strings"
	"testing"
	"time"

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
