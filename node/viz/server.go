package viz

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/netutil"
)

//go:embed assets
var assets embed.FS

// Defaults.
const (
	DefaultAddr = "127.0.0.1:0"
	// DefaultPoll is how often logs are checked for appended events.
	DefaultPoll = 250 * time.Millisecond
	// DefaultMaxConns is Options.MaxConns's default: a few operators'
	// browser tabs (each holds a stream and polls /api/node) and scripts.
	DefaultMaxConns = 64
	// streamWriteTimeout bounds each write to an /api/stream reader.
	streamWriteTimeout = 30 * time.Second
	// PageSize is the default and maximum number of events per response.
	PageSize = 25000
)

// Options configures a Server.
type Options struct {
	Addr    string        // listen address; DefaultAddr when empty
	Sources []string      // log files and directories of *.jsonl
	Poll    time.Duration // DefaultPoll when zero; negative disables following
	// Logf reports problems reading logs (nil: silent).
	Logf func(format string, args ...any)
	// State, when set, is a running node's own state (node.Live), served
	// as /api/node: the page then shows it beside the replay of the node's
	// log (p2pnode --http).
	State func() any
	// MaxConns bounds the connections served at once (DefaultMaxConns
	// when zero); more wait in the kernel's backlog, unaccepted, so that
	// clients cannot exhaust the node's file descriptors or memory.
	MaxConns int
}

// Server serves the visualiser over one merged, growing index.
type Server struct {
	opts Options
	url  string
	srv  *http.Server
	tail *Tail // owned by the poll loop after Start

	mu      sync.Mutex    // guards the fields below
	idx     *Index        //
	wire    [][]byte      // wire encoding of idx.Records[i]
	skipped int           // bad lines so far
	files   []string      // logs found so far
	changed chan struct{} // closed and replaced whenever records are added

	done chan struct{}
	err  error // set before done is closed
}

// Serve serves the visualiser for sources on addr until ctx is cancelled.
// Use Start to learn the URL.
func Serve(ctx context.Context, addr string, sources ...string) error {
	s, err := Start(ctx, addr, sources...)
	if err != nil {
		return err
	}
	return s.Wait()
}

// Start loads the sources, listens on addr (DefaultAddr when empty) and
// serves in the background until ctx is cancelled, following the logs as
// they grow (live mode). A source directory may be empty or hold no logs
// yet (a demo starting).
func Start(ctx context.Context, addr string, sources ...string) (*Server, error) {
	return StartOptions(ctx, Options{Addr: addr, Sources: sources})
}

// StartOptions is Start with every option.
func StartOptions(ctx context.Context, o Options) (*Server, error) {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.Poll == 0 {
		o.Poll = DefaultPoll
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	tail, err := NewTail(o.Sources...)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: o, tail: tail, idx: NewIndex(), changed: make(chan struct{}), done: make(chan struct{})}
	s.poll()
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("viz: %w", err)
	}
	s.url = "http://" + ln.Addr().String() + "/"
	ln = netutil.LimitListener(ln, o.MaxConns)
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(sub))
	mux.HandleFunc("GET /api/events", s.handleEvents)
	mux.HandleFunc("GET /api/stream", s.handleStream)
	mux.HandleFunc("GET /api/state", s.handleState)
	mux.HandleFunc("GET /api/node", func(w http.ResponseWriter, r *http.Request) {
		if o.State == nil {
			http.NotFound(w, r) // a replay of logs: no node behind the page
			return
		}
		writeJSON(w, o.State())
	})
	s.srv = &http.Server{
		Handler:           hostCheck(sameOrigin(mux)),
		ReadHeaderTimeout: 10 * time.Second,
		// Idle keep-alive connections end (no ReadTimeout: the
		// default would keep them forever, and the node's file
		// descriptors are its libp2p host's too).
		IdleTimeout:    60 * time.Second,
		MaxHeaderBytes: 64 << 10,
		BaseContext:    func(net.Listener) context.Context { return ctx },
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.srv.Serve(ln) }()
	go s.run(ctx, serveErr)
	return s, nil
}

// URL is the page's address, e.g. http://127.0.0.1:41234/.
func (s *Server) URL() string { return s.url }

// Done is closed once the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// Wait blocks until the server stops and returns why, nil after ctx was
// cancelled.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}

func (s *Server) run(ctx context.Context, serveErr chan error) {
	defer close(s.done)
	var tick <-chan time.Time
	if s.opts.Poll > 0 {
		t := time.NewTicker(s.opts.Poll)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-tick:
			s.poll()
		case err := <-serveErr:
			s.err = fmt.Errorf("viz: %w", err)
			return
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := s.srv.Shutdown(sctx); err != nil {
				s.srv.Close()
			}
			if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.err = fmt.Errorf("viz: %w", err)
			}
			return
		}
	}
}

// poll reads what the logs gained and publishes it.
func (s *Server) poll() {
	recs, err := s.tail.Poll()
	if err != nil {
		s.opts.Logf("viz: reading logs: %v", err)
	}
	files, skipped := s.tail.Files(), s.tail.Skipped()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files, s.skipped = files, skipped
	if len(recs) == 0 {
		return
	}
	from := len(s.idx.Records)
	s.idx.Add(recs)
	t0 := s.idx.Start()
	for _, r := range s.idx.Records[from:] {
		b, err := json.Marshal(s.wireLocked(r, t0))
		if err != nil {
			b = []byte(`{"t":0,"n":0,"k":"invalid"}`)
		}
		s.wire = append(s.wire, b)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// wireEvent is the page's compact form of a Record. Nodes are positions in
// the nodes table; peer and counterparty are shifted by one so that 0 means
// none and can be omitted.
type wireEvent struct {
	T  float64        `json:"t"` // ms since the first record
	N  int            `json:"n"`
	K  string         `json:"k"`
	P  int            `json:"p,omitempty"`
	Pr string         `json:"pr,omitempty"`
	S  int            `json:"s,omitempty"`
	D  string         `json:"d,omitempty"`
	C  string         `json:"c,omitempty"`
	Se string         `json:"se,omitempty"`
	J  string         `json:"j,omitempty"`
	Pc uint64         `json:"pc,omitempty"`
	E  string         `json:"e,omitempty"`
	Nb []int          `json:"nb,omitempty"` // kind neighbours: attrs.peers
	Cp int            `json:"cp,omitempty"` // attrs.counterparty
	A  map[string]any `json:"a,omitempty"`  // the other attrs
}

func (s *Server) wireLocked(r Record, t0 time.Time) wireEvent {
	pos := func(id string) int {
		i, _ := s.idx.NodeIndex(id)
		return i
	}
	w := wireEvent{
		T: float64(r.At.Sub(t0).Microseconds()) / 1000, N: pos(r.Node), K: string(r.Kind),
		Pr: r.Proto, S: r.Size, D: r.Dir, C: r.Conn, Se: r.Series, J: r.Job, Pc: r.Price, E: r.Err,
	}
	if r.Peer != "" {
		w.P = pos(r.Peer) + 1
	}
	for k, v := range r.Attrs {
		switch {
		case k == "peers" && r.Kind == "neighbours":
			for _, p := range stringList(v) {
				w.Nb = append(w.Nb, pos(p))
			}
		case k == "counterparty":
			if id, ok := v.(string); ok && id != "" {
				w.Cp = pos(id) + 1
			}
		default:
			if w.A == nil {
				w.A = map[string]any{}
			}
			w.A[k] = v
		}
	}
	return w
}

// page is the body of /api/events and of each /api/stream message.
type page struct {
	T0      time.Time         `json:"t0"`   // time of the first record: event times are ms after it
	From    int               `json:"from"` // position of events[0]
	Next    int               `json:"next"` // position after the last event sent
	Total   int               `json:"total"`
	Nodes   []Node            `json:"nodes"` // the whole table: positions are stable
	Skipped int               `json:"skipped"`
	Files   []string          `json:"files"`
	Events  []json.RawMessage `json:"events"`
}

func (s *Server) pageLocked(from, limit int) page {
	total := len(s.wire)
	from = max(0, min(from, total))
	next := min(total, from+limit)
	p := page{
		T0: s.idx.Start(), From: from, Next: next, Total: total,
		// Never null, even before the first event (a demo starting).
		Nodes: append([]Node{}, s.idx.Nodes...), Skipped: s.skipped, Files: append([]string{}, s.files...),
		Events: make([]json.RawMessage, 0, next-from),
	}
	for _, b := range s.wire[from:next] {
		p.Events = append(p.Events, b)
	}
	return p
}

func intParam(r *http.Request, name string, def int) int {
	v, err := strconv.Atoi(r.URL.Query().Get(name))
	if err != nil {
		return def
	}
	return v
}

// handleEvents serves /api/events?from=N&limit=M.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	limit := intParam(r, "limit", PageSize)
	if limit <= 0 || limit > PageSize {
		limit = PageSize
	}
	s.mu.Lock()
	p := s.pageLocked(intParam(r, "from", 0), limit)
	s.mu.Unlock()
	writeJSON(w, p)
}

// handleStream serves /api/stream?from=N: Server-Sent Events, one "events"
// message (a page) whenever records beyond N exist, until the client leaves.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 1000\n\n")
	fl.Flush()
	rc := http.NewResponseController(w)
	from := intParam(r, "from", 0)
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		s.mu.Lock()
		var body []byte
		if from < len(s.wire) {
			p := s.pageLocked(from, PageSize)
			from = p.Next
			body, _ = json.Marshal(p)
		}
		changed := s.changed
		s.mu.Unlock()
		if body != nil {
			var b bytes.Buffer
			b.WriteString("event: events\ndata: ")
			b.Write(body)
			b.WriteString("\n\n")
			// A reader that stopped reading is dropped, not waited on.
			_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			if _, err := w.Write(b.Bytes()); err != nil {
				return
			}
			fl.Flush()
			continue
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-ping.C:
			_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

// stateReply is the body of /api/state.
type stateReply struct {
	*State
	Network []Link `json:"network"`
	Traffic []Link `json:"traffic"`
}

// handleState serves /api/state?n=COUNT (the state after COUNT events) or
// ?t=MS (after every event up to MS after the first). For debugging and
// scripts; the page computes its own.
func (s *Server) handleState(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := len(s.idx.Records)
	if v := r.URL.Query().Get("t"); v != "" {
		ms, err := strconv.ParseFloat(v, 64)
		if err != nil {
			s.mu.Unlock()
			http.Error(w, "bad t", http.StatusBadRequest)
			return
		}
		n = s.idx.Count(s.idx.Start().Add(time.Duration(ms * float64(time.Millisecond))))
	}
	n = intParam(r, "n", n)
	st := s.idx.StateAt(n)
	s.mu.Unlock()
	writeJSON(w, stateReply{State: st, Network: st.Links("network"), Traffic: st.Links("traffic")})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return // client gone
	}
}

// hostCheck refuses requests whose Host is a name other than localhost: a
// web page the operator visits could otherwise rebind its own DNS name to
// 127.0.0.1 and read the node's state and logs (DNS rebinding). Browsers
// send the address typed, so IP literals and localhost are what a real
// visit uses.
func hostCheck(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host != "localhost" && net.ParseIP(strings.Trim(host, "[]")) == nil {
			http.Error(w, "viz: open this page by IP address or localhost", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// contentPolicy is the page's Content-Security-Policy: its own scripts,
// styles and API only (inline style attributes are the panel's), never
// framed. A field a hostile peer sent that ever reached the page as HTML
// would find inline script and handlers refused.
const contentPolicy = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
	"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// sameOrigin sets the page's security headers and refuses what another
// site's page asks of it through the operator's browser (Sec-Fetch-Site
// cross-site or same-site, e.g. another port of 127.0.0.1): it could not
// read the answers, but could make the node compute them without end, and
// embed the page. A navigation (a link followed, a bookmark) and clients
// that send no Sec-Fetch-Site (curl, scripts) are served.
func sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		switch r.Header.Get("Sec-Fetch-Site") {
		case "", "same-origin", "none":
		default:
			if r.Header.Get("Sec-Fetch-Mode") != "navigate" {
				http.Error(w, "viz: requests from other sites are refused", http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
