// Package runner runs a series file: it loads the spec (FromSpec), runs it
// on a client, writes each job's results and the series' journal
// (results/<series>/summary.jsonl) and streams progress messages. RunSpec
// is the one code path that runs a series file, whether the series came
// over the node's control API (node/api) or runs in the submit command's
// own node. It sits between node/client (the network side) and node/api
// (the transport).
package runner

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/series"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
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
	Kind    string       `json:"kind"` // start | bids | outcome | done | error
	Start   *Start       `json:"start,omitempty"`
	Bids    *Bids        `json:"bids,omitempty"`
	Outcome *SummaryLine `json:"outcome,omitempty"`
	Done    *Done        `json:"done,omitempty"`
	Error   string       `json:"error,omitempty"`
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
	s, err := FromSpec(spec, builtins)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(spec.Path(spec.Results), spec.Name)
	skipped := 0
	open := NewResultWriter
	if req.Resume {
		done, err := Journal(dir, spec.Outputs)
		if err != nil {
			return nil, err
		}
		sent, err := Sent(dir)
		if err != nil {
			return nil, err
		}
		kept := s.Jobs[:0]
		for _, j := range s.Jobs {
			if !done[j.ID] {
				if ps := sent[j.ID]; len(ps) > 0 {
					if s.Affinity == nil {
						s.Affinity, s.Prior = map[int]peer.ID{}, map[int][]client.PriorSend{}
					}
					s.Affinity[len(kept)] = ps[len(ps)-1].Worker // the latest send
					s.Prior[len(kept)] = ps
				}
				kept = append(kept, j)
			}
		}
		skipped, s.Jobs, open = len(s.Jobs)-len(kept), kept, ResumeResultWriter
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
	sl, err := openSent(dir, req.Resume)
	if err != nil {
		_ = rw.Close()
		return nil, err
	}
	var werr error
	rep, err := c.Run(ctx, s, client.Hooks{
		OnBids: func(cands []client.Candidate, offers []client.Offer, declines []client.Decline) {
			emit(Message{Kind: "bids", Bids: BidsOf(len(cands), offers, declines)})
		},
		OnSend: func(j int, w peer.ID, bid *pb.Bid) {
			werr = errors.Join(werr, sl.add(s.Jobs[j].ID, w, bid))
		},
		OnOutcome: func(o client.Outcome) {
			werr = errors.Join(werr, rw.Write(o))
			l := rw.Line(o)
			emit(Message{Kind: "outcome", Outcome: &l})
		},
	})
	werr = errors.Join(werr, rw.Close(), sl.Close())
	if err != nil {
		return rep, err
	}
	if werr != nil {
		return rep, fmt.Errorf("runner: writing results: %w", werr)
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
