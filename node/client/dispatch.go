package client

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/node/schedule"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"google.golang.org/protobuf/proto"
)

// dispatch is the stream adapter of one series: it feeds the dispatch
// state machine (node/schedule.Machine) with what happens on the network —
// bids, free room on a worker's stream, results, broken streams, time — and
// carries out the effects it returns: send a job on one pipelined stream
// per worker, extend an award (lock more escrow, under a fresh bid when
// needed), ask for a fresh round of bids, cancel a losing attempt (no
// acknowledgement: not used, not paid), report a job's outcome.
type dispatch struct {
	c         *Client
	s         *Series
	req       *pb.BidRequest // the series' bid request, for fresh rounds
	hash      [32]byte
	onOutcome func(Outcome)
	onSend    func(int, peer.ID, *pb.Bid)

	mu       sync.Mutex // guards the fields below
	m        *schedule.Machine
	offers   map[peer.ID]Offer // each worker's latest bid
	outcomes []Outcome
	ended    []bool
	first    []time.Time           // first dispatch of each job
	sentBid  map[sentKey][]*pb.Bid // the bids each job was sent to each worker under: its receipt must name one
	changed  chan struct{}         // closed and replaced on every state change
	running  map[peer.ID]bool
	lastErr  map[peer.ID]error
	names    map[string]peer.ID // the machine's worker names (see name)
	ids      map[peer.ID]string
	awards   map[peer.ID][]*award // paid awards in use, oldest first (pay.go)
	fresh    map[peer.ID]Offer    // bids not yet awarded (pay.go)
	held     map[peer.ID]int      // jobs handed to each worker and not answered yet (reputation)
	finished chan struct{}        // closed when every job has an outcome
	cancels  int                  // attempts cancelled (lost to another result)
	workers  sync.WaitGroup       // worker streams
	aux      sync.WaitGroup       // extensions and bid rounds
	ctx      context.Context      // for extensions and bid rounds: ends when the series does
	wctx     context.Context      // for worker streams
}

func newDispatch(c *Client, s *Series, req *pb.BidRequest, hash [32]byte, offers []Offer, onOutcome func(Outcome)) *dispatch {
	d := &dispatch{c: c, s: s, req: req, hash: hash, offers: map[peer.ID]Offer{}, onOutcome: onOutcome,
		outcomes: make([]Outcome, len(s.Jobs)), ended: make([]bool, len(s.Jobs)), first: make([]time.Time, len(s.Jobs)),
		changed: make(chan struct{}), running: map[peer.ID]bool{}, lastErr: map[peer.ID]error{}, names: map[string]peer.ID{}, ids: map[peer.ID]string{},
		awards: map[peer.ID][]*award{}, fresh: map[peer.ID]Offer{}, held: map[peer.ID]int{}, sentBid: map[sentKey][]*pb.Bid{}, finished: make(chan struct{})}
	for _, o := range offers {
		d.offers[o.Worker] = o
	}
	return d
}

// name is a worker's peer ID as text, the machine's key. Computed once:
// base58 encoding per job showed in profiles.
func (d *dispatch) name(id peer.ID) string {
	if n, ok := d.ids[id]; ok {
		return n
	}
	n := id.String()
	d.ids[id], d.names[n] = n, id
	return n
}

// bids are the schedule's view of the offers; skip leaves some out.
func (d *dispatch) bids(skip map[peer.ID]bool) []schedule.Bid {
	bids := make([]schedule.Bid, 0, len(d.offers))
	for id, o := range d.offers {
		if skip[id] {
			continue
		}
		bids = append(bids, schedule.Bid{Worker: id.String(), PricePerJob: o.Bid.PricePerJob, MaxJobs: int(o.Bid.MaxJobs),
			Slots: int(max(1, o.Bid.Slots)), EstStart: time.UnixMilli(o.Bid.EstStartUnixMs), EstJob: time.Duration(o.Bid.EstJobMs) * time.Millisecond,
			Reputation: d.c.o.rep.Score(id)})
	}
	return bids
}

// allocate spreads the jobs over the bids by the series' strategy. With a
// cap on workers, it keeps the capped number of workers the strategy gave
// most jobs and spreads again over those alone.
func (d *dispatch) allocate() (map[string]int, error) {
	alloc, err := schedule.Allocate(d.bids(nil), len(d.s.Jobs), d.s.MaxPrice, d.s.Strategy)
	if err != nil || d.s.MaxWorkers <= 0 || len(alloc) <= d.s.MaxWorkers {
		return alloc, err
	}
	ids := make([]peer.ID, 0, len(d.offers))
	for id := range d.offers {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b peer.ID) int {
		return cmp.Or(cmp.Compare(alloc[b.String()], alloc[a.String()]), cmp.Compare(a, b))
	})
	skip := map[peer.ID]bool{}
	for _, id := range ids[d.s.MaxWorkers:] {
		skip[id] = true
	}
	return schedule.Allocate(d.bids(skip), len(d.s.Jobs), d.s.MaxPrice, d.s.Strategy)
}

// affine makes room in the allocation for the jobs a crashed run sent to
// each worker that bid again (Series.Affinity), within its bid, taking
// them from the workers given most.
func (d *dispatch) affine(alloc map[string]int) {
	want := map[peer.ID]int{}
	for _, id := range d.s.Affinity {
		if _, ok := d.offers[id]; ok {
			want[id]++
		}
	}
	ids := slices.Sorted(maps.Keys(want))
	wanted := map[string]bool{}
	for _, id := range ids {
		wanted[id.String()] = true
	}
	for _, id := range ids {
		k := id.String()
		short := min(want[id], int(d.offers[id].Bid.MaxJobs)) - alloc[k]
		for short > 0 {
			from := ""
			for w, n := range alloc {
				if w != k && !wanted[w] && n > 0 && (from == "" || n > alloc[from] || (n == alloc[from] && w < from)) {
					from = w
				}
			}
			if from == "" {
				break
			}
			alloc[from]--
			alloc[k]++
			short--
		}
	}
}

// tickEvery is how often dispatch tells the machine the time: hung
// workers are noticed and idle workers look for backups this often.
const tickEvery = 200 * time.Millisecond

func (d *dispatch) run(ctx context.Context) ([]Outcome, error) {
	alloc, err := d.allocate()
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	d.affine(alloc)
	var chosen, spare []peer.ID
	for id := range d.offers {
		if alloc[id.String()] > 0 {
			chosen = append(chosen, id)
		} else {
			spare = append(spare, id)
		}
	}
	slices.Sort(chosen)
	// The next bids when a worker fails: cheapest first.
	slices.SortFunc(spare, func(a, b peer.ID) int {
		return cmp.Or(cmp.Compare(d.offers[a].Bid.PricePerJob, d.offers[b].Bid.PricePerJob), cmp.Compare(a, b))
	})
	if err := d.reserve(ctx, chosen, alloc); err != nil {
		return nil, err // nothing dispatched
	}
	var aff map[int]string
	for j, id := range d.s.Affinity {
		if _, ok := d.offers[id]; ok {
			if aff == nil {
				aff = map[int]string{}
			}
			aff[j] = d.name(id)
		}
	}
	d.m = schedule.NewMachine(schedule.Config{Jobs: len(d.s.Jobs), MaxAttempts: d.s.Retries + 1, MaxWorkers: d.s.MaxWorkers,
		HangFactor: d.c.o.hangFactor, HangGrace: d.c.o.hangGrace, Affinity: aff})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	auxCtx, auxCancel := context.WithCancel(ctx)
	defer auxCancel()
	d.ctx, d.wctx = auxCtx, ctx
	d.mu.Lock()
	for _, id := range chosen {
		d.c.log.Emit(events.Event{Kind: events.Award, Peer: id.String(), Series: d.s.ID, Price: d.offers[id].Bid.PricePerJob,
			Attrs: map[string]any{"jobs": alloc[id.String()]}})
		d.applyLocked(d.m.Award(d.name(id), d.awardOf(d.offers[id], alloc[id.String()])))
	}
	for _, id := range spare {
		d.fresh[id] = d.offers[id]
		d.applyLocked(d.m.Award(d.name(id), d.awardOf(d.offers[id], 0)))
	}
	d.applyLocked(d.m.Begin())
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	for !d.m.Finished() {
		ch := d.changed
		d.mu.Unlock()
		select {
		case <-ch:
		case <-tick.C:
			d.mu.Lock()
			d.applyLocked(d.m.Tick(d.c.o.now()))
			d.broadcast() // idle workers look for backups
			d.mu.Unlock()
		case <-ctx.Done():
			d.mu.Lock()
			d.failRestLocked(fmt.Errorf("client: %w", context.Cause(ctx)))
			d.mu.Unlock()
			auxCancel()
			cancel()
			d.workers.Wait()
			d.aux.Wait()
			return d.outcomes, ctx.Err()
		}
		d.mu.Lock()
	}
	close(d.finished)
	d.broadcast() // under d.mu: workers still running broadcast too
	d.mu.Unlock()
	auxCancel() // extensions and bid rounds are moot now
	d.workers.Wait()
	d.aux.Wait()
	if d.cancels > 0 {
		d.c.log.Emit(events.Event{Kind: "attempts_cancelled", Series: d.s.ID, Attrs: map[string]any{"n": d.cancels}})
	}
	return d.outcomes, nil
}

// awardOf is the machine's view of a bid with budget more paid jobs.
func (d *dispatch) awardOf(o Offer, budget int) schedule.Award {
	b, _ := d.m.Budget(d.name(o.Worker))
	return schedule.Award{Budget: budget, Capacity: b + int(o.Bid.MaxJobs), Slots: int(max(1, o.Bid.Slots)),
		EstJob: time.Duration(o.Bid.EstJobMs) * time.Millisecond}
}

// applyLocked carries out the machine's effects other than Send (which
// next hands to the worker's stream).
func (d *dispatch) applyLocked(effs []schedule.Effect) {
	for _, e := range effs {
		id := d.names[e.Worker]
		switch e.Kind {
		case schedule.Extend:
			d.extendLocked(id, e.N) // pay.go
		case schedule.AskBids:
			d.aux.Add(1)
			go func() {
				defer d.aux.Done()
				d.askBids(d.ctx, e.N)
			}()
		case schedule.Hung:
			d.c.log.Emit(events.Event{Kind: "worker_hung", Peer: id.String(), Series: d.s.ID})
		case schedule.Cancel:
			d.cancels++
			d.c.log.Emit(events.Event{Kind: "job_cancelled", Peer: id.String(), Series: d.s.ID, Job: d.s.Jobs[e.Job].ID})
		case schedule.Finish:
			if e.Reason != nil {
				d.endLocked(e.Job, Outcome{Worker: id, Err: e.Reason, Attempts: e.Attempts})
			}
			// A job done is ended by result, which has the result.
		}
	}
	for name, id := range d.names {
		if !d.running[id] && d.m.Started(name) && d.wctx.Err() == nil && !d.m.Finished() {
			d.startLocked(d.wctx, id)
		}
	}
	d.broadcast()
}

// startLocked starts worker's stream.
func (d *dispatch) startLocked(ctx context.Context, id peer.ID) {
	d.running[id] = true
	d.workers.Add(1)
	go func() {
		defer d.workers.Done()
		err := d.worker(ctx, id)
		d.mu.Lock()
		defer d.mu.Unlock()
		d.running[id] = false
		if lost := d.held[id]; err != nil && ctx.Err() == nil {
			d.c.o.rep.Failed(id, max(1, lost)) // vanished: its jobs in flight are lost
		}
		delete(d.held, id)
		if err != nil {
			d.lastErr[id] = err
			d.c.log.Emit(events.Event{Kind: events.Error, Peer: id.String(), Series: d.s.ID, Err: err.Error()})
		}
		if !d.m.Finished() {
			d.applyLocked(d.m.WorkerFailed(d.name(id), err))
		}
	}()
}

// askBids runs a fresh round of discovery and bids for n waiting jobs and
// hands the bids to the machine.
func (d *dispatch) askBids(ctx context.Context, n int) {
	d.c.log.Emit(events.Event{Kind: "rebid", Series: d.s.ID, Attrs: map[string]any{"jobs": n}})
	req := proto.Clone(d.req).(*pb.BidRequest)
	req.JobCount = uint32(max(n, 1))
	var offers []Offer
	var declines []Decline
	cands, err := d.c.Discover(ctx, Filter{Executor: d.s.Executor, MaxPrice: d.s.MaxPrice, MinMemory: d.s.Resources.GetMemoryBytes()})
	if len(cands) > 0 {
		offers, declines = d.c.CollectBids(ctx, cands, req)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range offers {
		name := d.name(o.Worker)
		if _, known := d.offers[o.Worker]; !known {
			d.offers[o.Worker] = o
		}
		d.fresh[o.Worker] = o
		d.applyLocked(d.m.Award(name, d.awardOf(o, 0)))
	}
	var why error
	if len(offers) == 0 {
		why = d.noWorkerError(err, len(cands), declines)
	}
	d.applyLocked(d.m.BidsDone(why))
}

// noWorkerError says why a fresh round brought nobody, on one line (it
// ends up in each failed job's reason).
func (d *dispatch) noWorkerError(discErr error, cands int, declines []Decline) error {
	parts := []string{fmt.Sprintf("%d workers found, %d declined", cands, len(declines))}
	if discErr != nil {
		parts = append(parts, discErr.Error())
	}
	for _, dc := range declines {
		parts = append(parts, short(dc.Worker)+": "+dc.Err.Error())
	}
	ids := slices.Sorted(maps.Keys(d.lastErr))
	for _, id := range ids {
		parts = append(parts, short(id)+" failed: "+d.lastErr[id].Error())
	}
	return errors.New(strings.Join(strings.Fields(strings.Join(parts, "; ")), " "))
}

func short(id peer.ID) string {
	s := id.String()
	if len(s) > 8 {
		return "…" + s[len(s)-6:]
	}
	return s
}

// broadcast wakes everyone waiting for a state change. Callers hold d.mu
// or know that nobody else changes state concurrently.
func (d *dispatch) broadcast() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// endLocked records the outcome of a job that just ended.
func (d *dispatch) endLocked(idx int, o Outcome) {
	if d.ended[idx] {
		return
	}
	d.ended[idx] = true
	o.Index, o.ID = idx, d.s.Jobs[idx].ID
	if off, ok := d.offers[o.Worker]; ok {
		o.Route = off.Route
	}
	if !d.first[idx].IsZero() {
		o.Elapsed = d.c.o.now().Sub(d.first[idx])
	}
	d.outcomes[idx] = o
	if d.onOutcome != nil {
		// Called under d.mu: outcome handlers must not call back into the
		// dispatch. They only write files and update progress.
		d.onOutcome(o)
	}
}

func (d *dispatch) failRestLocked(reason error) {
	for i := range d.s.Jobs {
		if !d.ended[i] {
			d.endLocked(i, Outcome{Err: reason})
		}
	}
}

// next takes the next job for worker, waiting while none is available but
// the series is not over. It returns -1 when the worker should stop.
func (d *dispatch) next(ctx context.Context, worker peer.ID, broken <-chan struct{}, flush func() error) (int, *award) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := d.name(worker)
	for {
		if d.m.Finished() {
			return -1, nil
		}
		for _, e := range d.m.Pull(name, d.c.o.now()) {
			if e.Kind != schedule.Send || e.Worker != name {
				continue
			}
			d.held[worker]++
			if d.first[e.Job].IsZero() {
				d.first[e.Job] = d.c.o.now()
			}
			aw := d.takeAwardLocked(worker) // pay.go
			bid := d.offers[worker].Bid
			if aw != nil {
				bid = aw.offer.Bid
			}
			// Every send counts: a result the worker kept from an earlier
			// send (its stream broke after the job ran) names that
			// send's bid. A job goes to one worker at most a few times.
			k := sentKey{e.Job, worker}
			if !slices.Contains(d.sentBid[k], bid) {
				d.sentBid[k] = append(d.sentBid[k], bid)
			}
			if d.onSend != nil {
				d.onSend(e.Job, worker, bid) // under d.mu, like onOutcome
			}
			if e.Backup {
				d.c.log.Emit(events.Event{Kind: "job_backup", Peer: worker.String(), Series: d.s.ID, Job: d.s.Jobs[e.Job].ID})
			}
			d.broadcast()
			return e.Job, aw
		}
		ch := d.changed
		d.mu.Unlock()
		if flush() != nil {
			d.mu.Lock()
			return -1, nil
		}
		select {
		case <-ch:
		case <-broken:
			d.mu.Lock()
			return -1, nil
		case <-ctx.Done():
			d.mu.Lock()
			return -1, nil
		}
		d.mu.Lock()
	}
}

// retryable tells failures another attempt may cure from those it cannot:
// a trap or an out-of-memory is the job's own doing and fails everywhere.
func retryable(err error) bool {
	for _, c := range []pb.ErrorCode{pb.ErrorCode_JOB_TRAP, pb.ErrorCode_JOB_MEMORY, pb.ErrorCode_JOB_OUTPUT_TOO_LARGE,
		pb.ErrorCode_JOB_OUTPUT_MISSING, pb.ErrorCode_BAD_REQUEST, pb.ErrorCode_MODULE_INVALID, pb.ErrorCode_TOO_LARGE} {
		if errors.Is(err, protocols.Code(c)) {
			return false
		}
	}
	return true
}

// result handles one reply from worker for job idx, sent under award aw.
// It reports whether the result was accepted (to be acknowledged, and so
// paid): a failure, a bad receipt or a result that lost to another
// attempt is not.
func (d *dispatch) result(worker peer.ID, idx int, aw *award, r *pb.JobResult, conn string) bool {
	now := d.c.o.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.name(worker)
	d.held[worker]--
	if err := protocols.FromPB(r.Error); err != nil {
		d.returnAwardLocked(aw) // not paid: the escrow covers another job
		if r.Receipt != nil {
			// An honest worker signs no receipt for a job it failed. One
			// that does would be paid after the dispute window, never
			// acknowledged: dispute it (the notary checks it is ours).
			d.dispute(r.Receipt)
		}
		d.c.log.Emit(events.Event{Kind: events.JobFailed, Peer: w, Series: d.s.ID, Job: r.JobId, Err: err.Error(), Conn: conn})
		if retryable(err) { // another worker might do it: this one's failure
			d.c.o.rep.Failed(worker, 1)
		}
		d.applyLocked(d.m.Result(w, idx, schedule.Outcome{At: now, Err: err, Retryable: retryable(err)}))
		return false
	}
	if err := d.checkReceipt(worker, idx, r); err != nil {
		d.returnAwardLocked(aw)
		d.c.log.Emit(events.Event{Kind: events.Error, Peer: w, Series: d.s.ID, Job: r.JobId, Err: err.Error()})
		d.dispute(r.Receipt) // pay.go: never acknowledged, and disputed
		d.c.o.rep.Failed(worker, 1)
		d.applyLocked(d.m.Result(w, idx, schedule.Outcome{At: now, Err: err, Retryable: true}))
		return false
	}
	effs := d.m.Result(w, idx, schedule.Outcome{At: now, OK: true})
	won := false
	for _, e := range effs {
		if e.Kind == schedule.Finish && e.Job == idx && e.Reason == nil {
			won = true
			d.c.o.rep.Done(worker, 1)
			o := Outcome{Worker: worker, Result: r, Price: aw.offer.Bid.PricePerJob, Conn: conn, Attempts: e.Attempts}
			if r.ExitCode != 0 {
				o.Err = fmt.Errorf("exit status %d", r.ExitCode)
			}
			d.c.log.Emit(events.Event{Kind: events.JobFinished, Peer: w, Series: d.s.ID, Job: r.JobId, Price: o.Price, Conn: conn,
				Attrs: map[string]any{"ms": r.DurationMs, "exit": r.ExitCode}})
			d.endLocked(idx, o)
		}
	}
	d.applyLocked(effs)
	return won
}

// ErrBadReceipt means a result's receipt is missing, forged or does not
// match the result.
var ErrBadReceipt = errors.New("client: bad receipt")

// The result arrived on a stream that libp2p's secure channel
// authenticates as the worker's, so the receipt's signature adds nothing
// here; verifying it per job cost two thirds of the client's CPU at
// thousands of jobs per second. The notary verifies every receipt's
// signature when the worker settles, so a bad one is never paid.
func (d *dispatch) checkReceipt(worker peer.ID, idx int, r *pb.JobResult) error {
	rc, err := protocols.DecodeReceipt(r.Receipt)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", ErrBadReceipt, err)
	case peer.ID(rc.Worker) != worker || peer.ID(rc.Client) != d.c.h.ID():
		return fmt.Errorf("%w: names worker %s, client %s", ErrBadReceipt, peer.ID(rc.Worker), peer.ID(rc.Client))
	case rc.SeriesId != d.s.ID || rc.JobId != d.s.Jobs[idx].ID:
		return fmt.Errorf("%w: for job %s/%s", ErrBadReceipt, rc.SeriesId, rc.JobId)
	case !d.awardedLocked(idx, worker, rc): // pay.go
		return fmt.Errorf("%w: bid %x at %d points is not this worker's award", ErrBadReceipt, rc.BidId, rc.Price)
	case !bytes.Equal(rc.ResultHash, protocols.ResultHash(r)):
		return fmt.Errorf("%w: result does not match its hash", ErrBadReceipt)
	}
	return nil
}

// worker drives one worker's job stream until the series ends or the
// stream breaks. The caller tells the machine the worker failed: its
// unfinished jobs go back to the pool.
func (d *dispatch) worker(ctx context.Context, id peer.ID) error {
	d.mu.Lock()
	off := d.offers[id]
	d.mu.Unlock()
	if err := d.lockAwards(ctx, id); err != nil { // pay.go
		return err
	}
	for {
		d.c.awaitDirect(ctx, id, DirectWait)
		if err := d.stream(ctx, off); !errors.Is(err, errMoved) {
			return err
		}
	}
}

// stream runs one job stream to the worker. A relayed one ends with
// errMoved once a direct connection appears (migrate.go).
func (d *dispatch) stream(ctx context.Context, off Offer) error {
	id := off.Worker
	st, err := d.c.h.NewStream(network.WithAllowLimitedConn(ctx, "p2pjobs job"), id, protocols.Job)
	if err != nil {
		return fmt.Errorf("open job stream: %w", err)
	}
	conn := connKind(st.Conn())
	d.c.log.Emit(events.Event{Kind: "job_stream", Peer: id.String(), Series: d.s.ID, Conn: conn,
		Attrs: map[string]any{"addr": st.Conn().RemoteMultiaddr().String()}})
	defer st.Reset() // no-op after a clean Close
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()

	// Job frames are buffered and flushed only when the loop would wait
	// (window full, no job ready, module ack pending): under load many
	// jobs share one write, one secure-channel frame and one syscall.
	bw := bufio.NewWriterSize(st, 64<<10)
	w := protocols.NewWriter(bw, protocols.MaxJobMsg)
	r := protocols.NewReader(st, protocols.MaxJobMsg)
	window := make(chan struct{}, min(max(8*int(max(1, off.Bid.Slots)), 16), 256))
	type sent struct {
		idx int
		aw  *award
	}
	var (
		imu      sync.Mutex
		inflight = map[uint64]sent{} // seq -> job
		seq      uint64
		handled  uint64     // results read and acknowledged; guarded by imu
		wmu      sync.Mutex // serialises writes: jobs and chunks here, acks from the reader
	)
	progress := make(chan struct{}, 1)
	broken := make(chan struct{})
	moved, unwatch := d.c.directAppears(st)
	defer unwatch()
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	quit := either(sctx, broken, moved) // stop taking jobs for this stream
	acks := make(chan *pb.ModuleAck, 1)
	readErr := make(chan error, 1)
	go func() { // reader: owned by this function, ends when the stream does
		defer close(broken)
		for {
			_ = st.SetReadDeadline(time.Now().Add(protocols.JobIdleTimeout + 30*time.Second))
			var m pb.JobStreamReply
			if err := r.Read(&m); err != nil {
				imu.Lock()
				n := len(inflight)
				imu.Unlock()
				if errors.Is(err, io.EOF) && n == 0 {
					err = nil
				}
				readErr <- err
				return
			}
			var rerr error
			if r := m.GetResult(); r != nil {
				rerr = protocols.FromPB(r.Error)
			}
			d.c.log.Message("in", id, protocols.Job, proto.Size(&m), rerr)
			switch m := m.Msg.(type) {
			case *pb.JobStreamReply_ModuleAck:
				select {
				case acks <- m.ModuleAck:
				default:
				}
			case *pb.JobStreamReply_Result:
				imu.Lock()
				sj, ok := inflight[m.Result.Seq]
				delete(inflight, m.Result.Seq)
				imu.Unlock()
				if !ok {
					readErr <- fmt.Errorf("%w: result for unknown seq %d", protocols.ErrMalformed, m.Result.Seq)
					return
				}
				if errors.Is(protocols.FromPB(m.Result.Error), protocols.Code(pb.ErrorCode_MODULE_MISSING)) {
					off.Bid.HasModule = false // pushed again before the next job
				}
				if d.result(id, sj.idx, sj.aw, m.Result, conn) {
					if a := d.ack(m.Result); a != nil {
						wmu.Lock()
						_ = st.SetWriteDeadline(time.Now().Add(protocols.JobIdleTimeout))
						err := w.Write(a) // buffered: goes with the next flush, at the latest before CloseWrite
						wmu.Unlock()
						d.c.log.Message("out", id, protocols.Job, proto.Size(a), err)
					}
				}
				imu.Lock()
				handled++
				imu.Unlock()
				select {
				case progress <- struct{}{}:
				default:
				}
				<-window
			}
		}
	}()
	writeJob := func(j int, aw *award) error {
		if !off.Bid.HasModule && d.s.Executor == "wasm" {
			if err := d.pushModule(st, w, &wmu, acks, broken); err != nil {
				return err
			}
			off.Bid.HasModule = true
		}
		imu.Lock()
		seq++
		inflight[seq] = sent{j, aw}
		imu.Unlock()
		msg := &pb.JobStreamMsg{Msg: &pb.JobStreamMsg_Job{Job: d.request(j, seq, aw)}}
		wmu.Lock()
		_ = st.SetWriteDeadline(time.Now().Add(protocols.JobIdleTimeout))
		err := w.Write(msg)
		wmu.Unlock()
		d.c.log.Message("out", id, protocols.Job, proto.Size(msg), err)
		return err
	}
	flush := func() error {
		wmu.Lock() // the reader buffers acknowledgements
		defer wmu.Unlock()
		if bw.Buffered() == 0 {
			return nil
		}
		_ = st.SetWriteDeadline(time.Now().Add(protocols.JobIdleTimeout))
		return bw.Flush()
	}
send:
	for {
		select {
		case window <- struct{}{}:
		default:
			if err := flush(); err != nil {
				return fmt.Errorf("send job: %w", err)
			}
			select {
			case window <- struct{}{}:
			case <-moved:
				break send
			case <-broken:
				return <-readErr
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		j, aw := d.next(ctx, id, quit, flush)
		if j < 0 {
			<-window
			if err := flush(); err != nil {
				return fmt.Errorf("send job: %w", err)
			}
			break
		}
		if err := writeJob(j, aw); err != nil {
			return fmt.Errorf("send job: %w", err)
		}
	}
	// Series over (or this worker stops): close our side and let the
	// reader drain the results still in flight.
	// A paying client first waits for the results in flight, so that each
	// is acknowledged on this stream before it closes its side; but not
	// for attempts that lost to another worker's result once every job has
	// an outcome (a hung worker's, a backup's): they are not paid.
	imu.Lock()
	all := handled == seq
	imu.Unlock()
	for d.c.o.payer != nil && !all {
		select {
		case <-progress:
		case <-d.finished:
		case <-broken:
			return <-readErr
		case <-ctx.Done():
			return ctx.Err()
		}
		imu.Lock()
		all = handled == seq
		imu.Unlock()
		if !all && isClosed(d.finished) {
			break
		}
	}
	if err := flush(); err != nil { // the last acknowledgements
		return fmt.Errorf("send acknowledgements: %w", err)
	}
	_ = st.CloseWrite()
	var late <-chan time.Time
	if !all {
		// Lost attempts still run there: give the acknowledgements a
		// moment to leave, then reset rather than wait for them.
		t := time.NewTimer(time.Second)
		defer t.Stop()
		late = t.C
	}
	select {
	case <-broken:
		// A stream that broke with lost attempts in flight after the
		// series ended is no failure; before, it is.
		if err := <-readErr; err != nil && (all || !isClosed(d.finished)) {
			return err
		}
		_ = st.Close()
		if isClosed(moved) && !isClosed(d.finished) {
			d.c.log.Emit(events.Event{Kind: "job_stream_moved", Peer: id.String(), Series: d.s.ID})
			return errMoved
		}
		return nil
	case <-late:
		_ = st.Reset()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (d *dispatch) pushModule(st network.Stream, w *protocols.Writer, wmu *sync.Mutex, acks <-chan *pb.ModuleAck, broken <-chan struct{}) error {
	mod := d.s.Module
	for off := 0; off < len(mod) || off == 0; off += protocols.ModuleChunkSize {
		end := min(off+protocols.ModuleChunkSize, len(mod))
		wmu.Lock()
		_ = st.SetWriteDeadline(time.Now().Add(protocols.JobIdleTimeout))
		err := w.Write(&pb.JobStreamMsg{Msg: &pb.JobStreamMsg_Chunk{Chunk: &pb.ModuleChunk{
			ModuleHash: d.hash[:], Offset: uint64(off), Data: mod[off:end], Last: end == len(mod), TotalSize: uint64(len(mod))}}})
		wmu.Unlock()
		if err != nil {
			return fmt.Errorf("push module: %w", err)
		}
		if end == len(mod) {
			break
		}
	}
	wmu.Lock()
	err := flushWriter(st, w)
	wmu.Unlock()
	if err != nil {
		return fmt.Errorf("push module: %w", err)
	}
	select {
	case ack := <-acks:
		if err := protocols.FromPB(ack.Error); err != nil {
			return fmt.Errorf("worker refused the module: %w", err)
		}
		return nil
	case <-broken:
		return errors.New("stream closed while pushing the module")
	}
}

// flushWriter flushes a Writer over a bufio.Writer.
func flushWriter(st network.Stream, w *protocols.Writer) error {
	_ = st.SetWriteDeadline(time.Now().Add(protocols.JobIdleTimeout))
	return w.Flush()
}

func (d *dispatch) request(j int, seq uint64, aw *award) *pb.JobRequest {
	off := aw.offer
	job := &d.s.Jobs[j]
	return &pb.JobRequest{
		Seq: seq, SeriesId: d.s.ID, JobId: job.ID, Executor: d.s.Executor, ModuleHash: d.hash[:],
		Args: job.Args, Env: job.Env, Stdin: job.Stdin, Inputs: job.Inputs, Outputs: job.Outputs,
		Resources: d.s.Resources, BidId: off.Bid.BidId, Price: off.Bid.PricePerJob,
	}
}

// DirectWait is how long dispatch waits for a direct connection to a worker
// it only reaches through a relay. The bid exchange went over the relay and
// made the worker start a hole punch (DCUtR), which takes about one round
// trip to the relay and one to the worker; when it fails (symmetric NAT),
// jobs go over the relay, whose limits on our authorities (relay_duration,
// relay_data) are sized for job traffic. A job stream cut by a relay limit
// sends its jobs back to the pool, like any broken stream.
var DirectWait = 5 * time.Second

// awaitDirect waits up to d for a direct connection to p while the only
// connections to it are relayed. It polls: libp2p has no per-peer
// "connection upgraded" event, and the wait is short and bounded.
//
// Halfway, idle relayed connections are replaced by a new one: a worker
// punches holes only for relayed connections that arrive after its
// hole-punch service started, which it does once it knows a public address
// of its own; a connection made in that first moment would stay relayed.
func (c *Client) awaitDirect(ctx context.Context, p peer.ID, d time.Duration) {
	start := time.Now()
	deadline, redial := start.Add(d), start.Add(d*2/5)
	for {
		conns := c.h.Network().ConnsToPeer(p)
		if len(conns) == 0 || slices.ContainsFunc(conns, func(c network.Conn) bool { return connKind(c) == "direct" }) {
			return
		}
		if time.Now().After(deadline) {
			return
		}
		if !redial.IsZero() && time.Now().After(redial) {
			redial = time.Time{}
			closed := false
			for _, cn := range conns {
				if len(cn.GetStreams()) == 0 {
					closed = cn.Close() == nil || closed
				}
			}
			if closed {
				c.log.Emit(events.Event{Kind: "relay_redial", Peer: p.String()})
				_ = c.h.Connect(network.WithAllowLimitedConn(ctx, "p2pjobs hole punch retry"), peer.AddrInfo{ID: p})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// connKind says whether a connection is direct or through a relay.
func connKind(c network.Conn) string {
	if c.Stat().Limited || strings.Contains(c.RemoteMultiaddr().String(), "/p2p-circuit") {
		return "relayed"
	}
	return "direct"
}
