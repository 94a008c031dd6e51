package node

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/p2pjobs/p2pnode/node/runner"
)

// Live is a running node's state for its live view (p2pnode --http): what
// the event log does not hold, or holds only as a history to replay.
type Live struct {
	PeerID       string        `json:"peer_id"`
	Roles        []string      `json:"roles"`
	Version      string        `json:"version"`
	Reachability string        `json:"reachability"`
	Relay        RelayStatus   `json:"relay_service"`
	Workers      []LiveWorker  `json:"workers,omitempty"` // authority: the registered workers
	Ledger       *LedgerTotals `json:"ledger,omitempty"`  // authority with a ledger: the notary's totals
	Series       []LiveSeries  `json:"series,omitempty"`  // client: the series submitted to this node, newest first
}

// LiveWorker is one worker registered with an authority.
type LiveWorker struct {
	ID            string    `json:"id"`
	Agent         string    `json:"agent,omitempty"`
	Executors     []string  `json:"executors"`
	Capacity      float64   `json:"capacity"` // benchmark seconds: lower is faster
	Price         uint64    `json:"price"`    // base points per job
	Slots         uint32    `json:"slots"`
	Busy          uint32    `json:"busy"` // slots in use at its last heartbeat: its load
	LastHeartbeat time.Time `json:"last_heartbeat"`
	Conn          string    `json:"conn"` // direct | relayed | none: our connection to it now
}

// LedgerTotals sums the accounts an authority's ledger store holds.
type LedgerTotals struct {
	Accounts    int    `json:"accounts"`
	Blocks      uint64 `json:"blocks"`
	Minted      uint64 `json:"minted"`
	Balances    uint64 `json:"balances"`
	OpenEscrows int    `json:"open_escrows"`
	Escrow      uint64 `json:"escrow"` // points locked in open escrows
}

// LiveSeries is a series this node runs or ran as a client.
type LiveSeries struct {
	Name     string    `json:"name"`
	Jobs     int       `json:"jobs"` // to run in this submission
	Skipped  int       `json:"skipped,omitempty"`
	Done     int       `json:"done"`
	Failed   int       `json:"failed"`
	Started  time.Time `json:"started"`
	Finished bool      `json:"finished"`
	Error    string    `json:"error,omitempty"`
	// JobList holds the outcomes so far, the latest maxLiveJobs of them;
	// jobs not listed are still pending.
	JobList []LiveJob `json:"job_list"`
}

// LiveJob is one job's outcome.
type LiveJob struct {
	Job    string            `json:"job"`
	Status string            `json:"status"` // done | failed
	Worker string            `json:"worker,omitempty"`
	Params map[string]string `json:"params,omitempty"`
	Error  string            `json:"error,omitempty"`
}

const (
	maxLiveSeries   = 16   // series remembered, newest first
	maxLiveJobs     = 1000 // outcomes listed per series
	ledgerTotalsTTL = 2 * time.Second
)

// seriesTracker follows the series a client node runs, from the messages
// RunSpec emits.
type seriesTracker struct {
	mu     sync.Mutex
	series []*LiveSeries // guarded by mu; newest first
}

// ObserveSeries records one message of a series run on this node (the
// local API calls it for every message it streams to `p2pnode submit`).
func (n *Node) ObserveSeries(m runner.Message) {
	t := &n.series
	t.mu.Lock()
	defer t.mu.Unlock()
	if m.Kind == "start" && m.Start != nil {
		s := &LiveSeries{Name: m.Start.Series, Jobs: m.Start.Jobs, Skipped: m.Start.Skipped, Started: time.Now()}
		t.series = append([]*LiveSeries{s}, t.series...)
		if len(t.series) > maxLiveSeries {
			t.series = t.series[:maxLiveSeries]
		}
		return
	}
	if len(t.series) == 0 {
		return
	}
	s := t.series[0] // RunSpec's messages for one series come in order, start first
	switch m.Kind {
	case "outcome":
		if m.Outcome != nil {
			observeOutcome(s, m.Outcome)
		}
	case "done":
		s.Finished = true
	case "error":
		s.Finished, s.Error = true, m.Error
	}
}

func observeOutcome(s *LiveSeries, l *runner.SummaryLine) {
	if l.Status == "done" {
		s.Done++
	} else {
		s.Failed++
	}
	s.JobList = append(s.JobList, LiveJob{Job: l.Job, Status: l.Status, Worker: l.Worker, Params: l.Params, Error: l.Error})
	if len(s.JobList) > maxLiveJobs {
		s.JobList = slices.Delete(s.JobList, 0, len(s.JobList)-maxLiveJobs)
	}
}

// Live reports the node's state for its live view.
func (n *Node) Live() Live {
	l := Live{PeerID: n.Host.ID().String(), Roles: n.Cfg.Roles, Version: FullVersion(), Reachability: n.Reachability(),
		Relay: n.relay.status(&n.Cfg)}
	if n.Authority != nil {
		for _, r := range n.Authority.Registered() {
			w := LiveWorker{ID: r.ID.String(), Agent: r.Req.Agent, Executors: r.Req.Executors, Capacity: r.Req.Capacity,
				Price: r.Req.PricePerJob, Slots: r.Req.Slots, Busy: r.Req.Slots - min(r.Req.FreeSlots, r.Req.Slots),
				LastHeartbeat: r.Expires.Add(-n.Authority.TTL()), Conn: "none"}
			for _, c := range n.Host.Network().ConnsToPeer(r.ID) {
				if k := ConnKind(c); w.Conn == "none" || k == "direct" {
					w.Conn = k
				}
			}
			l.Workers = append(l.Workers, w)
		}
		sort.Slice(l.Workers, func(i, j int) bool { return l.Workers[i].ID < l.Workers[j].ID })
		l.Ledger = n.ledgerTotals()
	}
	n.series.mu.Lock()
	for _, s := range n.series.series {
		c := *s
		c.JobList = slices.Clone(s.JobList)
		l.Series = append(l.Series, c)
	}
	n.series.mu.Unlock()
	return l
}

// ledgerTotals sums the authority's store, at most every ledgerTotalsTTL
// (a page polling every second must not read every account each time).
func (n *Node) ledgerTotals() *LedgerTotals {
	if n.Ledger == nil || n.ledgerStore == nil {
		return nil
	}
	n.totals.mu.Lock()
	defer n.totals.mu.Unlock()
	if n.totals.last != nil && time.Since(n.totals.at) < ledgerTotalsTTL {
		c := *n.totals.last
		return &c
	}
	st := n.ledgerStore
	ids, err := st.Accounts()
	if err != nil {
		return n.totals.last
	}
	t := &LedgerTotals{Accounts: len(ids)}
	for _, id := range ids {
		cs, err := st.State(id)
		if err != nil {
			continue
		}
		t.Blocks += cs.Blocks
		t.Minted += cs.Minted
		t.Balances += cs.Balance
	}
	if esc, err := st.OpenEscrows(); err == nil {
		t.OpenEscrows = len(esc)
		for _, e := range esc {
			t.Escrow += e.Remaining
		}
	}
	n.totals.last, n.totals.at = t, time.Now()
	c := *t
	return &c
}
