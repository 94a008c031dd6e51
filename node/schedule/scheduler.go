package schedule

import (
	"errors"
	"fmt"
	"sort"
)

// ErrWorkerGone is the failure reason of a job whose last attempt was lost
// with its worker.
var ErrWorkerGone = errors.New("schedule: worker gone")

// Stats counts jobs by state. Done+Failed+InFlight+Pending == Total.
type Stats struct {
	Total    int
	Done     int
	Failed   int // failed for good
	InFlight int
	Pending  int // not yet handed out: allocated to a worker or in the pool
}

type state uint8

const (
	allocated state = iota // in a worker's own queue
	pooled                 // in the shared pool
	inFlight
	done
	failed
)

type job struct {
	state    state
	worker   string // owner while allocated or in flight
	gen      uint32 // bumped on every queue insertion; stale queue entries are skipped
	attempts int    // attempts that ended without success
	failedOn map[string]bool
	reason   error
}

type entry struct {
	job int
	gen uint32
}

// queue is a FIFO of job entries with lazy deletion.
type queue struct {
	items []entry
	head  int
}

func (q *queue) push(e entry) { q.items = append(q.items, e) }

// Scheduler is the dispatch state machine for jobs 0..n-1. The client feeds
// it events (a worker is idle, a job is done or failed, a worker is gone)
// and acts on its answers. It is not safe for concurrent use.
//
// Attempts: every handed-out attempt that ends in Failed (retryable) or is
// lost with its worker counts; after maxAttempts such attempts the job fails
// for good with the last reason. A non-retryable failure is final at once.
type Scheduler struct {
	jobs        []job
	own         map[string]*queue // per-worker allocation
	pool        queue             // shared: unallocated and returned jobs
	inflight    map[string]map[int]bool
	live        map[string]bool // workers known and not gone
	maxAttempts int
	st          Stats
}

// NewScheduler starts a schedule for n jobs. alloc (from Allocate) gives
// each worker a run of jobs, in worker order; jobs beyond its total go to the
// shared pool. maxAttempts < 1 counts as 1.
func NewScheduler(n int, alloc map[string]int, maxAttempts int) *Scheduler {
	n = max(n, 0)
	s := &Scheduler{
		jobs:        make([]job, n),
		own:         make(map[string]*queue, len(alloc)),
		inflight:    make(map[string]map[int]bool),
		live:        make(map[string]bool, len(alloc)),
		maxAttempts: max(maxAttempts, 1),
		st:          Stats{Total: n, Pending: n},
	}
	workers := make([]string, 0, len(alloc))
	for w, k := range alloc {
		if k > 0 {
			workers = append(workers, w)
		}
		s.live[w] = true
	}
	sort.Strings(workers)
	next := 0
	for _, w := range workers {
		q := &queue{}
		for k := alloc[w]; k > 0 && next < n; k-- {
			s.jobs[next] = job{state: allocated, worker: w}
			q.push(entry{job: next})
			next++
		}
		s.own[w] = q
	}
	for ; next < n; next++ {
		s.jobs[next] = job{state: pooled}
		s.pool.push(entry{job: next})
	}
	return s
}

// Next hands worker its next job: first from its own allocation, then from
// the shared pool. A job is not handed to a worker it failed on while another
// live worker has not failed on it. ok is false when nothing is left for
// this worker now (it may be later, when jobs come back to the pool). A
// worker unknown so far, or gone, becomes live.
func (s *Scheduler) Next(worker string) (jobID int, ok bool) {
	s.live[worker] = true
	if q := s.own[worker]; q != nil {
		for q.head < len(q.items) {
			e := q.items[q.head]
			q.head++
			j := &s.jobs[e.job]
			if j.state == allocated && j.gen == e.gen && j.worker == worker {
				s.compact(q)
				s.start(e.job, worker)
				return e.job, true
			}
		}
		s.compact(q)
	}
	// Pool: skip stale entries at the head, then take the first eligible.
	p := &s.pool
	for p.head < len(p.items) && !s.valid(p.items[p.head]) {
		p.head++
	}
	for i := p.head; i < len(p.items); i++ {
		e := p.items[i]
		if !s.valid(e) || !s.mayTake(worker, e.job) {
			continue
		}
		if i == p.head {
			p.head++
		}
		s.compact(p)
		s.start(e.job, worker)
		return e.job, true
	}
	s.compact(p)
	return 0, false
}

// compact drops consumed entries once they are half the queue.
func (s *Scheduler) compact(q *queue) {
	if q.head > 32 && q.head*2 > len(q.items) {
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
}

func (s *Scheduler) valid(e entry) bool {
	j := &s.jobs[e.job]
	return j.state == pooled && j.gen == e.gen
}

// mayTake: not a worker the job failed on, unless every live worker failed on it.
func (s *Scheduler) mayTake(worker string, id int) bool {
	j := &s.jobs[id]
	if !j.failedOn[worker] {
		return true
	}
	for w := range s.live {
		if !j.failedOn[w] {
			return false
		}
	}
	return true
}

func (s *Scheduler) start(id int, worker string) {
	j := &s.jobs[id]
	j.state, j.worker = inFlight, worker
	m := s.inflight[worker]
	if m == nil {
		m = make(map[int]bool)
		s.inflight[worker] = m
	}
	m[id] = true
	s.st.Pending--
	s.st.InFlight++
}

// leave takes the job out of its current non-final state, fixing counts.
func (s *Scheduler) leave(id int) {
	j := &s.jobs[id]
	switch j.state {
	case allocated, pooled:
		s.st.Pending--
	case inFlight:
		s.st.InFlight--
		delete(s.inflight[j.worker], id)
	}
	j.worker = ""
}

// toPool returns a job to the shared pool.
func (s *Scheduler) toPool(id int) {
	s.leave(id)
	j := &s.jobs[id]
	j.state = pooled
	j.gen++
	s.pool.push(entry{job: id, gen: j.gen})
	s.st.Pending++
}

func (s *Scheduler) final(id int, st state, reason error) {
	s.leave(id)
	j := &s.jobs[id]
	j.state, j.reason = st, reason
	j.failedOn = nil
	if st == done {
		s.st.Done++
	} else {
		s.st.Failed++
	}
}

func (s *Scheduler) known(id int) bool { return id >= 0 && id < len(s.jobs) }

func (s *Scheduler) isFinal(id int) bool {
	st := s.jobs[id].state
	return st == done || st == failed
}

// Done records a job's success, whoever ran it: a late result for a job
// already handed elsewhere still counts. Done for a job already done or
// failed for good, or out of range, is ignored.
func (s *Scheduler) Done(id int) {
	if !s.known(id) || s.isFinal(id) {
		return
	}
	s.final(id, done, nil)
}

// Failed records that job failed at worker. A retryable failure returns the
// job to the pool, to be tried by another worker where possible, until
// maxAttempts attempts have failed; then, or at once if not retryable, the
// job fails for good with reason. A report for a job that is not in flight
// at that worker (stale, e.g. after WorkerGone) is ignored.
func (s *Scheduler) Failed(id int, worker string, reason error, retryable bool) {
	if !s.known(id) {
		return
	}
	j := &s.jobs[id]
	if j.state != inFlight || j.worker != worker {
		return
	}
	if reason == nil {
		reason = errors.New("schedule: failed (no reason given)")
	}
	j.attempts++
	if !retryable || j.attempts >= s.maxAttempts {
		s.final(id, failed, reason)
		return
	}
	if j.failedOn == nil {
		j.failedOn = make(map[string]bool)
	}
	j.failedOn[worker] = true
	j.reason = reason
	s.toPool(id)
}

// WorkerGone returns the worker's allocated jobs to the pool and its
// in-flight jobs too, each counting as a failed attempt (reason
// ErrWorkerGone) so that a job that kills its workers cannot loop forever.
func (s *Scheduler) WorkerGone(worker string) {
	delete(s.live, worker)
	if q := s.own[worker]; q != nil {
		for _, e := range q.items[q.head:] {
			j := &s.jobs[e.job]
			if j.state == allocated && j.gen == e.gen && j.worker == worker {
				s.toPool(e.job)
			}
		}
		delete(s.own, worker)
	}
	ids := make([]int, 0, len(s.inflight[worker]))
	for id := range s.inflight[worker] {
		ids = append(ids, id)
	}
	sort.Ints(ids) // deterministic pool order
	for _, id := range ids {
		j := &s.jobs[id]
		j.attempts++
		reason := fmt.Errorf("%w: %s", ErrWorkerGone, worker)
		if j.attempts >= s.maxAttempts {
			s.final(id, failed, reason)
			continue
		}
		j.reason = reason
		s.toPool(id)
	}
	delete(s.inflight, worker)
}

// FailPending fails for good every job not yet handed out, with reason; for
// a client that gives up on a stalled series. In-flight jobs are untouched.
func (s *Scheduler) FailPending(reason error) {
	for id := range s.jobs {
		if st := s.jobs[id].state; st == allocated || st == pooled {
			s.final(id, failed, reason)
		}
	}
}

// Finished reports whether every job is done or failed for good.
func (s *Scheduler) Finished() bool { return s.st.Done+s.st.Failed == s.st.Total }

// Stats returns the job counts.
func (s *Scheduler) Stats() Stats { return s.st }

// Failures returns job -> reason for every job failed for good. The map is
// the caller's.
func (s *Scheduler) Failures() map[int]error {
	out := make(map[int]error, s.st.Failed)
	for id := range s.jobs {
		if s.jobs[id].state == failed {
			out[id] = s.jobs[id].reason
		}
	}
	return out
}

// Stalled reports whether pending jobs remain that none of liveWorkers may
// take: no live worker is left, or the pending jobs are allocated to workers
// not in the list, or every listed worker has failed on them while some
// other worker the scheduler still counts as live has not. The client then
// solicits new bids, declares workers gone, or calls FailPending.
func (s *Scheduler) Stalled(liveWorkers []string) bool {
	if s.st.Pending == 0 {
		return false
	}
	for _, w := range liveWorkers {
		if q := s.own[w]; q != nil {
			for _, e := range q.items[q.head:] {
				if j := &s.jobs[e.job]; j.state == allocated && j.gen == e.gen && j.worker == w {
					return false
				}
			}
		}
	}
	p := &s.pool
	for _, e := range p.items[p.head:] {
		if !s.valid(e) {
			continue
		}
		for _, w := range liveWorkers {
			if s.mayTake(w, e.job) {
				return false
			}
		}
	}
	return true
}
