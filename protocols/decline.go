package protocols

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"google.golang.org/protobuf/proto"
)

// declineDomain separates decline signatures from bids, receipts and blocks.
const declineDomain = "p2pjobs-decline:"

// Decline size limits: the worker shortens its message to MaxDeclineMessage
// before signing; a signed decline over MaxDeclineSize is refused unread.
const (
	MaxDeclineMessage = 256
	MaxDeclineSize    = 1024
)

// SignDecline signs a worker's refusal of a flooded solicitation (token)
// from client for series. The error's message is cut to MaxDeclineMessage.
func SignDecline(key crypto.PrivKey, client peer.ID, series string, token []byte, reason error) (*pb.SignedDecline, error) {
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	e := ToPB(reason)
	if len(e.Message) > MaxDeclineMessage {
		e.Message = e.Message[:MaxDeclineMessage]
	}
	raw, err := deterministic.Marshal(&pb.Decline{Worker: []byte(self), Client: []byte(client), SeriesId: series, Token: token, Error: e})
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(append([]byte(declineDomain), raw...))
	if err != nil {
		return nil, err
	}
	return &pb.SignedDecline{Decline: raw, Signature: sig}, nil
}

// VerifyDecline decodes sd and checks that the worker it names signed it.
// Whether it is for the right client, series and flood is the caller's
// check.
func VerifyDecline(sd *pb.SignedDecline) (*pb.Decline, peer.ID, error) {
	switch {
	case sd == nil:
		return nil, "", fmt.Errorf("%w: no decline", ErrMalformed)
	case len(sd.Decline) > MaxDeclineSize:
		return nil, "", fmt.Errorf("%w: decline of %d bytes over %d", ErrMalformed, len(sd.Decline), MaxDeclineSize)
	}
	var d pb.Decline
	if err := proto.Unmarshal(sd.Decline, &d); err != nil {
		return nil, "", fmt.Errorf("%w: decline: %w", ErrMalformed, err)
	}
	if d.Error == nil {
		return nil, "", fmt.Errorf("%w: decline without a reason", ErrMalformed)
	}
	id, err := verify(d.Worker, declineDomain, sd.Decline, sd.Signature)
	if err != nil {
		return nil, "", err
	}
	return &d, id, nil
}
