package client

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
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

// dispatch runs one series over the awarded workers: one pipelined job
// stream per worker, fed from the scheduler.
type dispatch struct {
	c         *Client
	s         *Series
	hash      [32]byte
	offers    map[peer.ID]Offer
	onOutcome func(Outcome)

	mu       sync.Mutex // guards the fields below
	sched    *schedule.Scheduler
	outcomes []Outcome
	ended    []bool
	first    []time.Time // first dispatch of each job
	attempts []int
	changed  chan struct{} // closed and replaced on every state change
	active   map[peer.ID]bool
	unused   []peer.ID // bidders not yet dispatched to: the next bids
	lastErr  map[peer.ID]error
	names    map[peer.ID]string // see name
	budget   map[peer.ID]int    // jobs each worker's escrow covers (pay.go); nil: unpaid
	spent    map[peer.ID]int    // jobs handed to each worker, less those that failed
	held     map[peer.ID]int    // jobs handed to each worker and not answered yet (reputation)
}

func newDispatch(c *Client, s *Series, hash [32]byte, offers []Offer, onOutcome func(Outcome)) *dispatch {
	d := &dispatch{c: c, s: s, hash: hash, offers: map[peer.ID]Offer{}, onOutcome: onOutcome,
		outcomes: make([]Outcome, len(s.Jobs)), ended: make([]bool, len(s.Jobs)), first: make([]time.Time, len(s.Jobs)),
		attempts: make([]int, len(s.Jobs)), changed: make(chan struct{}), active: map[peer.ID]bool{}, lastErr: map[peer.ID]error{}, names: map[peer.ID]string{},
		held: map[peer.ID]int{}}
	for _, o := range offers {
		d.offers[o.Worker] = o
	}
	return d
}

// name is a worker's peer ID as text, the scheduler's key. Computed once:
// base58 encoding per job showed in profiles.
func (d *dispatch) name(id peer.ID) string {
	if n, ok := d.names[id]; ok {
		return n
	}
	n := id.String()
	d.names[id] = n
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
// most jobs and spreads again over those alone: every job the scheduler
// holds is then allocated to a worker that will be started.
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

func (d *dispatch) run(ctx context.Context) ([]Outcome, error) {
	alloc, err := d.allocate()
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	var chosen []peer.ID
	for id := range d.offers {
		if alloc[id.String()] > 0 {
			chosen = append(chosen, id)
		} else {
			d.unused = append(d.unused, id)
		}
	}
	slices.Sort(chosen)
	// The next bids when a worker fails: cheapest first.
	slices.SortFunc(d.unused, func(a, b peer.ID) int {
		return cmp.Compare(d.offers[a].Bid.PricePerJob, d.offers[b].Bid.PricePerJob)
	})
	if err := d.reserve(ctx, chosen, alloc); err != nil {
		return nil, err // nothing dispatched
	}
	d.sched = schedule.NewScheduler(len(d.s.Jobs), alloc, d.s.Retries+1)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	start := func(id peer.ID) {
		d.active[id] = true
		d.budgetLocked(id)
		d.c.log.Emit(events.Event{Kind: events.Award, Peer: id.String(), Series: d.s.ID, Price: d.offers[id].Bid.PricePerJob,
			Attrs: map[string]any{"jobs": alloc[id.String()]}})
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.worker(ctx, d.offers[id])
			d.mu.Lock()
			defer d.mu.Unlock()
			delete(d.active, id)
			if lost := d.held[id]; err != nil && ctx.Err() == nil {
				d.c.o.rep.Failed(id, max(1, lost)) // vanished: its jobs in flight are lost
			}
			delete(d.held, id)
			if err != nil {
				d.lastErr[id] = err
				d.c.log.Emit(events.Event{Kind: events.Error, Peer: id.String(), Series: d.s.ID, Err: err.Error()})
			}
			d.workerGoneLocked(id, err)
		}()
	}
	d.mu.Lock()
	for _, id := range chosen {
		start(id)
	}
	for !d.sched.Finished() {
		if d.stalledLocked() {
			if len(d.unused) > 0 && (d.s.MaxWorkers == 0 || len(d.active) < d.s.MaxWorkers) {
				next := d.unused[0]
				d.unused = d.unused[1:]
				start(next)
				continue
			}
			if len(d.active) == 0 || d.sched.Stalled(d.liveLocked()) {
				d.failPendingLocked(d.noWorkerError())
				continue
			}
		}
		ch := d.changed
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			d.mu.Lock()
			d.failPendingLocked(fmt.Errorf("client: %w", context.Cause(ctx)))
			d.mu.Unlock()
			cancel()
			wg.Wait()
			d.mu.Lock()
			d.failInflightLocked(fmt.Errorf("client: %w", context.Cause(ctx)))
			d.mu.Unlock()
			return d.outcomes, ctx.Err()
		}
		d.mu.Lock()
	}
	d.broadcast() // under d.mu: workers still running broadcast too
	d.mu.Unlock()
	wg.Wait()
	return d.outcomes, nil
}

func (d *dispatch) liveLocked() []string {
	live := make([]string, 0, len(d.active))
	for id := range d.active {
		live = append(live, id.String())
	}
	return live
}

func (d *dispatch) stalledLocked() bool {
	return len(d.active) == 0 || d.sched.Stalled(d.liveLocked())
}

func (d *dispatch) noWorkerError() error {
	var errs []error
	for id, e := range d.lastErr {
		errs = append(errs, fmt.Errorf("%s: %w", short(id), e))
	}
	if len(errs) == 0 {
		return errors.New("client: no worker left that may take this job")
	}
	return fmt.Errorf("client: no worker left that may take this job (%w)", errors.Join(errs...))
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

// endedLocked records outcomes for jobs that just ended.
func (d *dispatch) endLocked(idx int, o Outcome) {
	if d.ended[idx] {
		return
	}
	d.ended[idx] = true
	o.Index, o.ID, o.Attempts = idx, d.s.Jobs[idx].ID, d.attempts[idx]
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

func (d *dispatch) failPendingLocked(reason error) {
	d.sched.FailPending(reason)
	d.collectFinalLocked("")
	d.broadcast()
}

func (d *dispatch) failInflightLocked(reason error) {
	for i := range d.s.Jobs {
		if !d.ended[i] {
			d.endLocked(i, Outcome{Err: reason})
		}
	}
}

// collectFinalLocked records outcomes for jobs the scheduler failed for good
// (after WorkerGone or FailPending, several may end at once).
func (d *dispatch) collectFinalLocked(worker peer.ID) {
	for i := range d.s.Jobs {
		if d.ended[i] {
			continue
		}
		if ended, reason := d.sched.Final(i); ended {
			d.endLocked(i, Outcome{Worker: worker, Err: reason})
		}
	}
}

func (d *dispatch) workerGoneLocked(id peer.ID, err error) {
	d.sched.WorkerGone(id.String())
	d.collectFinalLocked(id)
	d.broadcast()
}

// next takes the next job for worker, waiting while none is available but
// the series is not over. It returns -1 when the worker should stop.
func (d *dispatch) next(ctx context.Context, worker peer.ID, broken <-chan struct{}, flush func() error) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		if d.sched.Finished() || !d.mayTakeLocked(worker) {
			return -1
		}
		if j, ok := d.sched.Next(d.name(worker)); ok {
			if d.spent != nil {
				d.spent[worker]++
			}
			d.held[worker]++
			d.attempts[j]++
			if d.first[j].IsZero() {
				d.first[j] = d.c.o.now()
			}
			d.broadcast()
			return j
		}
		ch := d.changed
		d.mu.Unlock()
		if flush() != nil {
			d.mu.Lock()
			return -1
		}
		select {
		case <-ch:
		case <-broken:
			d.mu.Lock()
			return -1
		case <-ctx.Done():
			d.mu.Lock()
			return -1
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

// result handles one reply from worker for job idx. It reports whether
// the result was delivered with a valid receipt (to be acknowledged).
func (d *dispatch) result(worker peer.ID, idx int, r *pb.JobResult, conn string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.broadcast()
	w := d.name(worker)
	d.held[worker]--
	if err := protocols.FromPB(r.Error); err != nil {
		if d.spent != nil {
			d.spent[worker]-- // not paid: the escrow covers another job
		}
		d.c.log.Emit(events.Event{Kind: events.JobFailed, Peer: w, Series: d.s.ID, Job: r.JobId, Err: err.Error(), Conn: conn})
		d.sched.Failed(idx, w, err, retryable(err))
		if retryable(err) { // another worker might do it: this one's failure
			d.c.o.rep.Failed(worker, 1)
		}
		if ended, reason := d.sched.Final(idx); ended {
			d.endLocked(idx, Outcome{Worker: worker, Err: reason})
		}
		return false
	}
	if err := d.checkReceipt(worker, idx, r); err != nil {
		d.c.log.Emit(events.Event{Kind: events.Error, Peer: w, Series: d.s.ID, Job: r.JobId, Err: err.Error()})
		d.sched.Failed(idx, w, err, true)
		d.c.o.rep.Failed(worker, 1)
		if ended, reason := d.sched.Final(idx); ended {
			d.endLocked(idx, Outcome{Worker: worker, Err: reason})
		}
		return false
	}
	d.sched.Done(idx)
	d.c.o.rep.Done(worker, 1)
	o := Outcome{Worker: worker, Result: r, Price: d.offers[worker].Bid.PricePerJob, Conn: conn}
	if r.ExitCode != 0 {
		o.Err = fmt.Errorf("exit status %d", r.ExitCode)
	}
	d.c.log.Emit(events.Event{Kind: events.JobFinished, Peer: w, Series: d.s.ID, Job: r.JobId, Price: o.Price, Conn: conn,
		Attrs: map[string]any{"ms": r.DurationMs, "exit": r.ExitCode}})
	d.endLocked(idx, o)
	return true
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
	case !bytes.Equal(rc.ResultHash, protocols.ResultHash(r)):
		return fmt.Errorf("%w: result does not match its hash", ErrBadReceipt)
	}
	return nil
}

// worker drives one worker's job stream until the series ends or the
// stream breaks. In-flight jobs of a broken stream go back to the pool
// (the caller's workerGoneLocked).
func (d *dispatch) worker(ctx context.Context, off Offer) error {
	id := off.Worker
	if err := d.lockAward(ctx, off); err != nil {
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
	var (
		imu      sync.Mutex
		inflight = map[uint64]int{} // seq -> job index
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
				idx, ok := inflight[m.Result.Seq]
				delete(inflight, m.Result.Seq)
				imu.Unlock()
				if !ok {
					readErr <- fmt.Errorf("%w: result for unknown seq %d", protocols.ErrMalformed, m.Result.Seq)
					return
				}
				if errors.Is(protocols.FromPB(m.Result.Error), protocols.Code(pb.ErrorCode_MODULE_MISSING)) {
					off.Bid.HasModule = false // pushed again before the next job
				}
				if d.result(id, idx, m.Result, conn) {
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
	writeJob := func(j int) error {
		if !off.Bid.HasModule && d.s.Executor == "wasm" {
			if err := d.pushModule(st, w, &wmu, acks, broken); err != nil {
				return err
			}
			off.Bid.HasModule = true
		}
		imu.Lock()
		seq++
		inflight[seq] = j
		imu.Unlock()
		msg := &pb.JobStreamMsg{Msg: &pb.JobStreamMsg_Job{Job: d.request(j, seq, off)}}
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
		j := d.next(ctx, id, quit, flush)
		if j < 0 {
			<-window
			if err := flush(); err != nil {
				return fmt.Errorf("send job: %w", err)
			}
			break
		}
		if err := writeJob(j); err != nil {
			return fmt.Errorf("send job: %w", err)
		}
	}
	// Series over (or this worker stops): close our side and let the
	// reader drain the results still in flight.
	// A paying client first waits for the results in flight, so that each
	// is acknowledged on this stream before it closes its side.
	for d.c.o.payer != nil {
		imu.Lock()
		all := handled == seq
		imu.Unlock()
		if all {
			break
		}
		select {
		case <-progress:
		case <-broken:
			return <-readErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := flush(); err != nil { // the last acknowledgements
		return fmt.Errorf("send acknowledgements: %w", err)
	}
	_ = st.CloseWrite()
	select {
	case <-broken:
		if err := <-readErr; err != nil {
			return err
		}
		_ = st.Close()
		if closed(moved) && !d.finished() {
			d.c.log.Emit(events.Event{Kind: "job_stream_moved", Peer: id.String(), Series: d.s.ID})
			return errMoved
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
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

func (d *dispatch) request(j int, seq uint64, off Offer) *pb.JobRequest {
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
