// Package client implements the client role: it discovers workers
// (authorities first, the DHT when none answers), asks them for bids on a
// series, spreads the jobs over the bids (node/schedule), dispatches them
// over pipelined job streams, re-dispatches what fails, and reports each
// job's outcome. Writing results to disk is results.go's business.
package client

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/node/schedule"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Finder finds workers when no authority answers (the DHT).
type Finder interface {
	FindWorkers(ctx context.Context, executor string, limit int) ([]peer.AddrInfo, error)
}

// Client runs series.
type Client struct {
	h   host.Host
	key crypto.PrivKey
	log *events.Log
	o   options

	amu     sync.Mutex      // guards learned
	learned []peer.AddrInfo // authorities learned after start (AddAuthority)
}

// AddAuthority adds an authority to discover workers through (one the node
// learned of after start: pushed in settings, or seen serving the registry).
func (c *Client) AddAuthority(a peer.AddrInfo) {
	c.amu.Lock()
	defer c.amu.Unlock()
	for _, x := range append(c.o.authorities, c.learned...) {
		if x.ID == a.ID {
			return
		}
	}
	c.learned = append(c.learned, a)
}

func (c *Client) authorityList() []peer.AddrInfo {
	c.amu.Lock()
	defer c.amu.Unlock()
	return append(append([]peer.AddrInfo{}, c.o.authorities...), c.learned...)
}

type options struct {
	authorities []peer.AddrInfo
	finder      Finder
	bidVersions []protocol.ID
	maxWorkers  int
	now         func() time.Time
	flood       floodOptions  // flood.go
	payer       Payer         // pay.go; nil: jobs are not paid for
	escrowTTL   time.Duration // pay.go
	rep         *Reputation   // reputation.go
	hangFactor  float64       // see WithHangDetection
	hangGrace   time.Duration
}

// Option configures a Client.
type Option func(*options)

// WithAuthorities sets the authorities to discover workers through.
func WithAuthorities(a []peer.AddrInfo) Option { return func(o *options) { o.authorities = a } }

// WithFinder sets the DHT fallback.
func WithFinder(f Finder) Option { return func(o *options) { o.finder = f } }

// WithBidVersions sets the bid protocol versions offered, newest first.
func WithBidVersions(v ...protocol.ID) Option { return func(o *options) { o.bidVersions = v } }

// WithHangDetection sets when a worker that makes no progress counts as
// hung and its jobs go elsewhere: a job sent to it is hung factor times
// its expected wait (the bid's per-job estimate × its place in the
// worker's queue / slots) plus grace after it was sent. Zero values keep
// the defaults (4 and 10 s).
func WithHangDetection(factor float64, grace time.Duration) Option {
	return func(o *options) { o.hangFactor, o.hangGrace = factor, grace }
}

// WithMaxCandidates caps how many workers are asked for bids.
func WithMaxCandidates(n int) Option { return func(o *options) { o.maxWorkers = n } }

// New makes a client on h.
func New(h host.Host, key crypto.PrivKey, log *events.Log, opts ...Option) *Client {
	o := options{bidVersions: protocols.BidVersions, maxWorkers: 256, now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	if o.rep == nil {
		o.rep = NewReputation()
	}
	return &Client{h: h, key: key, log: log, o: o}
}

// Series is a series ready to send: everything the wire needs.
type Series struct {
	ID         string
	Executor   string
	Module     []byte
	Jobs       []Job
	Resources  *pb.Resources
	MaxPrice   uint64
	Strategy   schedule.Strategy
	Retries    int
	MaxWorkers int       // 0: all that bid
	Deadline   time.Time // zero: none
	// Affinity maps jobs (indexes in Jobs) that a crashed run of this
	// series sent to a worker to that worker: a resumed run offers them to
	// it first, and it hands back the results it kept instead of running
	// (and being paid for) them again.
	Affinity map[int]peer.ID
	// Prior maps jobs (indexes in Jobs) to the awards crashed runs sent
	// them under (from the sent journal), every one: a job re-sent to a
	// backup worker was sent to the first too, which may have finished it
	// and kept its result. A receipt a worker kept from such a run names
	// that bid, and is expected, not disputed.
	Prior map[int][]PriorSend
}

// Job is one job of a series.
type Job struct {
	ID      string
	Params  map[string]string // the sweep's values for this job (param name -> value); for results only
	Args    []string
	Env     map[string]string
	Stdin   []byte
	Inputs  []*pb.File
	Outputs []string
}

// Outcome is what became of one job.
type Outcome struct {
	Index    int
	ID       string
	Worker   peer.ID
	Attempts int
	Result   *pb.JobResult // nil when the job failed without a result
	Err      error         // why it failed; nil when done with exit code 0
	Elapsed  time.Duration // from first dispatch to outcome
	Price    uint64
	Conn     string // "direct" or "relayed": the connection the result came over ("" without one)
	Route    string // how the worker was found: authority, dht or flood
}

// Candidate is a worker found by discovery.
type Candidate struct {
	ID     peer.ID
	Addrs  []ma.Multiaddr
	Record *pb.WorkerRecord // nil when not found through an authority
	Route  string           // "authority", "dht", "flood"
}

// Offer is a verified bid.
type Offer struct {
	Bid     *pb.Bid
	Signed  *pb.SignedBid
	Worker  peer.ID
	Proto   protocol.ID
	Route   string
	Latency time.Duration
}

// Decline is a worker's typed refusal, or a failure to get its bid.
type Decline struct {
	Worker peer.ID
	Err    error
}

// Report summarises a finished series.
type Report struct {
	SeriesID   string
	Candidates []Candidate
	Offers     []Offer
	Declines   []Decline
	Outcomes   []Outcome // indexed like Series.Jobs
	Elapsed    time.Duration
}

// Failed counts jobs that did not end done with exit code 0.
func (r *Report) Failed() int {
	n := 0
	for _, o := range r.Outcomes {
		if o.Err != nil {
			n++
		}
	}
	return n
}

// ErrNoWorkers means discovery found nobody or nobody bid acceptably.
var ErrNoWorkers = errors.New("client: no acceptable worker")

// NoBidsError says why no bid was acceptable: each worker's decline.
type NoBidsError struct {
	Candidates int
	Declines   []Decline
	Executor   string // the series' executor: authorities list only the workers that run it
}

func (e *NoBidsError) Error() string {
	if e.Candidates == 0 && e.Executor != "" && e.Executor != "wasm" {
		// wasm is every worker's default; other executors are its operator's choice.
		return fmt.Sprintf("client: no workers found that run executor %q (a worker's operator enables it with "+
			"worker.executors in its config; are the authorities reachable?)", e.Executor)
	}
	if e.Candidates == 0 {
		return "client: no workers found (are the authorities reachable? is any worker registered?)"
	}
	return fmt.Sprintf("client: none of %d workers bid acceptably (%d declined)", e.Candidates, len(e.Declines))
}

func (e *NoBidsError) Unwrap() error { return ErrNoWorkers }

// PriorSend is the award a crashed run sent one job under.
type PriorSend struct {
	Worker peer.ID
	BidID  []byte
	Price  uint64
}

// Hooks let a caller follow a series as it runs. Each may be nil. They are
// called from one goroutine at a time and must not call back into the
// client.
type Hooks struct {
	// OnBids is called once, when the bids are in and before dispatch.
	OnBids func(cands []Candidate, offers []Offer, declines []Decline)
	// OnOutcome is called once per job, as it ends.
	OnOutcome func(Outcome)
	// OnSend is called as a job is sent to a worker (a resumed run's
	// Series.Affinity is made of them).
	OnSend func(job int, worker peer.ID, bid *pb.Bid)
}

// Run discovers workers, collects bids, dispatches every job and returns
// when each has an outcome.
func (c *Client) Run(ctx context.Context, s *Series, hooks Hooks) (*Report, error) {
	start := c.o.now()
	if len(s.Jobs) == 0 {
		return nil, errors.New("client: series has no jobs")
	}
	hash := sha256.Sum256(s.Module)
	req := &pb.BidRequest{
		SeriesId: s.ID, JobCount: uint32(len(s.Jobs)), Executor: s.Executor, ModuleHash: hash[:],
		Resources: s.Resources, MaxPrice: s.MaxPrice, ModuleSize: uint64(len(s.Module)),
	}
	if !s.Deadline.IsZero() {
		req.DeadlineUnixMs = s.Deadline.UnixMilli()
	}
	rep := &Report{SeriesID: s.ID}
	cands, err := c.Discover(ctx, Filter{Executor: s.Executor, MaxPrice: s.MaxPrice, MinMemory: s.Resources.GetMemoryBytes()})
	if len(cands) == 0 && (s.MaxPrice != 0 || s.Resources.GetMemoryBytes() != 0) {
		// Nobody matched the authority-side filter: ask every worker with
		// the executor instead, so their declines say why none fits.
		cands, err = c.Discover(ctx, Filter{Executor: s.Executor})
	}
	if err != nil && len(cands) == 0 {
		return rep, err
	}
	rep.Candidates = cands
	if c.o.flood.mode != DiscoveryFlood {
		rep.Offers, rep.Declines = c.CollectBids(ctx, cands, req)
	}
	if c.shouldFlood(len(cands), s) {
		c.flood(ctx, rep, req) // flood.go: bids through the overlay
	}
	if hooks.OnBids != nil {
		hooks.OnBids(cands, rep.Offers, rep.Declines)
	}
	if len(rep.Offers) == 0 {
		return rep, &NoBidsError{Candidates: len(cands), Declines: rep.Declines, Executor: s.Executor}
	}
	c.refundExpired(ctx)
	d := newDispatch(c, s, req, hash, rep.Offers, hooks.OnOutcome)
	d.onSend = hooks.OnSend
	rep.Outcomes, err = d.run(ctx)
	if serr := c.o.rep.Save(); serr != nil {
		c.log.Emit(events.Event{Kind: events.Error, Series: s.ID, Err: serr.Error()})
	}
	rep.Elapsed = c.o.now().Sub(start)
	c.log.Emit(events.Event{Kind: events.SeriesDone, Series: s.ID,
		Attrs: map[string]any{"jobs": len(s.Jobs), "failed": rep.Failed(), "ms": rep.Elapsed.Milliseconds()}})
	return rep, err
}

// Filter selects workers in Discover.
type Filter struct {
	Executor  string
	MinMemory uint64
	MaxPrice  uint64
}

// Discover lists workers matching the filter through every authority
// (merged), falling back to the DHT when no authority answers.
func (c *Client) Discover(ctx context.Context, f Filter) ([]Candidate, error) {
	seen := map[peer.ID]bool{}
	var (
		out      []Candidate
		errs     []error
		answered int
		mu       sync.Mutex
		wg       sync.WaitGroup
	)
	auths := c.authorityList()
	if c.o.flood.mode == DiscoveryDHT {
		auths = nil
	}
	for _, a := range auths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs, err := c.discoverAt(ctx, a, f)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("authority %s: %w", a.ID, err))
				return
			}
			answered++
			for _, r := range recs {
				id, err := peer.IDFromBytes(r.PeerId)
				if err != nil || seen[id] || id == c.h.ID() {
					continue
				}
				seen[id] = true
				out = append(out, Candidate{ID: id, Addrs: decodeAddrs(r.Addrs), Record: r, Route: "authority"})
			}
		}()
	}
	wg.Wait()
	if (answered == 0 || c.o.flood.mode == DiscoveryAll) && c.o.finder != nil {
		infos, err := c.o.finder.FindWorkers(ctx, f.Executor, c.o.maxWorkers)
		if err != nil {
			errs = append(errs, fmt.Errorf("dht: %w", err))
		}
		for _, ai := range infos {
			if !seen[ai.ID] && ai.ID != c.h.ID() {
				seen[ai.ID] = true
				out = append(out, Candidate{ID: ai.ID, Addrs: ai.Addrs, Route: "dht"})
			}
		}
	}
	if len(out) > c.o.maxWorkers {
		out = out[:c.o.maxWorkers]
	}
	return out, errors.Join(errs...)
}

var discoverX = protocols.Exchange{Max: protocols.MaxDiscoverMsg, Timeout: protocols.DiscoverTimeout}

func (c *Client) discoverAt(ctx context.Context, a peer.AddrInfo, f Filter) ([]*pb.WorkerRecord, error) {
	c.h.Peerstore().AddAddrs(a.ID, a.Addrs, time.Hour)
	var all []*pb.WorkerRecord
	req := &pb.DiscoverRequest{Executor: f.Executor, MinMemoryBytes: f.MinMemory, MaxPrice: f.MaxPrice, Limit: 500}
	for page := 0; page < 100 && len(all) < c.o.maxWorkers; page++ {
		resp := &pb.DiscoverResponse{}
		if _, err := protocols.Call(ctx, c.h, a.ID, []protocol.ID{protocols.Discover}, c.traced(discoverX), req, resp); err != nil {
			return all, err
		}
		if err := protocols.FromPB(resp.Error); err != nil {
			return all, err
		}
		all = append(all, resp.Workers...)
		if resp.NextCursor == "" {
			break
		}
		req.Cursor = resp.NextCursor
	}
	return all, nil
}

func decodeAddrs(raw [][]byte) []ma.Multiaddr {
	out := make([]ma.Multiaddr, 0, len(raw))
	for _, b := range raw {
		if a, err := ma.NewMultiaddrBytes(b); err == nil {
			out = append(out, a)
		}
	}
	return out
}

var bidX = protocols.Exchange{Max: protocols.MaxBidMsg, Timeout: protocols.BidTimeout}

// CollectBids asks every candidate for a bid at once and returns the
// verified offers and the declines.
func (c *Client) CollectBids(ctx context.Context, cands []Candidate, req *pb.BidRequest) ([]Offer, []Decline) {
	var (
		mu       sync.Mutex
		offers   []Offer
		declines []Decline
		wg       sync.WaitGroup
		sem      = make(chan struct{}, 64)
	)
	for _, cand := range cands {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			off, err := c.askBid(ctx, cand, req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				declines = append(declines, Decline{Worker: cand.ID, Err: err})
				c.log.Emit(events.Event{Kind: events.Decline, Peer: cand.ID.String(), Series: req.SeriesId, Err: err.Error()})
				return
			}
			offers = append(offers, off)
			c.log.Emit(events.Event{Kind: events.BidMade, Peer: cand.ID.String(), Series: req.SeriesId, Price: off.Bid.PricePerJob,
				Proto: string(off.Proto), Attrs: map[string]any{"jobs": off.Bid.MaxJobs, "est_ms": off.Bid.EstJobMs}})
		}()
	}
	wg.Wait()
	return offers, declines
}

func (c *Client) askBid(ctx context.Context, cand Candidate, req *pb.BidRequest) (Offer, error) {
	c.h.Peerstore().AddAddrs(cand.ID, cand.Addrs, time.Hour)
	start := c.o.now()
	resp := &pb.BidResponse{}
	// A first contact with a worker behind NAT is relayed (a limited
	// connection): bids may use it. Dispatch waits for the hole punch it
	// triggers before sending jobs (dispatch.go, awaitDirect).
	ctx = network.WithAllowLimitedConn(ctx, "p2pjobs bid")
	proto, err := protocols.Call(ctx, c.h, cand.ID, c.o.bidVersions, c.traced(bidX), req, resp)
	if err != nil {
		return Offer{}, err
	}
	if err := protocols.FromPB(resp.Decline); err != nil {
		return Offer{}, err
	}
	b, signer, err := protocols.VerifyBid(resp.Bid)
	if err != nil {
		return Offer{}, err
	}
	if err := c.CheckBid(b, signer, cand.ID, req); err != nil {
		return Offer{}, err
	}
	return Offer{Bid: b, Signed: resp.Bid, Worker: signer, Proto: proto, Route: cand.Route, Latency: c.o.now().Sub(start)}, nil
}

// ErrBadBid means a bid does not match what was asked or who made it.
var ErrBadBid = errors.New("client: bid does not match the request")

// CheckBid checks a verified bid against the request: the right signer,
// series and client, an acceptable price, not expired.
func (c *Client) CheckBid(b *pb.Bid, signer, want peer.ID, req *pb.BidRequest) error {
	switch {
	case want != "" && signer != want:
		return fmt.Errorf("%w: signed by %s, asked %s", ErrBadBid, signer, want)
	case b.SeriesId != req.SeriesId:
		return fmt.Errorf("%w: series %q", ErrBadBid, b.SeriesId)
	case peer.ID(b.Client) != c.h.ID():
		return fmt.Errorf("%w: made for another client", ErrBadBid)
	case req.MaxPrice != 0 && b.PricePerJob > req.MaxPrice:
		return fmt.Errorf("%w: price %d over the maximum %d", ErrBadBid, b.PricePerJob, req.MaxPrice)
	case b.MaxJobs == 0:
		return fmt.Errorf("%w: bid for no jobs", ErrBadBid)
	case time.UnixMilli(b.ExpiresUnixMs).Before(c.o.now()):
		return fmt.Errorf("%w: expired", ErrBadBid)
	}
	return nil
}

// traced hooks the event log to an exchange's messages.
func (c *Client) traced(x protocols.Exchange) protocols.Exchange {
	x.Trace = c.log.Message
	return x
}
