package overlay

import (
	"bytes"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Solicitation limits and defaults.
const (
	DefaultTTL  = 4
	MaxTTL      = 8
	MaxPathList = 64 // entries in path, and in avoid
	MinToken    = 8
	MaxToken    = 64
	// MaxProfferBids bounds the bids (and, separately, the declines) one
	// aggregate carries; more are dropped, the rest still reach the client.
	MaxProfferBids = 2048
	// DefaultHop and DefaultBase make the wait at a worker whose path (itself
	// included) is n long: (ttl - n - 1) * hop + base, as in the original.
	DefaultHop  = time.Second
	DefaultBase = 3 * time.Second
)

// Checked is a solicitation that passed Check, with its IDs decoded.
type Checked struct {
	Path   []peer.ID
	Avoid  []peer.ID
	Client peer.ID
}

// Check validates a solicitation received by self from remote: TTL within
// 1..MaxTTL, path and avoid within MaxPathList entries of valid peer IDs,
// room left on the path, no loop through self, a sane token, a client, and
// a sender that is the last worker on the path (or the client itself when
// the path is empty). Errors are typed (*protocols.RemoteError).
func Check(self, remote peer.ID, s *pb.Solicitation) (Checked, error) {
	var c Checked
	switch {
	case s.Request == nil:
		return c, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "solicitation without a bid request")
	case s.Ttl == 0 || s.Ttl > MaxTTL:
		return c, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "ttl %d outside 1..%d", s.Ttl, MaxTTL)
	case len(s.Path) > MaxPathList:
		return c, protocols.Errorf(pb.ErrorCode_TOO_LARGE, "path of %d entries over %d", len(s.Path), MaxPathList)
	case len(s.Avoid) > MaxPathList:
		return c, protocols.Errorf(pb.ErrorCode_TOO_LARGE, "avoid list of %d entries over %d", len(s.Avoid), MaxPathList)
	case len(s.Path) >= int(s.Ttl):
		return c, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "path of %d entries leaves no room under ttl %d", len(s.Path), s.Ttl)
	case len(s.Token) < MinToken || len(s.Token) > MaxToken:
		return c, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "token of %d bytes (%d to %d)", len(s.Token), MinToken, MaxToken)
	case len(s.ClientAddrs) > MaxPathList:
		return c, protocols.Errorf(pb.ErrorCode_TOO_LARGE, "%d client addresses over %d", len(s.ClientAddrs), MaxPathList)
	}
	var err error
	if c.Client, err = peer.IDFromBytes(s.Client); err != nil {
		return c, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "client: %v", err)
	}
	if c.Path, err = decodeIDs("path", s.Path); err != nil {
		return c, err
	}
	if c.Avoid, err = decodeIDs("avoid", s.Avoid); err != nil {
		return c, err
	}
	if i := slices.Index(c.Path, self); i >= 0 {
		return c, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "loop: this worker is already at hop %d of the path", i+1)
	}
	switch {
	case len(c.Path) == 0 && remote != c.Client:
		return c, protocols.Errorf(pb.ErrorCode_UNAUTHORIZED, "an empty path must come from the client itself")
	case len(c.Path) > 0 && c.Path[len(c.Path)-1] != remote:
		return c, protocols.Errorf(pb.ErrorCode_UNAUTHORIZED, "the sender is not the last worker on the path")
	}
	return c, nil
}

func decodeIDs(what string, raw [][]byte) ([]peer.ID, error) {
	out := make([]peer.ID, 0, len(raw))
	for i, b := range raw {
		id, err := peer.IDFromBytes(b)
		if err != nil {
			return nil, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "%s entry %d: %v", what, i, err)
		}
		out = append(out, id)
	}
	return out, nil
}

// Forward decides what self does with a checked solicitation: the
// neighbours to send it to (none when the path, self included, reaches the
// TTL) and the message they get, whose path and avoid list gain self and
// whose avoid list gains every recipient. The avoid list keeps its newest
// MaxPathList entries.
func Forward(self peer.ID, s *pb.Solicitation, c Checked, neighbours []peer.ID) ([]peer.ID, *pb.Solicitation) {
	if len(c.Path)+1 >= int(s.Ttl) {
		return nil, nil
	}
	var to []peer.ID
	for _, n := range neighbours {
		if n != self && n != c.Client && !slices.Contains(c.Avoid, n) && !slices.Contains(c.Path, n) && !slices.Contains(to, n) {
			to = append(to, n)
		}
	}
	if len(to) == 0 {
		return nil, nil
	}
	out := &pb.Solicitation{Request: s.Request, Ttl: s.Ttl, Token: s.Token, Client: s.Client, ClientAddrs: s.ClientAddrs}
	out.Path = append(slices.Clone(s.Path), []byte(self))
	avoid := append(slices.Clone(s.Avoid), []byte(self))
	for _, n := range to {
		avoid = append(avoid, []byte(n))
	}
	if len(avoid) > MaxPathList {
		avoid = avoid[len(avoid)-MaxPathList:]
	}
	out.Avoid = avoid
	return to, out
}

// Wait is how long a worker whose path (itself included) is pathLen long
// waits for its recipients' answers: (ttl - pathLen - 1) hops plus base.
func Wait(ttl uint32, pathLen int, hop, base time.Duration) time.Duration {
	return time.Duration(max(int(ttl)-pathLen-1, 0))*hop + base
}

// MaxWait is the longest any worker waits (an entry worker under MaxTTL).
func MaxWait(hop, base time.Duration) time.Duration { return Wait(MaxTTL, 1, hop, base) }

// Verified reports whether a signed bid is a valid bid by the worker it
// names, made for client on series. Merge drops what it rejects.
type Verifier func(sb *pb.SignedBid) (peer.ID, error)

// BidVerifier checks signature, client and series of a bid.
func BidVerifier(client peer.ID, series string) Verifier {
	return func(sb *pb.SignedBid) (peer.ID, error) {
		b, id, err := protocols.VerifyBid(sb)
		if err != nil {
			return "", err
		}
		if !bytes.Equal(b.Client, []byte(client)) || b.SeriesId != series {
			return "", protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "bid by %s is for another client or series", id)
		}
		return id, nil
	}
}

// DeclineVerifier reports whether a signed decline is a valid decline by
// the worker it names, for the flood it travels in. Merge drops what it
// rejects.
type DeclineVerifier func(sd *pb.SignedDecline) (peer.ID, error)

// FloodDeclineVerifier checks signature, client, series and token of a
// decline: a decline made for another flood cannot be replayed into this one.
func FloodDeclineVerifier(client peer.ID, series string, token []byte) DeclineVerifier {
	return func(sd *pb.SignedDecline) (peer.ID, error) {
		d, id, err := protocols.VerifyDecline(sd)
		if err != nil {
			return "", err
		}
		if !bytes.Equal(d.Client, []byte(client)) || d.SeriesId != series || !bytes.Equal(d.Token, token) {
			return "", protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "decline by %s is for another client, series or flood", id)
		}
		return id, nil
	}
}

// Merge aggregates own answer (a bid, or a signed decline) with the
// recipients' proffers: bids and declines are verified and de-duplicated by
// worker (first one kept), declines dropped for workers that also bid, both
// capped at MaxProfferBids; unsigned declines (ProfferDecline) are dropped.
// It returns the aggregate and how many bids and declines were rejected as
// forged or misdirected.
func Merge(self peer.ID, own *pb.SignedBid, ownDecline *pb.SignedDecline, answers []*pb.Proffer, verify Verifier, verifyDecline DeclineVerifier) (*pb.Proffer, int) {
	out := &pb.Proffer{Reached: 1}
	bidders := map[peer.ID]bool{}
	decliners := map[peer.ID]bool{}
	forged := 0
	addBid := func(sb *pb.SignedBid, trusted bool) {
		if len(out.Bids) >= MaxProfferBids {
			return // checked first: verifying costs a signature check
		}
		var id peer.ID
		if trusted {
			id = self
		} else {
			var err error
			if id, err = verify(sb); err != nil {
				forged++
				return
			}
		}
		if bidders[id] {
			return
		}
		bidders[id] = true
		out.Bids = append(out.Bids, sb)
	}
	if own != nil {
		addBid(own, true)
	}
	type decline struct {
		sd *pb.SignedDecline
		id peer.ID
	}
	var declines []decline
	if ownDecline != nil {
		declines = append(declines, decline{ownDecline, self})
	}
	for _, a := range answers {
		if a == nil {
			continue
		}
		out.Reached += min(a.Reached, 1<<16)
		for _, sb := range a.Bids {
			addBid(sb, false)
		}
		for _, sd := range a.SignedDeclines {
			if len(declines) >= MaxProfferBids {
				break // checked here: verifying costs a signature check
			}
			id, err := verifyDecline(sd)
			if err != nil {
				forged++
				continue
			}
			declines = append(declines, decline{sd, id})
		}
	}
	for _, d := range declines {
		if bidders[d.id] || decliners[d.id] || len(out.SignedDeclines) >= MaxProfferBids {
			continue
		}
		decliners[d.id] = true
		out.SignedDeclines = append(out.SignedDeclines, d.sd)
	}
	return out, forged
}
