package nodetest_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	lp2pnet "github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// rawStream opens a stream from one node to another with nothing of ours
// on top: the bytes written are exactly what a hostile peer would send.
func rawStream(t *testing.T, from, to *node.Node, p protocol.ID) lp2pnet.Stream {
	t.Helper()
	from.Host.Peerstore().AddAddrs(to.Host.ID(), to.Host.Addrs(), time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := from.Host.NewStream(ctx, to.Host.ID(), p)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	return s
}

// TestHostileRequestsGetTypedErrors: malformed and oversized frames on the
// request/response protocols are answered with typed errors, and the
// services keep serving everyone else.
func TestHostileRequestsGetTypedErrors(t *testing.T) {
	auth, ws, cl := network(t, 1)
	w := ws[0]
	cases := []struct {
		name string
		to   *node.Node
		p    protocol.ID
		raw  []byte
		resp proto.Message
		want pb.ErrorCode
	}{
		{"register garbage", auth, protocols.Register, append(protowire.AppendVarint(nil, 4), 0xff, 0xff, 0xff, 0xff), &pb.RegisterResponse{}, pb.ErrorCode_BAD_REQUEST},
		{"register oversized", auth, protocols.Register, protowire.AppendVarint(nil, 1<<30), &pb.RegisterResponse{}, pb.ErrorCode_TOO_LARGE},
		{"discover oversized", auth, protocols.Discover, protowire.AppendVarint(nil, protocols.MaxDiscoverMsg+1), &pb.DiscoverResponse{}, pb.ErrorCode_TOO_LARGE},
		{"bid truncated", w, protocols.Bid11, append(protowire.AppendVarint(nil, 50), 0x0a, 0x02), &pb.BidResponse{}, pb.ErrorCode_BAD_REQUEST},
		{"bid oversized", w, protocols.Bid10, protowire.AppendVarint(nil, protocols.MaxBidMsg+1), &pb.BidResponse{}, pb.ErrorCode_TOO_LARGE},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := rawStream(t, cl, c.to, c.p)
			if _, err := s.Write(c.raw); err != nil {
				t.Fatal(err)
			}
			_ = s.CloseWrite()
			if err := protocols.NewReader(s, 1<<20).Read(c.resp); err != nil {
				t.Fatalf("no typed reply: %v", err)
			}
			var e *pb.Error
			switch r := c.resp.(type) {
			case *pb.RegisterResponse:
				e = r.Error
			case *pb.DiscoverResponse:
				e = r.Error
			case *pb.BidResponse:
				e = r.Decline
			}
			if e.GetCode() != c.want {
				t.Fatalf("reply %v, want %v", e, c.want)
			}
		})
	}
	// A request the registry must refuse by its content, not its framing.
	resp := &pb.RegisterResponse{}
	if _, err := protocols.Call(context.Background(), cl.Host, auth.Host.ID(), []protocol.ID{protocols.Register},
		protocols.Exchange{Max: protocols.MaxRegisterMsg, Timeout: 5 * time.Second},
		&pb.RegisterRequest{Executors: []string{strings.Repeat("x", 100)}, Slots: 1}, resp); err != nil {
		t.Fatal(err)
	}
	if resp.GetError().GetCode() != pb.ErrorCode_BAD_REQUEST || auth.Authority.Workers() != 1 {
		t.Fatalf("bad registration: %v; %d workers registered", resp.Error, auth.Authority.Workers())
	}
	// An unknown version is refused at negotiation, before any handler.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cl.Host.NewStream(ctx, w.Host.ID(), "/p2pjobs/bid/9.0.0"); err == nil {
		t.Fatal("bid/9.0.0 was accepted")
	}
	// Everyone else is still served.
	rep := run(t, cl, piSeries(2), client.Hooks{})
	if rep.Failed() != 0 {
		t.Fatalf("series after hostile requests: %d failed", rep.Failed())
	}
}

// TestHostileJobStream: a job stream carrying an oversized frame is reset;
// a job without an award or with absurd arguments gets a typed result; the
// worker keeps serving.
func TestHostileJobStream(t *testing.T) {
	_, ws, cl := network(t, 1)
	w := ws[0]

	// Jobs that arrive without a bid, and with too many arguments.
	s := rawStream(t, cl, w, protocols.Job)
	wr := protocols.NewWriter(s, protocols.MaxJobMsg)
	hash := make([]byte, 32)
	_ = wr.Write(&pb.JobStreamMsg{Msg: &pb.JobStreamMsg_Job{Job: &pb.JobRequest{Seq: 1, SeriesId: "s", JobId: "j1",
		Executor: "wasm", ModuleHash: hash, BidId: []byte("never made")}}})
	_ = wr.Write(&pb.JobStreamMsg{Msg: &pb.JobStreamMsg_Job{Job: &pb.JobRequest{Seq: 2, SeriesId: "s", JobId: "j2",
		Executor: "wasm", ModuleHash: hash, Args: make([]string, 5000)}}})
	_ = s.CloseWrite()
	rd := protocols.NewReader(s, protocols.MaxJobMsg)
	got := map[uint64]pb.ErrorCode{}
	for range 2 {
		var m pb.JobStreamReply
		if err := rd.Read(&m); err != nil {
			t.Fatalf("reply: %v", err)
		}
		got[m.GetResult().GetSeq()] = m.GetResult().GetError().GetCode()
	}
	if got[1] != pb.ErrorCode_NO_AWARD || got[2] != pb.ErrorCode_BAD_REQUEST {
		t.Fatalf("typed results %v, want seq 1 NO_AWARD, seq 2 BAD_REQUEST", got)
	}

	// An oversized frame: the stream is reset, nothing else happens.
	s = rawStream(t, cl, w, protocols.Job)
	_, _ = s.Write(protowire.AppendVarint(nil, protocols.MaxJobMsg+1))
	var m pb.JobStreamReply
	if err := protocols.NewReader(s, protocols.MaxJobMsg).Read(&m); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("oversized job frame: %v, want a reset stream", err)
	}

	rep := run(t, cl, piSeries(3), client.Hooks{})
	if rep.Failed() != 0 {
		t.Fatalf("series after a hostile job stream: %d failed", rep.Failed())
	}
}
