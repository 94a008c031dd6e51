package overlay

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

func raw(ps ...peer.ID) [][]byte {
	out := make([][]byte, len(ps))
	for i, p := range ps {
		out[i] = []byte(p)
	}
	return out
}

func TestCheck(t *testing.T) {
	p := ids(t, 5)
	self, client, w1, w2 := p[0], p[1], p[2], p[3]
	ok := func() *pb.Solicitation {
		return &pb.Solicitation{Request: &pb.BidRequest{SeriesId: "s"}, Ttl: 4, Token: []byte("01234567"), Client: []byte(client),
			Path: raw(w1, w2), Avoid: raw(w1, w2)}
	}
	if _, err := Check(self, w2, ok()); err != nil {
		t.Fatalf("valid solicitation: %v", err)
	}
	long := make([]peer.ID, MaxPathList+1)
	for i := range long {
		long[i] = w1
	}
	cases := []struct {
		name   string
		edit   func(*pb.Solicitation)
		remote peer.ID
		code   pb.ErrorCode
		msg    string
	}{
		{"no request", func(s *pb.Solicitation) { s.Request = nil }, w2, pb.ErrorCode_BAD_REQUEST, "without"},
		{"ttl over max", func(s *pb.Solicitation) { s.Ttl = MaxTTL + 1 }, w2, pb.ErrorCode_BAD_REQUEST, "ttl"},
		{"ttl zero", func(s *pb.Solicitation) { s.Ttl = 0 }, w2, pb.ErrorCode_BAD_REQUEST, "ttl"},
		{"huge path", func(s *pb.Solicitation) { s.Path = raw(long...) }, w1, pb.ErrorCode_TOO_LARGE, "path"},
		{"huge avoid", func(s *pb.Solicitation) { s.Avoid = raw(long...) }, w2, pb.ErrorCode_TOO_LARGE, "avoid"},
		{"path at ttl", func(s *pb.Solicitation) { s.Ttl = 2 }, w2, pb.ErrorCode_BAD_REQUEST, "no room"},
		{"loop", func(s *pb.Solicitation) { s.Path = raw(self, w2) }, w2, pb.ErrorCode_BAD_REQUEST, "loop"},
		{"bad path id", func(s *pb.Solicitation) { s.Path = [][]byte{[]byte("nope"), []byte(w2)} }, w2, pb.ErrorCode_BAD_REQUEST, "path entry 0"},
		{"bad avoid id", func(s *pb.Solicitation) { s.Avoid = [][]byte{{1, 2, 3}} }, w2, pb.ErrorCode_BAD_REQUEST, "avoid entry 0"},
		{"short token", func(s *pb.Solicitation) { s.Token = []byte("x") }, w2, pb.ErrorCode_BAD_REQUEST, "token"},
		{"no client", func(s *pb.Solicitation) { s.Client = nil }, w2, pb.ErrorCode_BAD_REQUEST, "client"},
		{"spoofed sender", func(s *pb.Solicitation) {}, w1, pb.ErrorCode_UNAUTHORIZED, "last worker"},
		{"entry not from client", func(s *pb.Solicitation) { s.Path, s.Avoid = nil, nil }, w1, pb.ErrorCode_UNAUTHORIZED, "client itself"},
	}
	for _, c := range cases {
		s := ok()
		c.edit(s)
		_, err := Check(self, c.remote, s)
		var re *protocols.RemoteError
		if !errors.As(err, &re) || re.Code != c.code || !strings.Contains(re.Message, c.msg) {
			t.Errorf("%s: %v, want %v containing %q", c.name, err, c.code, c.msg)
		}
	}
	s := ok()
	s.Path, s.Avoid = nil, nil
	if _, err := Check(self, client, s); err != nil {
		t.Errorf("entry from the client: %v", err)
	}
}

func TestForward(t *testing.T) {
	p := ids(t, 8)
	self, client, w1, n1, n2, n3 := p[0], p[1], p[2], p[3], p[4], p[5]
	s := &pb.Solicitation{Request: &pb.BidRequest{SeriesId: "s"}, Ttl: 4, Token: []byte("01234567"), Client: []byte(client),
		Path: raw(w1), Avoid: raw(w1, n2)}
	c, err := Check(self, w1, s)
	if err != nil {
		t.Fatal(err)
	}
	to, out := Forward(self, s, c, []peer.ID{n1, n2, n3, w1, self})
	if !slices.Equal(to, []peer.ID{n1, n3}) {
		t.Fatalf("recipients %v, want n1 n3 (n2 avoided, w1 on the path)", to)
	}
	if got := out.Path; len(got) != 2 || peer.ID(got[1]) != self {
		t.Errorf("path not extended by self: %d", len(got))
	}
	wantAvoid := []peer.ID{w1, n2, self, n1, n3}
	gotAvoid, _ := decodeIDs("avoid", out.Avoid)
	if !slices.Equal(gotAvoid, wantAvoid) {
		t.Errorf("avoid %v, want %v", gotAvoid, wantAvoid)
	}
	if len(s.Path) != 1 || len(s.Avoid) != 2 {
		t.Errorf("input modified")
	}
	// The last hop: path (self included) reaches the TTL.
	s.Ttl = 2
	c, _ = Check(self, w1, s)
	if to, out := Forward(self, s, c, []peer.ID{n1}); to != nil || out != nil {
		t.Errorf("forwarded past the ttl")
	}
	// The avoid list stays within its cap.
	s.Ttl, s.Avoid = 8, raw(ids(t, MaxPathList)...)
	c, _ = Check(self, w1, s)
	if _, out := Forward(self, s, c, []peer.ID{n1}); len(out.Avoid) != MaxPathList {
		t.Errorf("avoid list of %d", len(out.Avoid))
	}
}

func TestWait(t *testing.T) {
	h, b := time.Second, 3*time.Second
	for _, c := range []struct {
		ttl  uint32
		path int
		want time.Duration
	}{{4, 1, 5 * time.Second}, {4, 2, 4 * time.Second}, {4, 3, 3 * time.Second}, {4, 4, 3 * time.Second}, {8, 1, 9 * time.Second}} {
		if got := Wait(c.ttl, c.path, h, b); got != c.want {
			t.Errorf("Wait(%d, %d) = %v, want %v", c.ttl, c.path, got, c.want)
		}
	}
}

func signed(t testing.TB, key crypto.PrivKey, client peer.ID, series string, price uint64) *pb.SignedBid {
	t.Helper()
	id, _ := peer.IDFromPrivateKey(key)
	sb, err := protocols.SignBid(key, &pb.Bid{SeriesId: series, Worker: []byte(id), Client: []byte(client), PricePerJob: price, MaxJobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

func declined(t testing.TB, key crypto.PrivKey, client peer.ID, series string, token []byte, code pb.ErrorCode) *pb.SignedDecline {
	t.Helper()
	sd, err := protocols.SignDecline(key, client, series, token, protocols.Errorf(code, "%s", strings.Repeat("x", 300)))
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

func TestMerge(t *testing.T) {
	keys := make([]crypto.PrivKey, 5)
	wid := make([]peer.ID, 5)
	for i := range keys {
		keys[i], _, _ = crypto.GenerateEd25519Key(nil)
		wid[i], _ = peer.IDFromPrivateKey(keys[i])
	}
	client := ids(t, 1)[0]
	tok := []byte("token-01")
	own := signed(t, keys[0], client, "s", 1)
	b1 := signed(t, keys[1], client, "s", 2)
	b1again := signed(t, keys[1], client, "s", 3)
	forged := signed(t, keys[2], client, "s", 4)
	forged.Bid[len(forged.Bid)-1] ^= 1 // a forwarder changed the price
	other := signed(t, keys[3], ids(t, 1)[0], "s", 1)
	d2 := declined(t, keys[2], client, "s", tok, pb.ErrorCode_QUEUE_FULL)
	d1 := declined(t, keys[1], client, "s", tok, pb.ErrorCode_QUEUE_FULL) // worker 1 bid too
	changed := declined(t, keys[3], client, "s", tok, pb.ErrorCode_QUEUE_FULL)
	changed.Decline[len(changed.Decline)-1] ^= 1                                               // a forwarder changed the reason
	replayed := declined(t, keys[4], client, "s", []byte("token-02"), pb.ErrorCode_QUEUE_FULL) // from another flood
	invented := &pb.SignedDecline{Decline: append([]byte{}, d2.Decline...), Signature: make([]byte, 64)}
	answers := []*pb.Proffer{
		{Bids: []*pb.SignedBid{b1, forged}, Reached: 3, SignedDeclines: []*pb.SignedDecline{d2, changed},
			Declines: []*pb.ProfferDecline{{Worker: []byte(wid[3]), Error: &pb.Error{Code: pb.ErrorCode_QUEUE_FULL}}}}, // unsigned: ignored
		{Bids: []*pb.SignedBid{b1again, other}, Reached: 2, SignedDeclines: []*pb.SignedDecline{d1, replayed, invented, nil}},
		nil,
	}
	agg, bad := Merge(wid[0], own, nil, answers, BidVerifier(client, "s"), FloodDeclineVerifier(client, "s", tok))
	if bad != 6 {
		t.Errorf("%d rejected, want 6 (forged bid, other client's bid, changed, replayed, invented and empty declines)", bad)
	}
	if len(agg.Bids) != 2 || agg.Bids[0] != own || agg.Bids[1] != b1 {
		t.Errorf("bids %d, want own then b1", len(agg.Bids))
	}
	if len(agg.SignedDeclines) != 1 || agg.SignedDeclines[0] != d2 || len(agg.Declines) != 0 {
		t.Errorf("declines %v (unsigned %v), want only worker 2's (worker 1 bid)", agg.SignedDeclines, agg.Declines)
	}
	if d, id, err := protocols.VerifyDecline(d2); err != nil || id != wid[2] || len(d.Error.Message) != protocols.MaxDeclineMessage {
		t.Errorf("decline by %s: %v, message of %d bytes", id, err, len(d.GetError().GetMessage()))
	}
	if agg.Reached != 6 {
		t.Errorf("reached %d, want 6", agg.Reached)
	}
	ownDecline := declined(t, keys[0], client, "s", tok, pb.ErrorCode_CLIENT_REFUSED)
	agg, _ = Merge(wid[0], nil, ownDecline, nil, BidVerifier(client, "s"), FloodDeclineVerifier(client, "s", tok))
	if len(agg.Bids) != 0 || len(agg.SignedDeclines) != 1 || agg.SignedDeclines[0] != ownDecline {
		t.Errorf("own decline: %v", agg)
	}
}
