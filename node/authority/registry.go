// Package authority implements the authority role's worker registry: the
// /p2pjobs/register and /p2pjobs/discover protocols. Registry is the pure
// part (records, expiry, filtered pagination, a function of its inputs and
// the time given); Service is the libp2p adapter around it.
package authority

import (
	"errors"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// ErrFull means the registry holds its maximum number of workers.
var ErrFull = errors.New("authority: registry full")

// Record is one registered worker.
type Record struct {
	ID      peer.ID
	Req     *pb.RegisterRequest // as last received; owned by the registry
	Expires time.Time
}

// Filter selects workers in Discover.
type Filter struct {
	Executor  string
	MinMemory uint64
	MaxPrice  uint64 // 0: any
}

func (f Filter) match(r *Record) bool {
	if f.Executor != "" && !slices.Contains(r.Req.Executors, f.Executor) {
		return false
	}
	if r.Req.MemoryBytes < f.MinMemory {
		return false
	}
	return f.MaxPrice == 0 || r.Req.PricePerJob <= f.MaxPrice
}

// Registry holds worker registrations with a time to live. Not safe for
// concurrent use: the Service serialises access.
type Registry struct {
	ttl     time.Duration
	max     int
	workers map[peer.ID]*Record
}

// NewRegistry makes a registry whose records live ttl after their last
// registration or heartbeat, holding at most max workers.
func NewRegistry(ttl time.Duration, max int) *Registry {
	return &Registry{ttl: ttl, max: max, workers: make(map[peer.ID]*Record)}
}

// Register adds or refreshes id. It reports whether id was new.
func (r *Registry) Register(id peer.ID, req *pb.RegisterRequest, now time.Time) (rec *Record, isNew bool, err error) {
	rec, ok := r.workers[id]
	if !ok {
		if len(r.workers) >= r.max {
			return nil, false, ErrFull
		}
		rec = &Record{ID: id}
		r.workers[id] = rec
	}
	rec.Req = req
	rec.Expires = now.Add(r.ttl)
	return rec, !ok, nil
}

// Remove drops id (a worker that said goodbye).
func (r *Registry) Remove(id peer.ID) { delete(r.workers, id) }

// Expire drops every record past its time and returns their IDs, sorted.
func (r *Registry) Expire(now time.Time) []peer.ID {
	var gone []peer.ID
	for id, rec := range r.workers {
		if !now.Before(rec.Expires) {
			gone = append(gone, id)
			delete(r.workers, id)
		}
	}
	slices.Sort(gone)
	return gone
}

// Len is the number of live records.
func (r *Registry) Len() int { return len(r.workers) }

// Discover returns up to limit live records matching f whose peer ID sorts
// after cursor, the cursor for the next page ("" when this is the last) and
// the number of matches in all pages. Paging by peer ID keeps pages stable
// while workers come and go.
func (r *Registry) Discover(f Filter, cursor string, limit int, now time.Time) (page []*Record, next string, total int) {
	all := make([]*Record, 0, len(r.workers))
	for _, rec := range r.workers {
		if now.Before(rec.Expires) && f.match(rec) {
			all = append(all, rec)
		}
	}
	// Cursors are peer IDs in their text form (the wire field is a UTF-8
	// string), so the order is by that form too.
	sort.Slice(all, func(i, j int) bool { return all[i].ID.String() < all[j].ID.String() })
	total = len(all)
	start := 0
	if cursor != "" {
		start = sort.Search(len(all), func(i int) bool { return strings.Compare(all[i].ID.String(), cursor) > 0 })
	}
	end := min(start+limit, len(all))
	page = all[start:end]
	if end < len(all) && len(page) > 0 {
		next = page[len(page)-1].ID.String()
	}
	return page, next, total
}
