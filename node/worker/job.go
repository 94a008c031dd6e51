package worker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/node/exec"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"google.golang.org/protobuf/proto"
)

// Bounds on a job request's strings and counts, beyond the frame cap.
const (
	maxArgs    = 1024
	maxArgLen  = 4096
	maxEnv     = 256
	maxInputs  = 256
	maxOutputs = 64
	maxJobID   = 128
)

// jobStream is one client's pipelined job stream.
type jobStream struct {
	s      *Service
	st     network.Stream
	client peer.ID

	// Replies are buffered; whoever writes last while others wait to write
	// flushes, so results finishing together share one frame and syscall.
	waiting atomic.Int32 // replies waiting for wmu or being written
	wmu     sync.Mutex   // serialises writes of replies
	bw      *bufio.Writer
	w       *protocols.Writer

	module     bytes.Buffer // module being pushed in chunks
	moduleHeld int          // bytes reserved from the resource manager for module
	jobs       sync.WaitGroup
}

// ServiceName is the worker's resource-manager service: its job streams'
// memory (module chunks, requests held while they run) is reserved there.
const ServiceName = "p2pjobs.worker"

// dropModule empties the module buffer and gives its memory back.
func (js *jobStream) dropModule() {
	js.module = bytes.Buffer{}
	if js.moduleHeld > 0 {
		js.st.Scope().ReleaseMemory(js.moduleHeld)
		js.moduleHeld = 0
	}
}

func (s *Service) handleJob(st network.Stream) {
	protocols.Handle(ServiceName, func(st network.Stream) error { s.serveJobStream(st); return nil },
		func(st network.Stream, err error) {
			s.log.Emit(events.Event{Kind: events.Error, Peer: st.Conn().RemotePeer().String(), Proto: string(protocols.Job), Err: err.Error()})
		})(st)
}

func (s *Service) serveJobStream(st network.Stream) {
	js := &jobStream{s: s, st: st, client: st.Conn().RemotePeer(), bw: bufio.NewWriterSize(st, 64<<10)}
	js.w = protocols.NewWriter(js.bw, protocols.MaxJobMsg)
	s.wg.Add(1)
	defer s.wg.Done()
	// Close must not wait for an idle client: end the read at once when
	// the worker stops (serve checks s.ctx after each new deadline). The
	// jobs in flight still write their replies.
	stop := context.AfterFunc(s.ctx, func() { _ = st.SetReadDeadline(time.Now()) })
	err := js.serve()
	stop()
	js.jobs.Wait()
	js.dropModule()
	if s.o.payee != nil {
		s.o.payee.FlushClient(js.client) // no more acknowledgements on this stream
	}
	if err != nil && s.ctx.Err() != nil {
		err = nil // shutting down: close after the replies, so they arrive
	}
	if err != nil {
		_ = st.Reset()
		if !errors.Is(err, io.EOF) && s.ctx.Err() == nil {
			s.log.Emit(events.Event{Kind: events.Error, Peer: js.client.String(), Proto: string(protocols.Job), Err: err.Error()})
		}
		return
	}
	_ = st.Close()
}

// serve reads until the client closes its side. Each job waits for a slot
// before the next frame is read, so a client that sends faster than we run
// is held back by the stream's flow control, not by our memory.
func (js *jobStream) serve() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("worker: panic in job stream: %v", r)
		}
	}()
	r := protocols.NewReader(js.st, protocols.MaxJobMsg)
	for {
		_ = js.st.SetReadDeadline(time.Now().Add(protocols.JobIdleTimeout))
		if js.s.ctx.Err() != nil {
			return nil // handleJob's AfterFunc may have run before the deadline above
		}
		var m pb.JobStreamMsg
		if err := r.Read(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		js.s.log.Message("in", js.client, protocols.Job, proto.Size(&m), nil)
		switch m := m.Msg.(type) {
		case *pb.JobStreamMsg_Chunk:
			if err := js.chunk(m.Chunk); err != nil {
				return err
			}
		case *pb.JobStreamMsg_Ack:
			if p := js.s.o.payee; p != nil {
				p.AckReceipt(js.client, m.Ack.GetReceiptHash(), m.Ack.GetClientSig())
			}
		case *pb.JobStreamMsg_Job:
			if err := js.job(m.Job); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: empty job stream message", protocols.ErrMalformed)
		}
	}
}

// chunk appends a module chunk; at the last one it checks and compiles the
// module and acknowledges. A bad module is acknowledged with an error and
// the stream goes on.
func (js *jobStream) chunk(c *pb.ModuleChunk) error {
	if c.Offset != uint64(js.module.Len()) || c.TotalSize > protocols.MaxModuleSize ||
		uint64(js.module.Len()+len(c.Data)) > c.TotalSize {
		js.dropModule()
		return js.reply(&pb.JobStreamReply{Msg: &pb.JobStreamReply_ModuleAck{ModuleAck: &pb.ModuleAck{ModuleHash: c.ModuleHash,
			Error: &pb.Error{Code: pb.ErrorCode_MODULE_INVALID, Message: "module chunks out of order or over the size limit"}}}})
	}
	// The module is buffered whole before it is checked: reserve each
	// chunk from the resource manager first, so many clients pushing
	// modules at once are refused instead of exhausting memory.
	// (Released all at once by dropModule, so the release func is not kept.)
	if _, err := protocols.Reserve(js.st, len(c.Data), network.ReservationPriorityMedium); err != nil {
		js.dropModule()
		return js.reply(&pb.JobStreamReply{Msg: &pb.JobStreamReply_ModuleAck{ModuleAck: &pb.ModuleAck{ModuleHash: c.ModuleHash,
			Error: &pb.Error{Code: pb.ErrorCode_RATE_LIMITED, Message: "worker out of memory for module uploads; try later"}}}})
	}
	js.moduleHeld += len(c.Data)
	js.module.Write(c.Data)
	if !c.Last {
		return nil
	}
	data := js.module.Bytes()
	defer js.dropModule()
	ack := &pb.ModuleAck{ModuleHash: c.ModuleHash}
	if sum := sha256.Sum256(data); !bytes.Equal(sum[:], c.ModuleHash) {
		ack.Error = &pb.Error{Code: pb.ErrorCode_MODULE_INVALID, Message: "module bytes do not match their hash"}
	} else if e := js.s.executors["wasm"]; e == nil {
		ack.Error = &pb.Error{Code: pb.ErrorCode_EXECUTOR_MISSING, Message: "no wasm executor"}
	} else if _, err := e.AddModule(js.s.ctx, data); err != nil {
		ack.Error = protocols.ToPB(err)
	}
	return js.reply(&pb.JobStreamReply{Msg: &pb.JobStreamReply_ModuleAck{ModuleAck: ack}})
}

func (js *jobStream) reply(m *pb.JobStreamReply) error {
	js.waiting.Add(1)
	js.wmu.Lock()
	defer js.wmu.Unlock()
	_ = js.st.SetWriteDeadline(time.Now().Add(protocols.JobIdleTimeout))
	err := js.w.Write(m)
	if js.waiting.Add(-1) == 0 || err != nil {
		err = errors.Join(err, js.bw.Flush())
	}
	var rerr error
	if r := m.GetResult(); r != nil {
		rerr = protocols.FromPB(r.Error)
	}
	js.s.log.Message("out", js.client, protocols.Job, proto.Size(m), errors.Join(rerr, err))
	return err
}

func (js *jobStream) fail(req *pb.JobRequest, err error) error {
	js.s.log.Emit(events.Event{Kind: events.JobFailed, Peer: js.client.String(), Series: req.SeriesId, Job: req.JobId, Err: err.Error()})
	return js.reply(&pb.JobStreamReply{Msg: &pb.JobStreamReply_Result{Result: &pb.JobResult{
		Seq: req.Seq, JobId: req.JobId, Error: protocols.ToPB(err)}}})
}

// validateJob checks a request's counts and lengths.
func validateJob(req *pb.JobRequest) error {
	switch {
	case req.JobId == "" || len(req.JobId) > maxJobID || len(req.SeriesId) > maxSeriesIDLen:
		return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "job id %q or series id too long or empty", req.JobId)
	case len(req.ModuleHash) != 32:
		return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "module hash of %d bytes", len(req.ModuleHash))
	case len(req.Args) > maxArgs || len(req.Env) > maxEnv || len(req.Inputs) > maxInputs || len(req.Outputs) > maxOutputs:
		return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "too many args, env entries, inputs or outputs")
	}
	for _, a := range req.Args {
		if len(a) > maxArgLen {
			return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "argument of %d bytes", len(a))
		}
	}
	return nil
}

func (js *jobStream) job(req *pb.JobRequest) error {
	s := js.s
	if err := validateJob(req); err != nil {
		return js.fail(req, err)
	}
	ex := s.executors[req.Executor]
	if ex == nil {
		return js.fail(req, protocols.Errorf(pb.ErrorCode_EXECUTOR_MISSING, "executor %q not offered", req.Executor))
	}
	res := req.GetResources()
	if res.GetMemoryBytes() > s.o.maxMemory {
		return js.fail(req, protocols.Errorf(pb.ErrorCode_MEMORY_TOO_SMALL, "job wants %d MiB, limit %d MiB", res.GetMemoryBytes()>>20, s.o.maxMemory>>20))
	}
	if r := s.kept.get(js.client, req); r != nil {
		// Finished before, for this client (a run it lost in a crash):
		// the kept result and its receipt, under the award that paid
		// for it then; nothing runs and nothing is counted again.
		s.log.Emit(events.Event{Kind: "job_collected", Peer: js.client.String(), Series: req.SeriesId, Job: req.JobId})
		return js.reply(&pb.JobStreamReply{Msg: &pb.JobStreamReply_Result{Result: r}})
	}
	if err := s.useAward(js.client, req.BidId, req.Price); err != nil {
		return js.fail(req, err)
	}
	if err := s.checkEscrow(js.client, req.BidId); err != nil {
		s.returnAward(req.BidId)
		return js.fail(req, err)
	}
	s.queued.Add(1)
	select {
	case s.slots <- struct{}{}:
	case <-s.ctx.Done():
		s.queued.Add(-1)
		s.returnAward(req.BidId)
		return js.fail(req, protocols.Errorf(pb.ErrorCode_SHUTTING_DOWN, "worker is shutting down"))
	}
	// The request (inputs included) stays in memory while the job waits
	// and runs: account for it.
	release, err := protocols.Reserve(js.st, proto.Size(req), network.ReservationPriorityHigh)
	if err != nil {
		<-s.slots
		s.queued.Add(-1)
		s.returnAward(req.BidId)
		return js.fail(req, protocols.Errorf(pb.ErrorCode_RATE_LIMITED, "worker out of memory for jobs; try later"))
	}
	js.jobs.Add(1)
	protocols.Go(func() {
		defer js.jobs.Done()
		defer func() { <-s.slots; s.queued.Add(-1) }()
		defer release()
		if err := js.run(ex, req); err != nil {
			_ = js.st.Reset() // the client sees the stream fail and re-dispatches
		}
	}, func(err error) {
		_ = js.st.Reset()
		s.log.Emit(events.Event{Kind: events.Error, Peer: js.client.String(), Series: req.SeriesId, Job: req.JobId, Err: err.Error()})
	})
	return nil
}

func (js *jobStream) run(ex exec.Executor, req *pb.JobRequest) error {
	s := js.s
	s.log.Emit(events.Event{Kind: events.JobStarted, Peer: js.client.String(), Series: req.SeriesId, Job: req.JobId})
	job := exec.Job{
		ModuleHash: [32]byte(req.ModuleHash), Args: req.Args, Env: maps.Clone(req.Env), Stdin: req.Stdin,
		Outputs: req.Outputs, MemoryBytes: req.GetResources().GetMemoryBytes(),
		Timeout: time.Duration(req.GetResources().GetTimeoutMs()) * time.Millisecond,
		// The client's output and disk are wishes under the worker's
		// ceilings (a client that skipped the bid gets the ceiling).
		MaxOutputBytes: capTo(req.GetResources().GetMaxOutputBytes(), s.o.maxOutput),
		DiskBytes:      capTo(req.GetResources().GetDiskBytes(), s.o.maxDisk),
		MaxFiles:       s.o.maxFiles,
	}
	switch {
	case job.Timeout == 0:
		job.Timeout = min(s.o.maxTimeout, time.Minute)
	case job.Timeout > s.o.maxTimeout:
		job.Timeout = s.o.maxTimeout // a wish under the worker's ceiling
	}
	for _, f := range req.Inputs {
		job.Inputs = append(job.Inputs, exec.File{Name: f.Name, Data: f.Data})
	}
	out, err := ex.Run(s.ctx, job)
	if err != nil {
		if errors.Is(err, protocols.Code(pb.ErrorCode_MODULE_MISSING)) {
			s.returnAward(req.BidId) // not run: the client pushes the module and sends it again
		}
		return js.fail(req, err)
	}
	s.observeJob(out.Duration)
	r := &pb.JobResult{Seq: req.Seq, JobId: req.JobId, ExitCode: out.ExitCode, Stdout: out.Stdout, Stderr: out.Stderr,
		DurationMs: uint32(out.Duration.Milliseconds())}
	for _, f := range out.Outputs {
		r.Outputs = append(r.Outputs, &pb.File{Name: f.Name, Data: f.Data})
	}
	rcpt, err := protocols.SignReceipt(s.key, &pb.Receipt{
		SeriesId: req.SeriesId, JobId: req.JobId, Worker: []byte(s.h.ID()), Client: []byte(js.client), BidId: req.BidId,
		Price: req.Price, ResultHash: protocols.ResultHash(r), FinishedUnixMs: s.o.now().UnixMilli(),
	})
	if err != nil {
		return js.fail(req, err)
	}
	r.Receipt = rcpt
	reply := &pb.JobStreamReply{Msg: &pb.JobStreamReply_Result{Result: r}}
	// A result the stream cannot carry never reaches the client: it fails,
	// and its receipt is not kept (nor paid).
	if proto.Size(reply) > protocols.MaxJobMsg {
		return js.fail(req, protocols.Errorf(pb.ErrorCode_JOB_OUTPUT_TOO_LARGE, "result over the %d-byte message cap", protocols.MaxJobMsg))
	}
	if s.o.payee != nil {
		s.o.payee.Receipt(js.client, rcpt)
	}
	s.kept.put(js.client, req, r)
	s.log.Emit(events.Event{Kind: events.JobFinished, Peer: js.client.String(), Series: req.SeriesId, Job: req.JobId,
		Price: req.Price, Attrs: map[string]any{"ms": out.Duration.Milliseconds(), "exit": out.ExitCode}})
	return js.reply(reply)
}

// capTo is want under ceiling; 0 (no wish) is the ceiling.
func capTo(want, ceiling uint64) uint64 {
	if want == 0 || want > ceiling {
		return ceiling
	}
	return want
}

// observeJob folds a run time into the moving average used for estimates.
func (s *Service) observeJob(d time.Duration) {
	for {
		old := s.estJobNs.Load()
		nw := old - old/8 + int64(d)/8
		if s.estJobNs.CompareAndSwap(old, max(nw, 1)) {
			return
		}
	}
}
