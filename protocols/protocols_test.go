package protocols

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func TestFramingRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 1024)
	in := []*pb.RegisterRequest{{Agent: "a", Slots: 1}, {Executors: []string{"wasm"}, Slots: 4}, {}}
	for _, m := range in {
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(&buf, 1024)
	for i, want := range in {
		var got pb.RegisterRequest
		if err := r.Read(&got); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !proto.Equal(&got, want) {
			t.Fatalf("message %d: got %v want %v", i, &got, want)
		}
	}
	var m pb.RegisterRequest
	if err := r.Read(&m); !errors.Is(err, io.EOF) {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
}

func TestFramingCaps(t *testing.T) {
	big := &pb.RegisterRequest{Agent: strings.Repeat("x", 2000)}
	if err := NewWriter(io.Discard, 1024).Write(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("writer: %v, want ErrTooLarge", err)
	}
	var buf bytes.Buffer
	_ = NewWriter(&buf, 1<<20).Write(big)
	var m pb.RegisterRequest
	if err := NewReader(&buf, 1024).Read(&m); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("reader: %v, want ErrTooLarge", err)
	}
	// A length prefix claiming 1 GiB must fail at once, not allocate.
	huge := protowire.AppendVarint(nil, 1<<30)
	if err := NewReader(bytes.NewReader(huge), 1024).Read(&m); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("huge prefix: %v, want ErrTooLarge", err)
	}
}

func TestFramingMalformed(t *testing.T) {
	cases := map[string][]byte{
		"truncated body":   append(protowire.AppendVarint(nil, 10), 1, 2, 3),
		"garbage body":     append(protowire.AppendVarint(nil, 3), 0xff, 0xff, 0xff),
		"truncated varint": {0x80},
	}
	for name, data := range cases {
		var m pb.RegisterRequest
		err := NewReader(bytes.NewReader(data), 1024).Read(&m)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func TestRemoteErrorIs(t *testing.T) {
	err := FromPB(&pb.Error{Code: pb.ErrorCode_QUEUE_FULL, Message: "10 queued"})
	if !errors.Is(err, Code(pb.ErrorCode_QUEUE_FULL)) || errors.Is(err, Code(pb.ErrorCode_JOB_TRAP)) {
		t.Fatalf("Is: %v", err)
	}
	if got := ToPB(err); got.Code != pb.ErrorCode_QUEUE_FULL || got.Message != "10 queued" {
		t.Fatalf("round trip: %v", got)
	}
	if ToPB(ErrTooLarge).Code != pb.ErrorCode_TOO_LARGE || ToPB(errors.New("x")).Code != pb.ErrorCode_INTERNAL {
		t.Fatal("ToPB mapping")
	}
	if FromPB(nil) != nil || FromPB(&pb.Error{}) != nil {
		t.Fatal("empty error is not nil")
	}
	if CodeName(pb.ErrorCode_PRICE_BELOW_FLOOR) != "price below floor" {
		t.Fatal(CodeName(pb.ErrorCode_PRICE_BELOW_FLOOR))
	}
}

func key(t testing.TB) (crypto.PrivKey, peer.ID) {
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return k, id
}

func TestBidSignatures(t *testing.T) {
	k, id := key(t)
	_, other := key(t)
	sb, err := SignBid(k, &pb.Bid{SeriesId: "s", Worker: []byte(id), PricePerJob: 3, MaxJobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, signer, err := VerifyBid(sb)
	if err != nil || signer != id || b.PricePerJob != 3 {
		t.Fatalf("verify: %v %v %v", b, signer, err)
	}
	// A forwarder that lowers the price breaks the signature.
	var changed pb.Bid
	_ = proto.Unmarshal(sb.Bid, &changed)
	changed.PricePerJob = 1
	raw, _ := proto.Marshal(&changed)
	if _, _, err := VerifyBid(&pb.SignedBid{Bid: raw, Signature: sb.Signature}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("changed price: %v", err)
	}
	// Claiming to be another worker breaks it too.
	changed.PricePerJob, changed.Worker = 3, []byte(other)
	raw, _ = proto.Marshal(&changed)
	if _, _, err := VerifyBid(&pb.SignedBid{Bid: raw, Signature: sb.Signature}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other worker: %v", err)
	}
	// A bid signature is not a receipt signature.
	if _, _, err := VerifyReceipt(&pb.SignedReceipt{Receipt: sb.Bid, Signature: sb.Signature}); err == nil {
		t.Fatal("bid signature accepted as a receipt")
	}
}

func TestReceiptCommitsToResult(t *testing.T) {
	k, id := key(t)
	r := &pb.JobResult{ExitCode: 0, Stdout: []byte("3.14"), Outputs: []*pb.File{{Name: "a", Data: []byte("1")}}}
	sr, err := SignReceipt(k, &pb.Receipt{JobId: "j", Worker: []byte(id), ResultHash: ResultHash(r)})
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := VerifyReceipt(sr)
	if err != nil || !bytes.Equal(rc.ResultHash, ResultHash(r)) {
		t.Fatal("receipt does not verify")
	}
	r.Outputs[0].Data = []byte("2")
	if bytes.Equal(rc.ResultHash, ResultHash(r)) {
		t.Fatal("changed output, same hash")
	}
	// Moving bytes between fields changes the hash (length prefixes).
	a := ResultHash(&pb.JobResult{Stdout: []byte("ab"), Stderr: []byte("")})
	b := ResultHash(&pb.JobResult{Stdout: []byte("a"), Stderr: []byte("b")})
	if bytes.Equal(a, b) {
		t.Fatal("field boundaries not hashed")
	}
}
