package schedule

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// The dispatch state machine, in the style of etcd's raft: the client's
// dispatch (node/client/dispatch.go) feeds it events — a bid or award
// extension arrived (Award), a worker has room for a job (Pull), a result
// or failure came back (Result), a worker's stream failed (WorkerFailed),
// time passed (Tick), a round of bids ended (BidsDone) — and carries out
// the effects each returns: send a job, extend an award, ask for bids,
// cancel a losing attempt, finish a job. It does no I/O, reads no clock and
// is not safe for concurrent use.
//
// Guarantees (tested as data in testdata/machine/*.txt):
//   - a failed, vanished or hung worker's unfinished jobs go back to the
//     pool; the other bidders take them within their budgets, which grow
//     by Extend effects within their bids' capacity, and when that is not
//     enough an AskBids effect asks for a fresh round; a job fails for want
//     of workers only when that round brought no one to take it;
//   - a job has at most two open attempts (a reissue after a hang, or a
//     backup near the end); the first accepted result wins and every
//     other attempt is cancelled (neither used nor paid);
//   - every job ends exactly once (one Finish effect).

// ErrWorkerGone is the failure reason of a job whose last attempt was lost
// with its worker.
var ErrWorkerGone = errors.New("schedule: worker gone")

// Stats counts jobs by state. Done+Failed+InFlight+Pending == Total.
type Stats struct {
	Total    int
	Done     int
	Failed   int // failed for good
	InFlight int // open at a worker
	Pending  int // in the pool
}

// ErrNoWorkers is the reason of a job that no worker would take, even after
// a fresh round of discovery and bids.
var ErrNoWorkers = errors.New("schedule: no worker will take this job, even after a fresh round of discovery and bids")

// EffectKind names what the adapter must do.
type EffectKind uint8

const (
	// Send: send Job to Worker (Backup: a second attempt, the first is
	// still open).
	Send EffectKind = iota + 1
	// Extend: get N more paid jobs from Worker (lock escrow for them,
	// under a fresh bid when the ledger needs one) and report with Award.
	Extend
	// AskBids: no live worker may take the pending jobs: discover
	// workers, ask for bids, report each with Award and end with BidsDone.
	AskBids
	// Cancel: Worker's attempt at Job lost (another result won, or the
	// job ended): do not use or pay its result.
	Cancel
	// Finish: Job ended: done by Worker, or failed with Reason.
	Finish
	// Hung: Worker made no progress past a job's deadline; its open jobs
	// were reissued (for the log: nothing to do).
	Hung
)

func (k EffectKind) String() string {
	switch k {
	case Send:
		return "send"
	case Extend:
		return "extend"
	case AskBids:
		return "ask-bids"
	case Cancel:
		return "cancel"
	case Finish:
		return "finish"
	case Hung:
		return "hung"
	}
	return fmt.Sprintf("effect(%d)", uint8(k))
}

// Effect is one thing for the adapter to do.
type Effect struct {
	Kind     EffectKind
	Worker   string
	Job      int
	N        int   // Extend: jobs; AskBids: jobs waiting
	Backup   bool  // Send: a second attempt
	Attempts int   // Finish: attempts sent
	Reason   error // Finish: nil when done
}

func (e Effect) String() string {
	switch e.Kind {
	case Send:
		if e.Backup {
			return fmt.Sprintf("send %d to %s (backup)", e.Job, e.Worker)
		}
		return fmt.Sprintf("send %d to %s", e.Job, e.Worker)
	case Extend:
		return fmt.Sprintf("extend %s by %d", e.Worker, e.N)
	case AskBids:
		return fmt.Sprintf("ask-bids for %d", e.N)
	case Cancel:
		return fmt.Sprintf("cancel %d at %s", e.Job, e.Worker)
	case Hung:
		return fmt.Sprintf("hung %s", e.Worker)
	case Finish:
		if e.Reason != nil {
			return fmt.Sprintf("finish %d failed after %d: %v", e.Job, e.Attempts, e.Reason)
		}
		return fmt.Sprintf("finish %d done by %s after %d", e.Job, e.Worker, e.Attempts)
	}
	return e.Kind.String()
}

// Award is what a worker's bid (or an extension of its award) lets the
// machine give it.
type Award struct {
	// Budget is how many more jobs the worker is paid for (escrow locked);
	// added to what it had.
	Budget int
	// Capacity is how many jobs in all the worker's bids will take (its
	// MaxJobs, summed over its bids): Extend stays within it. 0 leaves it
	// as it was.
	Capacity int
	Slots    int           // jobs it runs at once (≥ 1)
	EstJob   time.Duration // its estimate of one job's run time
}

// Config tunes a Machine.
type Config struct {
	Jobs        int
	MaxAttempts int // attempts that may fail (or be lost) before a job fails; < 1 counts as 1
	// MaxWorkers caps the workers ever given jobs (0: no cap).
	MaxWorkers int
	// A job sent to a worker is overdue (a backup may run it near the
	// end) at sent + EstJob × ceil(position / slots), position counting the
	// jobs open at that worker. It is hung HangFactor × EstJob (default 4)
	// plus HangGrace (default 10 s) after it was sent or the worker last
	// answered, whichever is later. DefaultEst stands in for a bid without
	// estimate (default 1 s).
	HangFactor float64
	HangGrace  time.Duration
	DefaultEst time.Duration
	// NoBackups turns off backup attempts of overdue jobs near the end.
	NoBackups bool
	// Affinity names, for some jobs, the worker that ran them in a run
	// that crashed: it is offered them first (it hands back the result it
	// kept instead of running them again), and others take them only when
	// it cannot (gone, hung, or out of budget).
	Affinity map[int]string
	// MaxRounds caps the AskBids rounds in a row that bring no progress
	// (default 2); then jobs no worker takes fail with ErrNoWorkers.
	MaxRounds int
}

type jstate uint8

const (
	jPooled jstate = iota
	jOpen          // at least one open attempt
	jDone
	jFailed
)

type attempt struct {
	worker  string
	sent    time.Time
	overdue time.Time // expected finish
	hung    bool      // past its deadline: the job was reissued
}

type mjob struct {
	state    jstate
	open     []attempt // at most 2
	sent     int       // attempts sent
	failures int       // attempts failed or lost
	failedOn map[string]bool
	reason   error
}

type mworker struct {
	order    int
	budget   int // paid jobs, in all
	spent    int // attempts sent and not failed
	capacity int
	pending  int // jobs asked for by Extend, not yet answered
	slots    int
	est      time.Duration
	open     int // open attempts
	gone     bool
	hung     bool      // has a hung attempt and delivered nothing since
	progress time.Time // its last answer
	scanned  time.Time // its last look for a backup to run
	started  bool      // ever given budget
}

func (w *mworker) free() int { return max(0, w.budget-w.spent) }

// Machine is the dispatch state machine for jobs 0..Jobs-1.
type Machine struct {
	cfg     Config
	jobs    []mjob
	pool    []int // pooled jobs in order from head; entries of jobs no longer pooled are stale
	head    int
	workers map[string]*mworker
	nextOrd int
	asking  bool             // an AskBids round is under way
	rounds  int              // rounds asked since the last progress (MaxRounds)
	aff     map[int]string   // job -> worker it is offered to first; until first sent
	affq    map[string][]int // worker -> its affinity jobs, in order
	running bool             // Begin was called: plan asks for budget
	why     error            // the last BidsDone's account of failures
	pooled  int
	open    int // jobs with open attempts
	ended   int
}

// NewMachine starts a machine with every job pooled and no worker.
func NewMachine(cfg Config) *Machine {
	cfg.Jobs = max(cfg.Jobs, 0)
	cfg.MaxAttempts = max(cfg.MaxAttempts, 1)
	if cfg.HangFactor <= 0 {
		cfg.HangFactor = 4
	}
	if cfg.HangGrace <= 0 {
		cfg.HangGrace = 10 * time.Second
	}
	if cfg.DefaultEst <= 0 {
		cfg.DefaultEst = time.Second
	}
	if cfg.MaxRounds <= 0 {
		cfg.MaxRounds = 2
	}
	m := &Machine{cfg: cfg, jobs: make([]mjob, cfg.Jobs), pool: make([]int, cfg.Jobs), workers: map[string]*mworker{}, pooled: cfg.Jobs}
	for i := range m.pool {
		m.pool[i] = i
	}
	m.aff, m.affq = map[int]string{}, map[string][]int{}
	ids := make([]int, 0, len(cfg.Affinity))
	for id := range cfg.Affinity {
		if id >= 0 && id < cfg.Jobs {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	for _, id := range ids {
		w := cfg.Affinity[id]
		m.aff[id] = w
		m.affq[w] = append(m.affq[w], id)
	}
	return m
}

// Finished reports whether every job has ended.
func (m *Machine) Finished() bool { return m.ended == len(m.jobs) }

// Stats returns the job counts (Pending: pooled).
func (m *Machine) Stats() Stats {
	st := Stats{Total: len(m.jobs), InFlight: m.open, Pending: m.pooled}
	for i := range m.jobs {
		switch m.jobs[i].state {
		case jDone:
			st.Done++
		case jFailed:
			st.Failed++
		}
	}
	return st
}

// Budget returns worker's paid jobs and those it was sent (not failed).
func (m *Machine) Budget(worker string) (budget, spent int) {
	if w := m.workers[worker]; w != nil {
		return w.budget, w.spent
	}
	return 0, 0
}

// Started reports whether worker was ever given budget (its stream should
// run).
func (m *Machine) Started(worker string) bool {
	w := m.workers[worker]
	return w != nil && w.started && !w.gone
}

// Begin is the event "the first bids are awarded": from now on, jobs that
// no budget covers make the machine ask for more (Extend, AskBids).
func (m *Machine) Begin() []Effect {
	m.running = true
	return m.plan(nil)
}

// Award adds a worker's bid, or the answer to an Extend: Budget more paid
// jobs (0 for a bidder kept in reserve), its capacity, slots and estimate.
// A worker that failed before comes back live.
func (m *Machine) Award(worker string, a Award) []Effect {
	w := m.workers[worker]
	if w == nil {
		w = &mworker{order: m.nextOrd}
		m.nextOrd++
		m.workers[worker] = w
	}
	w.gone = false
	w.pending = 0
	w.budget += max(a.Budget, 0)
	if a.Capacity > 0 {
		w.capacity = a.Capacity
	}
	w.capacity = max(w.capacity, w.budget)
	w.slots = max(a.Slots, 1)
	if a.EstJob > 0 {
		w.est = a.EstJob
	}
	if w.budget > 0 && !w.started {
		w.started = true
	}
	if a.Budget > 0 {
		m.rounds = 0
	}
	return m.plan(nil)
}

// ExtendFailed reports that worker would not (or could not be paid to)
// take more jobs: its capacity shrinks to its budget.
func (m *Machine) ExtendFailed(worker string) []Effect {
	if w := m.workers[worker]; w != nil {
		w.pending = 0
		w.capacity = w.budget
	}
	return m.plan(nil)
}

// BidsDone ends an AskBids round (its bids came as Award events); why is
// the adapter's account of what went wrong, for the reason of jobs that
// then fail for want of workers (see plan).
func (m *Machine) BidsDone(why error) []Effect {
	m.asking = false
	m.rounds++
	m.why = why
	return m.plan(nil)
}

// anyTaker: a live, not hung worker with free budget or an extension on
// the way.
func (m *Machine) anyTaker() bool {
	for _, w := range m.workers {
		if !w.gone && !w.hung && (w.free() > 0 || w.pending > 0) {
			return true
		}
	}
	return false
}

// need is how many pooled jobs no budget covers yet.
func (m *Machine) need() int {
	n := m.pooled
	for _, w := range m.workers {
		if !w.gone && !w.hung {
			n -= w.free() + w.pending
		}
	}
	return n
}

// plan asks for more budget when the pool outgrows it: Extend effects to
// live bidders with spare capacity (in award order), else one AskBids
// round at a time.
func (m *Machine) plan(eff []Effect) []Effect {
	need := m.need()
	if need <= 0 || m.Finished() || !m.running {
		return eff
	}
	ws := m.sorted()
	started := 0
	for _, name := range ws {
		if w := m.workers[name]; w.started && !w.gone {
			started++
		}
	}
	for _, name := range ws {
		w := m.workers[name]
		if w.gone || w.hung || need <= 0 {
			continue
		}
		spare := w.capacity - w.budget
		if spare <= 0 || w.pending > 0 {
			continue
		}
		if !w.started && m.cfg.MaxWorkers > 0 && started >= m.cfg.MaxWorkers {
			continue
		}
		n := min(spare, need)
		if !w.started {
			started++
		}
		w.pending += n
		need -= n
		eff = append(eff, Effect{Kind: Extend, Worker: name, N: n})
	}
	if need <= 0 || m.asking || m.pendingAny() {
		return eff
	}
	if m.rounds < m.cfg.MaxRounds {
		m.asking = true
		return append(eff, Effect{Kind: AskBids, N: need})
	}
	if m.anyTaker() || m.anyHung() {
		// Those with budget work on, or a hung worker may yet answer (or
		// its connection drop): plan runs again as that happens.
		return eff
	}
	// Fresh rounds brought nobody to take the pooled jobs: they fail,
	// except those a hung worker may still finish, which wait for it.
	reason := error(ErrNoWorkers)
	if m.why != nil {
		reason = fmt.Errorf("%w (%w)", ErrNoWorkers, m.why)
	}
	pool := m.pool[m.head:]
	m.pool, m.head = nil, 0
	for _, id := range pool {
		j := &m.jobs[id]
		switch {
		case j.state != jPooled:
		case len(j.open) > 0:
			j.state = jOpen
			m.pooled--
			m.open++
		default:
			eff = m.finish(eff, id, "", reason)
		}
	}
	return eff
}

func (m *Machine) anyHung() bool {
	for _, w := range m.workers {
		if !w.gone && w.hung {
			return true
		}
	}
	return false
}

func (m *Machine) pendingAny() bool {
	for _, w := range m.workers {
		if !w.gone && w.pending > 0 {
			return true
		}
	}
	return false
}

func (m *Machine) sorted() []string {
	names := make([]string, 0, len(m.workers))
	for n := range m.workers {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return m.workers[names[i]].order < m.workers[names[j]].order })
	return names
}

// backupScanEvery spaces an idle worker's looks for a job to back up.
const backupScanEvery = 100 * time.Millisecond

// Pull is the event "worker has room for one more job" at now. The
// effects hold at most one Send to worker: a pooled job it may take (not
// one it failed on while another worker has not), or, when the pool is
// empty and worker has nothing open, a backup attempt of the most overdue
// job open elsewhere.
func (m *Machine) Pull(worker string, now time.Time) []Effect {
	w := m.workers[worker]
	if w == nil || w.gone || w.hung || w.free() <= 0 || m.Finished() {
		return nil
	}
	q := m.affq[worker]
	for len(q) > 0 {
		id := q[0]
		q = q[1:]
		if j := &m.jobs[id]; j.state == jPooled && !j.openAt(worker) && m.aff[id] == worker {
			m.affq[worker] = q
			return []Effect{m.take(id, worker, w, now)}
		}
	}
	delete(m.affq, worker)
	for m.head < len(m.pool) && m.jobs[m.pool[m.head]].state != jPooled {
		m.head++
	}
	if m.head > 64 && m.head*2 > len(m.pool) {
		m.pool, m.head = append(m.pool[:0], m.pool[m.head:]...), 0
	}
	for i := m.head; i < len(m.pool); i++ {
		id := m.pool[i]
		j := &m.jobs[id]
		if j.state != jPooled || j.openAt(worker) || (j.failedOn[worker] && m.someoneElse(j, worker)) || m.heldFor(id, worker) {
			continue
		}
		if i == m.head {
			m.head++
		}
		return []Effect{m.take(id, worker, w, now)}
	}
	if m.cfg.NoBackups || w.open > 0 || m.pooled > 0 || now.Sub(w.scanned) < backupScanEvery {
		return nil
	}
	w.scanned = now // the scan is O(jobs): not on every wake-up of an idle worker
	best, bestAt := -1, time.Time{}
	for id := range m.jobs {
		j := &m.jobs[id]
		if j.state != jOpen || len(j.open) != 1 || j.open[0].worker == worker || now.Before(j.open[0].overdue) {
			continue
		}
		if best < 0 || j.open[0].overdue.Before(bestAt) {
			best, bestAt = id, j.open[0].overdue
		}
	}
	if best < 0 {
		return nil
	}
	return []Effect{m.start(best, worker, w, now, true)}
}

func (j *mjob) openAt(worker string) bool {
	for _, a := range j.open {
		if a.worker == worker {
			return true
		}
	}
	return false
}

// take starts a pooled job at worker.
func (m *Machine) take(id int, name string, w *mworker, now time.Time) Effect {
	j := &m.jobs[id]
	m.pooled--
	m.open++
	j.state = jOpen
	delete(m.aff, id)
	return m.start(id, name, w, now, len(j.open) > 0)
}

// heldFor: job id waits for the worker it has affinity with, which is not
// worker and can take it (live, not hung, with budget or more coming).
func (m *Machine) heldFor(id int, worker string) bool {
	a, ok := m.aff[id]
	if !ok || a == worker {
		return false
	}
	w := m.workers[a]
	return w != nil && !w.gone && !w.hung && (w.free() > 0 || w.pending > 0)
}

// someoneElse: a live worker other than worker that has not failed j.
func (m *Machine) someoneElse(j *mjob, worker string) bool {
	for name, w := range m.workers {
		if name != worker && !w.gone && !j.failedOn[name] {
			return true
		}
	}
	return false
}

func (m *Machine) start(id int, name string, w *mworker, now time.Time, backup bool) Effect {
	j := &m.jobs[id]
	w.open++
	w.spent++
	j.sent++
	est := w.est
	if est <= 0 {
		est = m.cfg.DefaultEst
	}
	wait := est * time.Duration((w.open+w.slots-1)/w.slots)
	j.open = append(j.open, attempt{worker: name, sent: now, overdue: now.Add(wait)})
	return Effect{Kind: Send, Worker: name, Job: id, Backup: backup}
}

// drop closes worker's attempt at job; it reports whether there was one.
func (m *Machine) drop(id int, worker string) bool {
	j := &m.jobs[id]
	for i, a := range j.open {
		if a.worker == worker {
			j.open = append(j.open[:i], j.open[i+1:]...)
			if w := m.workers[worker]; w != nil {
				w.open--
			}
			return true
		}
	}
	return false
}

// Outcome is what a worker returned for a job.
type Outcome struct {
	At        time.Time // when it arrived
	OK        bool
	Err       error // when !OK
	Retryable bool  // when !OK: another attempt may succeed
}

// Result is the event "worker answered for job". An accepted result
// (OK) finishes the job, unless it had ended already: then the result is
// cancelled (not used, not paid). Other open attempts are cancelled. A
// failure closes the attempt; when no other attempt is open, a retryable
// failure returns the job to the pool until MaxAttempts have failed, and
// a final one fails it.
func (m *Machine) Result(worker string, id int, o Outcome) []Effect {
	if id < 0 || id >= len(m.jobs) {
		return nil
	}
	j := &m.jobs[id]
	had := m.drop(id, worker)
	if w := m.workers[worker]; w != nil {
		w.hung = false // it answers: alive again
		if o.At.After(w.progress) {
			w.progress = o.At
		}
		if had && !o.OK {
			w.spent-- // not paid: its budget covers another job
		}
	}
	var eff []Effect
	if j.state == jDone || j.state == jFailed {
		if o.OK {
			eff = append(eff, Effect{Kind: Cancel, Worker: worker, Job: id})
		}
		return m.plan(eff)
	}
	if !had && !(o.OK && j.state == jOpen) {
		return m.plan(nil) // stale: neither open here nor useful
	}
	if o.OK {
		m.rounds = 0
		return m.plan(m.finish(eff, id, worker, nil))
	}
	if len(j.open) > 0 {
		return m.plan(eff) // the other attempt may still succeed
	}
	reason := o.Err
	if reason == nil {
		reason = errors.New("schedule: failed (no reason given)")
	}
	j.failures++
	if !o.Retryable || j.failures >= m.cfg.MaxAttempts {
		return m.plan(m.finish(eff, id, worker, reason))
	}
	if j.failedOn == nil {
		j.failedOn = map[string]bool{}
	}
	j.failedOn[worker] = true
	j.reason = reason
	m.repool(id)
	return m.plan(eff)
}

// finish ends job id and cancels its other open attempts.
func (m *Machine) finish(eff []Effect, id int, worker string, reason error) []Effect {
	j := &m.jobs[id]
	switch j.state {
	case jPooled:
		m.pooled--
	case jOpen:
		m.open--
	}
	for _, a := range j.open {
		if w := m.workers[a.worker]; w != nil {
			w.open--
		}
		eff = append(eff, Effect{Kind: Cancel, Worker: a.worker, Job: id})
	}
	j.open = nil
	j.failedOn = nil
	if reason == nil {
		j.state = jDone
	} else {
		j.state, j.reason = jFailed, reason
	}
	m.ended++
	return append(eff, Effect{Kind: Finish, Worker: worker, Job: id, Attempts: j.sent, Reason: reason})
}

func (m *Machine) repool(id int) {
	j := &m.jobs[id]
	if j.state == jPooled {
		return // already (a hung attempt's job, reissued)
	}
	if j.state == jOpen {
		m.open--
	}
	j.state = jPooled
	m.pooled++
	m.pool = append(m.pool, id)
}

// WorkerFailed is the event "worker's stream ended" (crash, disconnect,
// reset, or a clean end). Its open attempts are lost: a job with no other
// attempt open counts a failure (ErrWorkerGone, so that a job that kills
// its workers cannot loop forever) and returns to the pool; its unspent
// budget is gone, and the pool's need is planned anew.
func (m *Machine) WorkerFailed(worker string, why error) []Effect {
	w := m.workers[worker]
	if w == nil || w.gone {
		return nil
	}
	w.gone, w.hung, w.pending = true, false, 0
	w.budget = w.spent // what is left of its escrow pays nobody now
	w.capacity = w.budget
	reason := fmt.Errorf("%w: %s", ErrWorkerGone, worker)
	if why != nil {
		reason = fmt.Errorf("%w: %s: %w", ErrWorkerGone, worker, why)
	}
	var eff []Effect
	for id := range m.jobs {
		j := &m.jobs[id]
		if (j.state != jOpen && j.state != jPooled) || !m.drop(id, worker) || len(j.open) > 0 || j.state == jPooled {
			continue
		}
		j.failures++
		j.reason = reason
		if j.failures >= m.cfg.MaxAttempts {
			eff = m.finish(eff, id, worker, reason)
			continue
		}
		m.repool(id)
	}
	return m.plan(eff)
}

// Tick is the event "time is now". An attempt past its deadline marks its
// worker hung: nothing more is sent to it until it delivers a result, and
// each of its open jobs without a second attempt goes back to the pool
// while the hung attempt stays open (the first result wins).
func (m *Machine) Tick(now time.Time) []Effect {
	var eff []Effect
	for id := range m.jobs {
		j := &m.jobs[id]
		if j.state != jOpen {
			continue
		}
		for i := range j.open {
			if a := &j.open[i]; !a.hung && now.After(m.deadline(a)) {
				eff = append(eff, Effect{Kind: Hung, Worker: a.worker})
				m.hang(a.worker)
			}
		}
	}
	return m.plan(eff)
}

// deadline is when attempt a counts as hung: HangFactor job estimates plus
// HangGrace after it was sent or its worker last answered, whichever is
// later. A slow worker that keeps answering is not hung; a stopped one is.
func (m *Machine) deadline(a *attempt) time.Time {
	w := m.workers[a.worker]
	est := w.est
	if est <= 0 {
		est = m.cfg.DefaultEst
	}
	base := a.sent
	if w.progress.After(base) {
		base = w.progress
	}
	return base.Add(time.Duration(float64(est)*m.cfg.HangFactor) + m.cfg.HangGrace)
}

func (m *Machine) hang(worker string) {
	w := m.workers[worker]
	if w == nil || w.gone {
		return
	}
	w.hung = true
	for id := range m.jobs {
		j := &m.jobs[id]
		if j.state != jOpen {
			continue
		}
		live := 0
		for i := range j.open {
			if j.open[i].worker == worker {
				j.open[i].hung = true
			}
			if !j.open[i].hung {
				live++
			}
		}
		if live == 0 {
			// Back to the pool, the hung attempts still open (the first
			// result wins): Pull starts another.
			m.open--
			m.pooled++
			j.state = jPooled
			m.pool = append(m.pool, id)
		}
	}
}

// Hung reports whether worker is hung now.
func (m *Machine) Hung(worker string) bool {
	w := m.workers[worker]
	return w != nil && w.hung
}
