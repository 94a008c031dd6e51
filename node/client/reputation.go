package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// ReputationFile is the reputation record's name in a data directory.
const ReputationFile = "reputation.json"

// Reputation window and bounds.
const (
	// repWindow is how many recent jobs a worker's record weighs: past it,
	// both counts shrink in proportion, so old behaviour fades.
	repWindow = 200
	// repFloor keeps the worst score above 0, which schedule reads as
	// "unknown".
	repFloor = 0.01
	// maxRepWorkers bounds the record; the longest unseen go first.
	maxRepWorkers = 10000
)

// WorkerRecord is what a client remembers of one worker's past jobs.
// Counts are fractional once the window has shrunk them.
type WorkerRecord struct {
	Done   float64   `json:"done"`   // jobs delivered with a valid receipt
	Failed float64   `json:"failed"` // jobs lost through the worker: see Reputation
	Last   time.Time `json:"last"`   // last outcome
}

// Score is the record's reputation in (0, 1]: the share of jobs delivered,
// smoothed so that a worker never seen scores 0.5 (what node/schedule
// assumes for an unknown one) and one outcome moves it a little:
// (done+1)/(done+failed+2).
func (r WorkerRecord) Score() float64 {
	return max(repFloor, (r.Done+1)/(r.Done+r.Failed+2))
}

// Reputation is a client's record of how workers did on its past series,
// the input of Bid.Reputation (and so of the "reputation" strategy). A job
// counts against a worker when the worker failed it for a reason another
// worker might not have (a timeout, an internal error, a refusal after
// bidding, a bad receipt), or when it was in flight on a stream that broke
// (the worker vanished). Failures that are the job's own doing (a trap, a
// memory cap, a missing output) count neither way; nor do jobs cut short by
// the client itself.
//
// It lives in memory and, when opened from a file, is saved there after each
// series (Save: one small JSON write per series, not per job). Safe for
// concurrent use.
type Reputation struct {
	path string
	now  func() time.Time

	mu   sync.Mutex // guards the fields below
	recs map[peer.ID]*WorkerRecord
}

// NewReputation returns an empty record kept in memory only.
func NewReputation() *Reputation {
	return &Reputation{now: time.Now, recs: map[peer.ID]*WorkerRecord{}}
}

// OpenReputation loads the record saved at path (none yet is no error).
// A file it cannot read or parse is reported, and an empty record that
// Save will overwrite is returned with the error: a lost reputation file
// must not stop a client.
func OpenReputation(path string) (*Reputation, error) {
	r := NewReputation()
	r.path = path
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("client: reputation: %w", err)
	}
	var file map[string]WorkerRecord
	if err := json.Unmarshal(b, &file); err != nil {
		return r, fmt.Errorf("client: reputation %s: %w", path, err)
	}
	for k, v := range file {
		id, err := peer.Decode(k)
		if err != nil || v.Done < 0 || v.Failed < 0 {
			continue
		}
		r.recs[id] = &v
	}
	return r, nil
}

// Score is the worker's reputation in (0, 1]; 0.5 for a worker never seen.
func (r *Reputation) Score(id peer.ID) float64 {
	return r.Record(id).Score()
}

// Record returns a copy of the worker's record (zero if never seen).
func (r *Reputation) Record(id peer.ID) WorkerRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec := r.recs[id]; rec != nil {
		return *rec
	}
	return WorkerRecord{}
}

// Done records n jobs delivered by the worker.
func (r *Reputation) Done(id peer.ID, n int) { r.add(id, float64(n), 0) }

// Failed records n jobs lost through the worker.
func (r *Reputation) Failed(id peer.ID, n int) { r.add(id, 0, float64(n)) }

func (r *Reputation) add(id peer.ID, done, failed float64) {
	if done+failed <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.recs[id]
	if rec == nil {
		r.evictLocked()
		rec = &WorkerRecord{}
		r.recs[id] = rec
	}
	rec.Done += done
	rec.Failed += failed
	if t := rec.Done + rec.Failed; t > repWindow {
		rec.Done, rec.Failed = rec.Done*repWindow/t, rec.Failed*repWindow/t
	}
	rec.Last = r.now()
}

// evictLocked makes room for one more record.
func (r *Reputation) evictLocked() {
	if len(r.recs) < maxRepWorkers {
		return
	}
	ids := make([]peer.ID, 0, len(r.recs))
	for id := range r.recs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return r.recs[ids[i]].Last.Before(r.recs[ids[j]].Last) })
	for _, id := range ids[:len(ids)-maxRepWorkers+1] {
		delete(r.recs, id)
	}
}

// Save writes the record to its file (atomically: a temporary file renamed
// over it). A record kept in memory only is not saved.
func (r *Reputation) Save() error {
	if r.path == "" {
		return nil
	}
	r.mu.Lock()
	file := make(map[string]WorkerRecord, len(r.recs))
	for id, rec := range r.recs {
		file[id.String()] = *rec
	}
	r.mu.Unlock()
	b, err := json.MarshalIndent(file, "", " ")
	if err != nil {
		return fmt.Errorf("client: reputation: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(r.path), ".reputation-*")
	if err != nil {
		return fmt.Errorf("client: reputation: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), r.path)
	}
	if err != nil {
		return fmt.Errorf("client: reputation: %w", err)
	}
	return nil
}

// WithReputation sets the client's reputation record (default: a new one in
// memory).
func WithReputation(r *Reputation) Option { return func(o *options) { o.rep = r } }

// Reputation is the client's record of workers' past outcomes.
func (c *Client) Reputation() *Reputation { return c.o.rep }
