package viz

import (
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/p2pjobs/p2pnode/node/events"
)

// CheckpointEvery is how many records separate two state snapshots in an
// Index: StateAt applies at most that many records to a copy of a snapshot.
const CheckpointEvery = 2048

// Node is a peer seen in the logs, either as the writer of a log or as the
// other side of an event.
type Node struct {
	ID    string   `json:"id"`
	Role  string   `json:"role,omitempty"`  // "" when the node has no log of its own
	Addrs []string `json:"addrs,omitempty"` // from its "started" event
	// Logs is true when events written by this node were read.
	Logs bool `json:"logs,omitempty"`
	// Name is the base name of the node's log file without ".jsonl"
	// (the demo's "authority", "worker-1", ...), "" when it has no log.
	// Several nodes may share a name (logs called events.jsonl).
	Name string `json:"name,omitempty"`
	// First and Last are the times of the first and last events that
	// mention the node.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

// Index is a merged, time-ordered log with the nodes it mentions, its
// errors, and state snapshots for fast random access. Add appends; nothing
// is ever removed. Not safe for concurrent use.
type Index struct {
	Records []Record
	Nodes   []Node
	// Errors holds the positions in Records of error events: kind "error"
	// or any event but a decline with Err set.
	Errors []int

	byID        map[string]int
	checkpoints []*State // checkpoints[i] is the state after i*CheckpointEvery records
	last        *State   // state after all records
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	s := NewState()
	return &Index{byID: map[string]int{}, checkpoints: []*State{s.Clone()}, last: s}
}

// Add merges a batch of records (from one Poll) into the index. The batch
// is sorted by time; records older than the index's last one are placed
// after it with At raised to its time, so positions never change.
func (x *Index) Add(batch []Record) {
	// Sort positions, not the large records themselves.
	order := make([]int32, len(batch))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(i, j int32) int { return batch[i].At.Compare(batch[j].At) })
	x.Records = slices.Grow(x.Records, len(batch))
	for _, k := range order {
		r := batch[k]
		if n := len(x.Records); n > 0 && r.At.Before(x.Records[n-1].At) {
			r.At = x.Records[n-1].At
		}
		i := len(x.Records)
		x.Records = append(x.Records, r)
		x.noteNodes(r)
		if isError(r.Event) {
			x.Errors = append(x.Errors, i)
		}
		x.last.Apply(r)
		if (i+1)%CheckpointEvery == 0 {
			x.checkpoints = append(x.checkpoints, x.last.Clone())
		}
	}
}

// isError tells whether an event reports a failure: kind "error", or Err
// set on anything but a decline (whose Err is the worker's reason).
func isError(e events.Event) bool {
	return e.Kind == events.Error || (e.Err != "" && e.Kind != events.Decline)
}

func (x *Index) node(id string, at time.Time) *Node {
	i, ok := x.byID[id]
	if !ok {
		i = len(x.Nodes)
		x.byID[id] = i
		x.Nodes = append(x.Nodes, Node{ID: id, First: at})
	}
	n := &x.Nodes[i]
	if at.After(n.Last) {
		n.Last = at
	}
	return n
}

func (x *Index) noteNodes(r Record) {
	if r.Node != "" {
		n := x.node(r.Node, r.At)
		n.Logs = true
		if n.Name == "" && r.File != "" {
			n.Name = strings.TrimSuffix(filepath.Base(r.File), ".jsonl")
		}
		if r.Role != "" {
			n.Role = r.Role
		}
		if r.Kind == events.Started {
			if a := stringList(r.Attrs["addrs"]); len(a) > 0 {
				n.Addrs = a
			}
		}
	}
	if r.Peer != "" {
		x.node(r.Peer, r.At)
	}
	if r.Kind == events.Neighbours {
		for _, p := range stringList(r.Attrs["peers"]) {
			x.node(p, r.At)
		}
	}
	if cp, ok := r.Attrs["counterparty"].(string); ok && cp != "" {
		x.node(cp, r.At)
	}
}

// NodeIndex returns the position of a node in Nodes.
func (x *Index) NodeIndex(id string) (int, bool) {
	i, ok := x.byID[id]
	return i, ok
}

// Start and End are the times of the first and last records.
func (x *Index) Start() time.Time {
	if len(x.Records) == 0 {
		return time.Time{}
	}
	return x.Records[0].At
}

// End is the time of the last record.
func (x *Index) End() time.Time {
	if len(x.Records) == 0 {
		return time.Time{}
	}
	return x.Records[len(x.Records)-1].At
}

// Count returns how many records happened at or before t.
func (x *Index) Count(t time.Time) int {
	return sort.Search(len(x.Records), func(i int) bool { return x.Records[i].At.After(t) })
}

// Next returns the time of the first record after t.
func (x *Index) Next(t time.Time) (time.Time, bool) {
	i := x.Count(t)
	if i == len(x.Records) {
		return time.Time{}, false
	}
	return x.Records[i].At, true
}

// Prev returns the time of the last record before t.
func (x *Index) Prev(t time.Time) (time.Time, bool) {
	i := sort.Search(len(x.Records), func(i int) bool { return !x.Records[i].At.Before(t) })
	if i == 0 {
		return time.Time{}, false
	}
	return x.Records[i-1].At, true
}

// StateAt returns the state after the first n records (clamped to the
// index), built from the nearest snapshot. The caller owns the result.
func (x *Index) StateAt(n int) *State {
	n = max(0, min(n, len(x.Records)))
	if n == len(x.Records) {
		return x.last.Clone()
	}
	c := min(n/CheckpointEvery, len(x.checkpoints)-1)
	s := x.checkpoints[c].Clone()
	for _, r := range x.Records[c*CheckpointEvery : n] {
		s.Apply(r)
	}
	return s
}

// StateAtTime returns the state once every record at or before t applied.
func (x *Index) StateAtTime(t time.Time) *State { return x.StateAt(x.Count(t)) }

// Link is an edge to draw between two nodes, A < B.
type Link struct {
	A    string `json:"a"`
	B    string `json:"b"`
	Kind string `json:"kind"` // "overlay", "direct" or "relayed"
}

// Jobs counts a node's jobs by outcome.
type Jobs struct {
	Started  int `json:"started"`
	Finished int `json:"finished"`
	Failed   int `json:"failed"`
}

// State is what the logs say at one moment: who is up, who neighbours and
// connects to whom, balances, job counts, errors so far.
type State struct {
	Applied    int                  `json:"applied"` // records applied
	Time       time.Time            `json:"time"`
	Seen       map[string]bool      `json:"seen"`
	Stopped    map[string]bool      `json:"stopped"`
	Neighbours map[string][]string  `json:"neighbours"`
	Conns      map[[2]string]string `json:"-"` // (reporter, peer) -> direct|relayed
	Balance    map[string]int64     `json:"balance"`
	Jobs       map[string]Jobs      `json:"jobs"`
	Errors     int                  `json:"errors"`
}

// NewState returns the state before any event.
func NewState() *State {
	return &State{
		Seen:       map[string]bool{},
		Stopped:    map[string]bool{},
		Neighbours: map[string][]string{},
		Conns:      map[[2]string]string{},
		Balance:    map[string]int64{},
		Jobs:       map[string]Jobs{},
	}
}

// Clone returns a deep copy (neighbour lists are never mutated, only
// replaced, so they are shared).
func (s *State) Clone() *State {
	c := *s
	c.Seen = clone(s.Seen)
	c.Stopped = clone(s.Stopped)
	c.Neighbours = clone(s.Neighbours)
	c.Conns = clone(s.Conns)
	c.Balance = clone(s.Balance)
	c.Jobs = clone(s.Jobs)
	return &c
}

func clone[K comparable, V any](m map[K]V) map[K]V {
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Apply advances the state by one record.
func (s *State) Apply(r Record) {
	s.Applied++
	s.Time = r.At
	if r.Node != "" {
		s.Seen[r.Node] = true
	}
	if isError(r.Event) {
		s.Errors++
	}
	switch r.Kind {
	case events.Started:
		delete(s.Stopped, r.Node)
	case events.Stopped:
		s.Stopped[r.Node] = true
		for k := range s.Conns {
			if k[0] == r.Node || k[1] == r.Node {
				delete(s.Conns, k)
			}
		}
		delete(s.Neighbours, r.Node)
	case events.Connected:
		if r.Peer != "" {
			s.Seen[r.Peer] = true
			s.Conns[[2]string{r.Node, r.Peer}] = connKind(r.Conn)
		}
	case events.Disconnected:
		delete(s.Conns, [2]string{r.Node, r.Peer})
	case events.Neighbours:
		s.Neighbours[r.Node] = stringList(r.Attrs["peers"])
	case events.LedgerBlock:
		if b, ok := number(r.Attrs["balance"]); ok {
			s.Balance[r.Node] = b
		} else if d, ok := BalanceChange(r.Attrs); ok {
			s.Balance[r.Node] += d
		}
	case events.JobStarted, events.JobFinished, events.JobFailed:
		j := s.Jobs[r.Node]
		switch r.Kind {
		case events.JobStarted:
			j.Started++
		case events.JobFinished:
			j.Finished++
		default:
			j.Failed++
		}
		s.Jobs[r.Node] = j
	}
}

// BalanceChange is what a ledger_block event without a "balance" attribute
// (an authority's own chain) does to its chain's balance, from the block's
// kind and amount: mint and transfer_in credit, transfer_out and escrow_lock
// debit; escrow_release and escrow_refund pay out of escrow and genesis and
// handover move nothing. ok is false for a block that is not a chain block
// (no "kind").
func BalanceChange(attrs map[string]any) (delta int64, ok bool) {
	kind, _ := attrs["kind"].(string)
	amount, _ := number(attrs["amount"])
	switch kind {
	case "mint", "transfer_in":
		return amount, true
	case "transfer_out", "escrow_lock":
		return -amount, true
	case "":
		return 0, false
	}
	return 0, true
}

func connKind(c string) string {
	if c == "relayed" {
		return "relayed"
	}
	return "direct"
}

// Links returns the edges of a view, sorted: "network" gives overlay
// neighbour links, "traffic" the open connections (relayed when either side
// says so).
func (s *State) Links(view string) []Link {
	m := map[[2]string]string{}
	pair := func(a, b string) [2]string {
		if b < a {
			a, b = b, a
		}
		return [2]string{a, b}
	}
	if view == "network" {
		for n, ps := range s.Neighbours {
			for _, p := range ps {
				if p != n {
					m[pair(n, p)] = "overlay"
				}
			}
		}
	} else {
		for k, kind := range s.Conns {
			p := pair(k[0], k[1])
			if m[p] != "relayed" {
				m[p] = kind
			}
		}
	}
	out := make([]Link, 0, len(m))
	for p, k := range m {
		out = append(out, Link{A: p[0], B: p[1], Kind: k})
	}
	slices.SortFunc(out, func(a, b Link) int {
		if c := strings.Compare(a.A, b.A); c != 0 {
			return c
		}
		return strings.Compare(a.B, b.B)
	})
	return out
}

func stringList(v any) []string {
	switch v := v.(type) {
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func number(v any) (int64, bool) {
	switch v := v.(type) {
	case float64:
		return int64(v), true
	case int64:
		return v, true
	case int:
		return int64(v), true
	case uint64:
		return int64(v), true
	}
	return 0, false
}
