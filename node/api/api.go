// Package api is a running node's local control API: HTTP over a unix
// socket in the data directory (owner-only), used by `p2pnode submit` and
// `p2pnode status` so that one process owns the identity and the ledger.
// RunSpec is the one code path that runs a series file, whether the series
// came over this API or runs in the submit command's own node.
package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/series"
	"github.com/p2pjobs/p2pnode/protocols"
)

// SubmitRequest asks the node to run a series file.
type SubmitRequest struct {
	SpecPath string `json:"spec_path"` // absolute
	// Resume skips the jobs the series' journal (results/<series>/
	// summary.jsonl) records as done with their outputs on disk.
	Resume bool `json:"resume,omitempty"`
}

// Message is one line of a submission's stream.
type Message struct {
	Kind    string              `json:"kind"` // start | bids | outcome | done | error
	Start   *Start              `json:"start,omitempty"`
	Bids    *Bids               `json:"bids,omitempty"`
	Outcome *client.SummaryLine `json:"outcome,omitempty"`
	Done    *Done               `json:"done,omitempty"`
	Error   string              `json:"error,omitempty"`
}

// Start announces a series.
type Start struct {
	Series  string `json:"series"`
	Jobs    int    `json:"jobs"`              // jobs to run now
	Skipped int    `json:"skipped,omitempty"` // done before (--resume)
	Results string `json:"results"`
}

// Bids lists the bids and declines a series got.
type Bids struct {
	Candidates int           `json:"candidates"`
	Offers     []OfferLine   `json:"offers"`
	Declines   []DeclineLine `json:"declines,omitempty"`
}

// OfferLine is one accepted bid.
type OfferLine struct {
	Worker   string  `json:"worker"`
	Price    uint64  `json:"price"`
	MaxJobs  uint32  `json:"max_jobs"`
	EstMs    uint32  `json:"est_ms"`
	Capacity float64 `json:"capacity"`
	Route    string  `json:"route"`
	Proto    string  `json:"proto"`
}

// DeclineLine is one worker's refusal.
type DeclineLine struct {
	Worker string `json:"worker"`
	Reason string `json:"reason"` // the error code's name, e.g. "queue full"
	Detail string `json:"detail"`
}

// Done closes a stream.
type Done struct {
	Jobs    int     `json:"jobs"`
	Failed  int     `json:"failed"`
	Seconds float64 `json:"seconds"`
	Results string  `json:"results"`
}

// RunSpec loads the series file, runs it on c, writes results and emits
// messages as it goes. Builtins are the modules named "builtin:<name>".
func RunSpec(ctx context.Context, c *client.Client, req SubmitRequest, builtins map[string][]byte, emit func(Message)) (*client.Report, error) {
	spec, err := series.Load(req.SpecPath)
	if err != nil {
		return nil, err
	}
	s, err := client.FromSpec(spec, builtins)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(spec.Path(spec.Results), spec.Name)
	skipped := 0
	open := client.NewResultWriter
	if req.Resume {
		done, err := client.Journal(dir, spec.Outputs)
		if err != nil {
			return nil, err
		}
		kept := s.Jobs[:0]
		for _, j := range s.Jobs {
			if !done[j.ID] {
				kept = append(kept, j)
			}
		}
		skipped, s.Jobs, open = len(s.Jobs)-len(kept), kept, client.ResumeResultWriter
	}
	emit(Message{Kind: "start", Start: &Start{Series: s.ID, Jobs: len(s.Jobs), Skipped: skipped, Results: dir}})
	if len(s.Jobs) == 0 {
		emit(Message{Kind: "done", Done: &Done{Results: dir}})
		return &client.Report{SeriesID: s.ID}, nil
	}
	rw, err := open(dir)
	if err != nil {
		return nil, err
	}
	rw.SetParams(s.Jobs)
	var werr error
	rep, err := c.Run(ctx, s, client.Hooks{
		OnBids: func(cands []client.Candidate, offers []client.Offer, declines []client.Decline) {
			emit(Message{Kind: "bids", Bids: BidsOf(len(cands), offers, declines)})
		},
		OnOutcome: func(o client.Outcome) {
			werr = errors.Join(werr, rw.Write(o))
			l := rw.Line(o)
			emit(Message{Kind: "outcome", Outcome: &l})
		},
	})
	werr = errors.Join(werr, rw.Close())
	if err != nil {
		return rep, err
	}
	if werr != nil {
		return rep, fmt.Errorf("api: writing results: %w", werr)
	}
	emit(Message{Kind: "done", Done: &Done{Jobs: len(s.Jobs), Failed: rep.Failed(), Seconds: rep.Elapsed.Seconds(), Results: dir}})
	return rep, nil
}

// BidsOf summarises bids for display.
func BidsOf(cands int, offers []client.Offer, declines []client.Decline) *Bids {
	b := &Bids{Candidates: cands}
	for _, o := range offers {
		b.Offers = append(b.Offers, OfferLine{Worker: o.Worker.String(), Price: o.Bid.PricePerJob, MaxJobs: o.Bid.MaxJobs,
			EstMs: o.Bid.EstJobMs, Capacity: o.Bid.Capacity, Route: o.Route, Proto: string(o.Proto)})
	}
	for _, d := range declines {
		reason := "unreachable"
		var re *protocols.RemoteError
		if errors.As(d.Err, &re) {
			reason = protocols.CodeName(re.Code)
		}
		b.Declines = append(b.Declines, DeclineLine{Worker: d.Worker.String(), Reason: reason, Detail: d.Err.Error()})
	}
	sort.Slice(b.Offers, func(i, j int) bool { return b.Offers[i].Worker < b.Offers[j].Worker })
	sort.Slice(b.Declines, func(i, j int) bool { return b.Declines[i].Worker < b.Declines[j].Worker })
	return b
}

// Backend is what the server needs from the node.
type Backend interface {
	Status() any
	Client() *client.Client // nil when the node is not a client
	Builtins() map[string][]byte
	Ledger() Ledger // nil when the node keeps no ledger (ledger.go)
}

// Observer is a Backend that also follows the series it runs (the node's
// live view); optional.
type Observer interface {
	ObserveSeries(Message)
}

// Server serves the API on a unix socket.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	path string
	done chan struct{}
}

// Listen starts serving b on the unix socket at path (mode 0600). A stale
// socket left by a crashed node is replaced; a live one is an error.
func Listen(path string, b Backend) (*Server, error) {
	if Alive(path) {
		return nil, fmt.Errorf("api: another node serves %s", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(b.Status())
	})
	mux.HandleFunc("POST /v1/series", func(w http.ResponseWriter, r *http.Request) { serveSeries(w, r, b) })
	ledgerRoutes(mux, b)
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln, path: path, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func serveSeries(w http.ResponseWriter, r *http.Request, b Backend) {
	var req SubmitRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || !filepath.IsAbs(req.SpecPath) {
		http.Error(w, "want JSON {\"spec_path\": \"/absolute/path.yaml\"}", http.StatusBadRequest)
		return
	}
	c := b.Client()
	if c == nil {
		http.Error(w, "this node does not have the client role (start it with --role client or worker,client)", http.StatusConflict)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	fl, _ := w.(http.Flusher)
	obs, _ := b.(Observer)
	emit := func(m Message) {
		if obs != nil {
			obs.ObserveSeries(m)
		}
		_ = enc.Encode(m)
		if fl != nil {
			fl.Flush()
		}
	}
	// The series stops when the submitter goes away (Ctrl-C on submit).
	if _, err := RunSpec(r.Context(), c, req, b.Builtins(), emit); err != nil {
		emit(Message{Kind: "error", Error: err.Error()})
	}
}

// Close stops the server and removes the socket.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	_ = os.Remove(s.path)
	return err
}

func httpClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// Alive reports whether a node answers on the socket at path.
func Alive(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// GetStatus fetches a running node's status into v.
func GetStatus(ctx context.Context, path string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://node/v1/status", nil)
	resp, err := httpClient(path).Do(req)
	if err != nil {
		return fmt.Errorf("api: no node running here (%s): %w", path, err)
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// Submit hands a series to the node at path and calls fn for each message.
func Submit(ctx context.Context, path string, sr SubmitRequest, fn func(Message)) error {
	body, _ := json.Marshal(sr)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://node/v1/series", bytes.NewReader(body))
	resp, err := httpClient(path).Do(req)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("api: node says: %s", bytes.TrimSpace(msg))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var m Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return fmt.Errorf("api: bad message from node: %w", err)
		}
		fn(m)
	}
	return sc.Err()
}
