package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/node/overlay"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Discovery modes (the submit command's --discovery flag).
const (
	// DiscoveryAuthority asks the authorities (the DHT when none answers)
	// and floods through the overlay when they return fewer workers than
	// wanted (Series.MaxWorkers, or WithWantWorkers). The default.
	DiscoveryAuthority = "authority"
	// DiscoveryDHT finds workers through DHT provider records only.
	DiscoveryDHT = "dht"
	// DiscoveryFlood uses the authorities only to find a few entry
	// workers and gets every bid through a flooded solicitation.
	DiscoveryFlood = "flood"
	// DiscoveryAll asks authorities and the DHT, bids directly and floods,
	// and merges everything.
	DiscoveryAll = "all"
)

// DiscoveryModes lists the modes for flag help and completion.
var DiscoveryModes = []string{DiscoveryAuthority, DiscoveryDHT, DiscoveryFlood, DiscoveryAll}

// ParseDiscovery validates a --discovery value ("" is the default).
func ParseDiscovery(s string) (string, error) {
	if s == "" {
		return DiscoveryAuthority, nil
	}
	if !slices.Contains(DiscoveryModes, s) {
		return "", fmt.Errorf("client: unknown discovery %q (want authority, dht, flood or all)", s)
	}
	return s, nil
}

type floodOptions struct {
	mode      string
	entries   int // workers handed the solicitation
	ttl       uint32
	hop, base time.Duration
	want      int // flood when discovery finds fewer; 0: Series.MaxWorkers
}

func (f floodOptions) withDefaults() floodOptions {
	if f.mode == "" {
		f.mode = DiscoveryAuthority
	}
	if f.entries <= 0 {
		f.entries = 4
	}
	if f.ttl == 0 {
		f.ttl = overlay.DefaultTTL
	}
	if f.hop <= 0 {
		f.hop = overlay.DefaultHop
	}
	if f.base <= 0 {
		f.base = overlay.DefaultBase
	}
	return f
}

// WithDiscovery sets the discovery mode (DiscoveryAuthority, ...; see
// ParseDiscovery).
func WithDiscovery(mode string) Option { return func(o *options) { o.flood.mode = mode } }

// WithFlood sets how solicitations are flooded: entry workers (default 4),
// TTL (default 4), and the overlay's per-hop and base wait (defaults 1 s
// and 3 s; tests scale them down, and must match the workers').
func WithFlood(entries int, ttl uint32, hop, base time.Duration) Option {
	return func(o *options) {
		o.flood.entries, o.flood.ttl, o.flood.hop, o.flood.base = entries, ttl, hop, base
	}
}

// WithWantWorkers floods whenever discovery finds fewer than n workers.
func WithWantWorkers(n int) Option { return func(o *options) { o.flood.want = n } }

// shouldFlood decides whether Run floods after discovery found found
// workers.
func (c *Client) shouldFlood(found int, s *Series) bool {
	f := c.o.flood.withDefaults()
	switch f.mode {
	case DiscoveryFlood, DiscoveryAll:
		return true
	case DiscoveryDHT:
		return false
	}
	want := f.want
	if want == 0 {
		want = s.MaxWorkers
	}
	return want > 0 && found < want
}

// FloodStats describes one flood.
type FloodStats struct {
	Entries  []peer.ID
	Reached  uint32 // workers that handled it, as the entries report (unverified)
	Bids     int    // verified bids for this request
	Forged   int    // bids and declines dropped: bad signature, another client, series or flood, or failing CheckBid
	Declines int
}

// FloodBids hands req to up to the configured number of entry workers
// (chosen at random from cands, those in prefer first) and turns the
// aggregate into offers with Route "flood". Every bid is verified against
// its maker's signature and checked like a direct bid, so no forwarder can
// forge or change one. Workers in skip are left out of the result.
func (c *Client) FloodBids(ctx context.Context, cands []Candidate, prefer, skip map[peer.ID]bool, req *pb.BidRequest) ([]Offer, []Decline, FloodStats, error) {
	f := c.o.flood.withDefaults()
	var st FloodStats
	order := rand.Perm(len(cands))
	slices.SortStableFunc(order, func(a, b int) int {
		pa, pb := prefer[cands[a].ID], prefer[cands[b].ID]
		switch {
		case pa && !pb:
			return -1
		case pb && !pa:
			return 1
		}
		return 0
	})
	for _, i := range order {
		if len(st.Entries) == f.entries {
			break
		}
		c.h.Peerstore().AddAddrs(cands[i].ID, cands[i].Addrs, time.Hour)
		st.Entries = append(st.Entries, cands[i].ID)
	}
	if len(st.Entries) == 0 {
		return nil, nil, st, fmt.Errorf("client: no worker to hand the solicitation to")
	}
	m := overlay.NewSolicitation(c.h.ID(), c.h.Addrs(), req, f.ttl)
	start := c.o.now()
	agg, forged, err := overlay.Flood(ctx, c.h, st.Entries, m, f.hop, f.base)
	if agg == nil {
		return nil, nil, st, err
	}
	st.Reached, st.Forged = agg.Reached, forged
	var (
		offers   []Offer
		declines []Decline
	)
	for _, sb := range agg.Bids {
		b, signer, verr := protocols.VerifyBid(sb)
		if verr == nil {
			verr = c.CheckBid(b, signer, "", req)
		}
		if verr != nil {
			st.Forged++
			continue
		}
		if skip[signer] {
			continue
		}
		if as := decodeAddrs(b.Addrs); len(as) > 0 {
			c.h.Peerstore().AddAddrs(signer, as, time.Hour)
		}
		offers = append(offers, Offer{Bid: b, Signed: sb, Worker: signer, Proto: protocols.Solicit, Route: "flood",
			Latency: c.o.now().Sub(start)})
		c.log.Emit(events.Event{Kind: events.BidMade, Peer: signer.String(), Series: req.SeriesId, Price: b.PricePerJob,
			Proto: string(protocols.Solicit), Attrs: map[string]any{"jobs": b.MaxJobs, "est_ms": b.EstJobMs, "route": "flood"}})
	}
	st.Bids = len(offers)
	for _, sd := range agg.SignedDeclines {
		// Signed by the worker for this flood: no forwarder invented it or
		// changed its reason (one may still have left a decline out).
		d, id, derr := protocols.VerifyDecline(sd)
		if derr != nil || !bytes.Equal(d.Client, []byte(c.h.ID())) || d.SeriesId != req.SeriesId || !bytes.Equal(d.Token, m.Token) {
			st.Forged++
			continue
		}
		if skip[id] {
			continue
		}
		e := protocols.FromPB(d.Error)
		declines = append(declines, Decline{Worker: id, Err: e})
		c.log.Emit(events.Event{Kind: events.Decline, Peer: id.String(), Series: req.SeriesId, Proto: string(protocols.Solicit), Err: e.Error()})
	}
	st.Declines = len(declines)
	if st.Forged > 0 {
		c.log.Emit(events.Event{Kind: events.Error, Proto: string(protocols.Solicit), Series: req.SeriesId,
			Err: fmt.Sprintf("client: %d forged or misdirected bids or declines dropped from flooded aggregates", st.Forged)})
	}
	return offers, declines, st, err
}

// flood runs FloodBids for Run and merges the result into rep: new workers
// become candidates with Route "flood"; a worker that bid directly keeps
// its direct offer.
func (c *Client) flood(ctx context.Context, rep *Report, req *pb.BidRequest) {
	have := map[peer.ID]bool{}
	for _, o := range rep.Offers {
		have[o.Worker] = true
	}
	known := map[peer.ID]bool{}
	for _, cd := range rep.Candidates {
		known[cd.ID] = true
	}
	offers, declines, _, err := c.FloodBids(ctx, rep.Candidates, have, have, req)
	if err != nil {
		c.log.Emit(events.Event{Kind: events.Error, Proto: string(protocols.Solicit), Series: req.SeriesId, Err: err.Error()})
	}
	for _, o := range offers {
		if !known[o.Worker] {
			known[o.Worker] = true
			rep.Candidates = append(rep.Candidates, Candidate{ID: o.Worker, Addrs: decodeAddrs(o.Bid.Addrs), Route: "flood"})
		}
	}
	rep.Offers = append(rep.Offers, offers...)
	for _, d := range declines {
		if !slices.ContainsFunc(rep.Declines, func(x Decline) bool { return x.Worker == d.Worker }) {
			rep.Declines = append(rep.Declines, d)
		}
	}
}

// Routes counts the offers by the route that found their worker
// ("authority", "dht", "flood").
func Routes(offers []Offer) map[string]int {
	out := map[string]int{}
	for _, o := range offers {
		out[o.Route]++
	}
	return out
}

// DeclineReasons tallies declines by reason ("queue full": 3, ...), for the
// table shown when no bid was acceptable.
func DeclineReasons(ds []Decline) map[string]int {
	out := map[string]int{}
	for _, d := range ds {
		var re *protocols.RemoteError
		switch {
		case d.Err == nil:
			out["unknown"]++
		case errors.As(d.Err, &re):
			out[protocols.CodeName(re.Code)]++
		case errors.Is(d.Err, ErrBadBid):
			out["bad bid"]++
		default:
			out["unreachable"]++
		}
	}
	return out
}
