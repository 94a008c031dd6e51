package protocols

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/p2pjobs/p2pnode/protocols/pb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// FuzzReadMessages feeds arbitrary bytes to the framing reader for every
// message type a peer can send us. Each read must end in a message, io.EOF,
// ErrTooLarge or ErrMalformed: never a panic, never another error.
func FuzzReadMessages(f *testing.F) {
	seed := func(m proto.Message) []byte {
		var buf bytes.Buffer
		_ = NewWriter(&buf, 1<<20).Write(m)
		return buf.Bytes()
	}
	f.Add(seed(&pb.RegisterRequest{Executors: []string{"wasm"}, Slots: 2, Addrs: [][]byte{{4, 127, 0, 0, 1}}}))
	f.Add(seed(&pb.DiscoverRequest{Executor: "wasm", Limit: 10, Cursor: "x"}))
	f.Add(seed(&pb.BidRequest{SeriesId: "s", JobCount: 5, ModuleHash: make([]byte, 32)}))
	f.Add(seed(&pb.JobStreamMsg{Msg: &pb.JobStreamMsg_Job{Job: &pb.JobRequest{JobId: "j", Args: []string{"a"}, Env: map[string]string{"A": "1"}}}}))
	f.Add(seed(&pb.JobStreamMsg{Msg: &pb.JobStreamMsg_Chunk{Chunk: &pb.ModuleChunk{Data: []byte{0, 'a', 's', 'm'}, Last: true}}}))
	f.Add(seed(&pb.JobStreamReply{Msg: &pb.JobStreamReply_Result{Result: &pb.JobResult{Seq: 1, Stdout: []byte("x")}}}))
	f.Add(protowire.AppendVarint(nil, 1<<40))
	f.Add([]byte{0x80, 0x80, 0x80})
	news := []func() proto.Message{
		func() proto.Message { return &pb.RegisterRequest{} },
		func() proto.Message { return &pb.RegisterResponse{} },
		func() proto.Message { return &pb.DiscoverRequest{} },
		func() proto.Message { return &pb.DiscoverResponse{} },
		func() proto.Message { return &pb.BidRequest{} },
		func() proto.Message { return &pb.BidResponse{} },
		func() proto.Message { return &pb.JobStreamMsg{} },
		func() proto.Message { return &pb.JobStreamReply{} },
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, mk := range news {
			r := NewReader(bytes.NewReader(data), 4096)
			for range 8 {
				err := r.Read(mk())
				if err == nil {
					continue
				}
				if !errors.Is(err, io.EOF) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("unexpected error class: %v", err)
				}
				break
			}
		}
	})
}

// FuzzVerify feeds arbitrary signed bids and receipts to the verifiers:
// they must reject (never panic on) anything not signed by the peer named.
func FuzzVerify(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0x12, 0x02, 0x00, 0x24}, []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, body, sig []byte) {
		if _, _, err := VerifyBid(&pb.SignedBid{Bid: body, Signature: sig}); err == nil {
			t.Fatal("random bytes verified as a bid")
		}
		if _, _, err := VerifyReceipt(&pb.SignedReceipt{Receipt: body, Signature: sig}); err == nil {
			t.Fatal("random bytes verified as a receipt")
		}
	})
}
