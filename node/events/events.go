// Package events writes a node's JSON-lines event log: connections, messages,
// registrations, bids, awards, jobs, overlay changes, ledger blocks, errors.
// The visualiser (p2pnode viz) and tests read it back with Decode.
//
// The schema, every kind and the conventions readers rely on are documented
// in docs/events.md. It is versioned by the field "v" (SchemaVersion). Consumers must
// ignore kinds and fields they do not know: new kinds are added freely, a
// field's meaning never changes within one schema version.
//
// A nil *Log is valid and discards everything, so services can emit
// unconditionally. Writing is buffered and flushed by a background loop, so
// the hot path pays for one JSON encoding and a mutex, not a syscall.
package events

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// SchemaVersion of the event log format.
const SchemaVersion = 1

// Kind names an event type. Consumers ignore kinds they do not know.
type Kind string

// Event kinds.
const (
	Started      Kind = "started"      // node up: Attrs: addrs, listen
	Stopped      Kind = "stopped"      //
	Connected    Kind = "connected"    // Peer, Conn (direct|relayed), Dir (in|out), Addr
	Disconnected Kind = "disconnected" // Peer, Conn
	MsgSent      Kind = "msg_sent"     // Peer, Proto, Size, Err
	MsgRecv      Kind = "msg_recv"     // Peer, Proto, Size, Err
	Registered   Kind = "registered"   // worker: Peer=authority; authority: Peer=worker
	Expired      Kind = "expired"      // authority: a worker's registration lapsed
	BidMade      Kind = "bid"          // Peer=client (worker side) or worker (client side), Series, Price
	Decline      Kind = "decline"      // Peer, Series, Err
	Award        Kind = "award"        // Peer=worker, Series, Attrs: jobs
	JobStarted   Kind = "job_started"  // Peer, Series, Job
	JobFinished  Kind = "job_finished" // Peer, Series, Job, Attrs: ms, exit
	JobFailed    Kind = "job_failed"   // Peer, Series, Job, Err
	Neighbours   Kind = "neighbours"   // Attrs: peers (list of peer IDs)
	LedgerBlock  Kind = "ledger_block" // Attrs: seq, kind, amount, counterparty, balance
	Error        Kind = "error"        // Err, Peer?
	SeriesDone   Kind = "series_done"  // Series, Attrs: done, failed
)

// Event is one line of the log.
type Event struct {
	V      int            `json:"v"`
	Time   time.Time      `json:"t"`                // wall clock, RFC 3339 with nanoseconds
	Mono   int64          `json:"mono"`             // nanoseconds since the log was opened (monotonic)
	Node   string         `json:"node"`             // this node's peer ID
	Role   string         `json:"role"`             // e.g. "worker" or "worker,client"
	Kind   Kind           `json:"kind"`             //
	Peer   string         `json:"peer,omitempty"`   // the other side
	Proto  string         `json:"proto,omitempty"`  // protocol ID
	Size   int            `json:"size,omitempty"`   // bytes
	Dir    string         `json:"dir,omitempty"`    // "in" or "out"
	Conn   string         `json:"conn,omitempty"`   // "direct" or "relayed"
	Series string         `json:"series,omitempty"` //
	Job    string         `json:"job,omitempty"`    //
	Price  uint64         `json:"price,omitempty"`  //
	Err    string         `json:"err,omitempty"`    // set on failures: the event is an error
	Attrs  map[string]any `json:"attrs,omitempty"`  // kind-specific extras
}

// Log appends events to a writer. Safe for concurrent use; nil discards.
type Log struct {
	node, role string
	start      time.Time
	now        func() time.Time
	observe    func(*Event) // metrics; called for every event, concurrently

	peers  sync.Map     // peer.ID -> its string form (base58 costs more than the rest of an event)
	npeers atomic.Int32 // entries in peers, at most maxPeerCache

	mu     sync.Mutex // guards the fields below
	w      *bufio.Writer
	closer io.Closer
	err    error // first write error; later writes are dropped

	done chan struct{}
	wg   sync.WaitGroup
}

// Option configures a Log.
type Option func(*Log)

// WithObserver calls fn with every event before it is written (Prometheus
// counters hang off it). fn must be safe for concurrent use and cheap.
func WithObserver(fn func(*Event)) Option { return func(l *Log) { l.observe = fn } }

// WithClock injects the clock (tests).
func WithClock(now func() time.Time) Option { return func(l *Log) { l.now = now } }

// New starts a log writing to w (closed by Close when it is an io.Closer).
// With w nil, events only reach the observer.
func New(w io.Writer, node, role string, opts ...Option) *Log {
	l := &Log{node: node, role: role, now: time.Now, done: make(chan struct{})}
	for _, o := range opts {
		o(l)
	}
	l.start = l.now()
	if w == nil {
		// Observers only (metrics with the log file off): nothing to
		// encode, buffer or flush.
		return l
	}
	l.w = bufio.NewWriterSize(w, 64<<10)
	if c, ok := w.(io.Closer); ok {
		l.closer = c
	}
	l.wg.Add(1)
	go l.flushLoop()
	return l
}

// flushLoop makes the log visible to live followers within 200 ms without a
// syscall per event.
func (l *Log) flushLoop() {
	defer l.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
			l.Flush()
		}
	}
}

// Emit stamps e with time, node and role, and appends it.
func (l *Log) Emit(e Event) {
	if l == nil {
		return
	}
	now := l.now()
	e.V = SchemaVersion
	e.Time = now
	e.Mono = int64(now.Sub(l.start))
	e.Node = l.node
	if e.Role == "" {
		e.Role = l.role
	}
	if l.observe != nil {
		l.observe(&e)
	}
	if l.w == nil {
		return
	}
	// Encode outside the lock; only the copy into the buffer is serialised.
	bp := bufPool.Get().(*[]byte)
	line, err := appendEvent((*bp)[:0], &e)
	l.mu.Lock()
	if l.err == nil {
		if err == nil {
			_, err = l.w.Write(line)
		}
		l.err = err
	}
	l.mu.Unlock()
	if cap(line) <= 64<<10 {
		*bp = line
		bufPool.Put(bp)
	}
}

// peerString is p.String(), cached: a node talks to few peers, many times.
func (l *Log) peerString(p peer.ID) string {
	if p == "" {
		return ""
	}
	if s, ok := l.peers.Load(p); ok {
		return s.(string)
	}
	s := p.String()
	if l.npeers.Load() < maxPeerCache {
		if _, loaded := l.peers.LoadOrStore(p, s); !loaded {
			l.npeers.Add(1)
		}
	}
	return s
}

// maxPeerCache bounds the peer ID cache (an authority hears from many).
const maxPeerCache = 4096

// Message records a protocol message sent (dir "out") or received ("in").
// Its signature matches protocols.Tracer.
func (l *Log) Message(dir string, p peer.ID, proto protocol.ID, size int, err error) {
	if l == nil {
		return
	}
	e := Event{Kind: MsgRecv, Peer: l.peerString(p), Proto: string(proto), Size: size, Dir: dir}
	if dir == "out" {
		e.Kind = MsgSent
	}
	if err != nil {
		e.Err = err.Error()
	}
	l.Emit(e)
}

// Flush writes buffered events out.
func (l *Log) Flush() {
	if l == nil || l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = l.w.Flush()
	}
}

// Close flushes and closes the underlying writer.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	if l.w == nil {
		return nil
	}
	close(l.done)
	l.wg.Wait()
	l.Flush()
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.err
	if l.closer != nil {
		if cerr := l.closer.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// MaxLine bounds one event line; Decode skips longer lines without keeping
// them.
const MaxLine = 4 << 20

// Decode reads events from r, calling fn for each. Lines that are not valid
// JSON events, or longer than MaxLine, are skipped and counted (a log cut by
// a crash ends mid-line); the lines after them are still read.
func Decode(r io.Reader, fn func(Event) error) (skipped int, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	long := false
	for {
		chunk, rerr := br.ReadSlice('\n')
		if !long && len(line)+len(chunk) > MaxLine+1 { // +1: the newline
			long, line = true, line[:0]
		}
		if !long {
			line = append(line, chunk...)
		}
		if rerr == bufio.ErrBufferFull {
			continue
		}
		if rerr != nil && rerr != io.EOF {
			return skipped, rerr
		}
		if rerr == io.EOF && len(line) == 0 && !long {
			return skipped, nil
		}
		if long {
			skipped++
		} else {
			l := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			var e Event
			if json.Unmarshal(l, &e) != nil || e.Kind == "" {
				skipped++
			} else if err := fn(e); err != nil {
				return skipped, err
			}
		}
		if rerr == io.EOF {
			return skipped, nil
		}
		line, long = line[:0], false
	}
}
