// Package authority implements the authority role's worker registry: the
// /p2pjobs/register and /p2pjobs/discover protocols. Registry is the pure
// part (records, expiry, filtered pagination, a function of its inputs and
// the time given); Service is the libp2p adapter around it.
package authority

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/google/btree"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// ErrFull means the registry holds its maximum number of workers.
var ErrFull = errors.New("authority: registry full")

// Record is one registered worker. Records are immutable once stored: a
// heartbeat stores a new one, so a View taken earlier keeps reading the
// record it saw, without a lock.
type Record struct {
	ID      peer.ID
	Key     string              // ID.String(): the order of discover pages and their cursors
	Req     *pb.RegisterRequest // as last received; owned by the registry, never modified
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

// executorOnly says whether f selects by executor alone, so that the
// per-executor counts answer how many records it matches.
func (f Filter) executorOnly() bool { return f.MinMemory == 0 && f.MaxPrice == 0 }

func byKey(a, b *Record) bool { return a.Key < b.Key }

func byExpiry(a, b *Record) bool {
	if !a.Expires.Equal(b.Expires) {
		return a.Expires.Before(b.Expires)
	}
	return a.Key < b.Key
}

// btreeDegree suits pointer items: nodes of up to 63 records.
const btreeDegree = 32

// Registry holds worker registrations with a time to live. Not safe for
// concurrent use: the Service serialises access, and reads a View outside
// its lock.
//
// Every operation is O(log n) in the number of records: Register (new or
// heartbeat) and Remove touch one map entry and two B-trees; Expire costs
// O(log n) per record it drops; Snapshot is O(1) (copy-on-write B-trees),
// and a View's Discover costs O(log n + page) — plus the records it skips
// as expired or filtered out, and, only for the first page of a filter on
// memory or price, one pass over the View to count the matches.
type Registry struct {
	ttl     time.Duration
	max     int
	workers map[peer.ID]*Record
	keys    *btree.BTreeG[*Record] // by Key
	expiry  *btree.BTreeG[*Record] // by (Expires, Key)
	execs   map[string]int         // records (live or not yet expired) per executor name
}

// NewRegistry makes a registry whose records live ttl after their last
// registration or heartbeat, holding at most max workers.
func NewRegistry(ttl time.Duration, max int) *Registry {
	return &Registry{ttl: ttl, max: max, workers: make(map[peer.ID]*Record),
		keys: btree.NewG(btreeDegree, byKey), expiry: btree.NewG(btreeDegree, byExpiry), execs: map[string]int{}}
}

// Register adds or refreshes id. It reports whether id was new.
func (r *Registry) Register(id peer.ID, req *pb.RegisterRequest, now time.Time) (rec *Record, isNew bool, err error) {
	old, ok := r.workers[id]
	if !ok && len(r.workers) >= r.max {
		return nil, false, ErrFull
	}
	rec = &Record{ID: id, Req: req, Expires: now.Add(r.ttl)}
	if ok {
		rec.Key = old.Key
		r.unindex(old)
	} else {
		rec.Key = id.String()
	}
	r.workers[id] = rec
	r.keys.ReplaceOrInsert(rec)
	r.expiry.ReplaceOrInsert(rec)
	r.countExecs(rec, 1)
	return rec, !ok, nil
}

func (r *Registry) unindex(rec *Record) {
	r.keys.Delete(rec)
	r.expiry.Delete(rec)
	r.countExecs(rec, -1)
}

// countExecs adds d to the count of each distinct executor rec names.
func (r *Registry) countExecs(rec *Record, d int) {
	for i, e := range rec.Req.Executors {
		if slices.Contains(rec.Req.Executors[:i], e) {
			continue
		}
		if r.execs[e] += d; r.execs[e] == 0 {
			delete(r.execs, e)
		}
	}
}

// Remove drops id (a worker that said goodbye).
func (r *Registry) Remove(id peer.ID) {
	if rec, ok := r.workers[id]; ok {
		delete(r.workers, id)
		r.unindex(rec)
	}
}

// Expire drops every record past its time and returns their IDs, sorted.
func (r *Registry) Expire(now time.Time) []peer.ID {
	var gone []*Record
	r.expiry.Ascend(func(rec *Record) bool {
		if now.Before(rec.Expires) {
			return false
		}
		gone = append(gone, rec)
		return true
	})
	ids := make([]peer.ID, 0, len(gone))
	for _, rec := range gone {
		delete(r.workers, rec.ID)
		r.unindex(rec)
		ids = append(ids, rec.ID)
	}
	slices.Sort(ids)
	return ids
}

// Len is the number of records, including any past their time that Expire
// has not dropped yet.
func (r *Registry) Len() int { return len(r.workers) }

// View is a read-only snapshot of a Registry, safe to read without the
// registry's lock while the registry changes.
type View struct {
	keys, expiry *btree.BTreeG[*Record]
	count        int // records matching the filter given to Snapshot, expired or not
	counted      bool
}

// Snapshot returns a View of the registry now, in O(1): the B-trees are
// cloned copy-on-write. f's match count is taken from the per-executor
// counts when f filters by executor alone.
func (r *Registry) Snapshot(f Filter) *View {
	v := &View{keys: r.keys.Clone(), expiry: r.expiry.Clone()}
	if f.executorOnly() {
		v.counted = true
		if f.Executor == "" {
			v.count = len(r.workers)
		} else {
			v.count = r.execs[f.Executor]
		}
	}
	return v
}

// Discover returns up to limit live records matching f whose peer ID sorts
// after cursor, the cursor for the next page ("" when this is the last) and
// the number of matches in all pages. Paging by peer ID keeps pages stable
// while workers come and go. It is Snapshot(f).Discover.
//
// With a memory or price filter, counting the matches takes a pass over the
// registry, so only the first page (empty cursor) counts them; later pages
// report a total of 0. Without one, every page counts in O(log n).
func (r *Registry) Discover(f Filter, cursor string, limit int, now time.Time) (page []*Record, next string, total int) {
	return r.Snapshot(f).Discover(f, cursor, limit, now)
}

// Discover pages the view as Registry.Discover does. f must be the filter
// the view was taken with.
func (v *View) Discover(f Filter, cursor string, limit int, now time.Time) (page []*Record, next string, total int) {
	limit = max(limit, 1)
	visit := func(rec *Record) bool {
		if rec.Key == cursor || !now.Before(rec.Expires) || !f.match(rec) {
			return true
		}
		if len(page) == limit {
			next = page[limit-1].Key
			return false
		}
		page = append(page, rec)
		return true
	}
	// Cursors are peer IDs in their text form (the wire field is a UTF-8
	// string), so the order is by that form too.
	if cursor == "" {
		v.keys.Ascend(visit)
	} else {
		v.keys.AscendGreaterOrEqual(&Record{Key: strings.Clone(cursor)}, visit)
	}
	if !v.counted && cursor != "" {
		return page, next, 0
	}
	return page, next, v.total(f, now)
}

// total counts the live records matching f: the snapshot's count less the
// matching records past their time (only those Expire has not dropped yet,
// found in O(log n) each from the expiry order), or, for a filter the
// counts cannot answer, one pass.
func (v *View) total(f Filter, now time.Time) int {
	if !v.counted {
		n := 0
		v.keys.Ascend(func(rec *Record) bool {
			if now.Before(rec.Expires) && f.match(rec) {
				n++
			}
			return true
		})
		return n
	}
	n := v.count
	v.expiry.Ascend(func(rec *Record) bool {
		if now.Before(rec.Expires) {
			return false
		}
		if f.match(rec) {
			n--
		}
		return true
	})
	return n
}
