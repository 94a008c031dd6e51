package schedule

import (
	"errors"
	"fmt"
	"testing"
)

func next(t *testing.T, s *Scheduler, w string) int {
	t.Helper()
	j, ok := s.Next(w)
	if !ok {
		t.Fatalf("Next(%s): nothing", w)
	}
	return j
}

func TestSchedulerOwnThenSteal(t *testing.T) {
	s := NewScheduler(5, map[string]int{"a": 2, "b": 1}, 1)
	// a owns 0,1; b owns 2; pool 3,4.
	if j := next(t, s, "b"); j != 2 {
		t.Fatalf("b first = %d", j)
	}
	if j := next(t, s, "b"); j != 3 {
		t.Fatalf("b steals %d, want 3", j)
	}
	if j := next(t, s, "a"); j != 0 {
		t.Fatalf("a first = %d", j)
	}
	if j := next(t, s, "a"); j != 1 {
		t.Fatalf("a second = %d", j)
	}
	if j := next(t, s, "a"); j != 4 {
		t.Fatalf("a steals %d, want 4", j)
	}
	if _, ok := s.Next("a"); ok {
		t.Fatal("a got a sixth job")
	}
	if st := s.Stats(); st.InFlight != 5 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
	for j := range 5 {
		s.Done(j)
	}
	if !s.Finished() || s.Stats().Done != 5 {
		t.Fatalf("not finished: %+v", s.Stats())
	}
}

func TestSchedulerRetryPrefersOtherWorkers(t *testing.T) {
	s := NewScheduler(1, map[string]int{"a": 1, "b": 0}, 3)
	j := next(t, s, "a")
	s.Failed(j, "a", errors.New("boom"), true)
	if _, ok := s.Next("a"); ok {
		t.Fatal("a got back the job it failed while b can take it")
	}
	if !s.Stalled([]string{"a"}) {
		t.Fatal("want stalled for [a] alone")
	}
	if s.Stalled([]string{"a", "b"}) {
		t.Fatal("b may take the job")
	}
	if got := next(t, s, "b"); got != j {
		t.Fatalf("b got %d", got)
	}
	s.Failed(j, "b", errors.New("bang"), true)
	// Every live worker failed on it: a may retry.
	if got := next(t, s, "a"); got != j {
		t.Fatalf("a got %d", got)
	}
	s.Failed(j, "a", errors.New("third"), true)
	if !s.Finished() {
		t.Fatal("3 attempts should be final")
	}
	if err := s.Failures()[j]; err == nil || err.Error() != "third" {
		t.Fatalf("failure = %v", err)
	}
}

func TestSchedulerNonRetryable(t *testing.T) {
	s := NewScheduler(2, map[string]int{"a": 2}, 5)
	j := next(t, s, "a")
	s.Failed(j, "a", errors.New("bad module"), false)
	if st := s.Stats(); st.Failed != 1 || st.Pending != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSchedulerWorkerGone(t *testing.T) {
	s := NewScheduler(4, map[string]int{"a": 3, "b": 1}, 2)
	ja := next(t, s, "a")
	s.WorkerGone("a")
	if st := s.Stats(); st.InFlight != 0 || st.Pending != 4 {
		t.Fatalf("stats %+v", st)
	}
	// A stale failure report from a is ignored.
	s.Failed(ja, "a", errors.New("late"), false)
	var got []int
	for {
		j, ok := s.Next("b")
		if !ok {
			break
		}
		got = append(got, j)
	}
	if len(got) != 4 {
		t.Fatalf("b got %v", got)
	}
	// A late Done from a still counts; b's later Done is then a no-op.
	s.Done(ja)
	s.Done(ja)
	for _, j := range got {
		s.Done(j)
	}
	if st := s.Stats(); !s.Finished() || st.Done != 4 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSchedulerWorkerGoneCountsAttempt(t *testing.T) {
	s := NewScheduler(1, map[string]int{"a": 1}, 1)
	next(t, s, "a")
	s.WorkerGone("a")
	if !s.Finished() || !errors.Is(s.Failures()[0], ErrWorkerGone) {
		t.Fatalf("failures %v", s.Failures())
	}
}

func TestSchedulerStalledNoWorkers(t *testing.T) {
	s := NewScheduler(3, map[string]int{"a": 3}, 3)
	s.WorkerGone("a")
	if !s.Stalled(nil) {
		t.Fatal("want stalled")
	}
	s.FailPending(errors.New("no workers"))
	if !s.Finished() || s.Stats().Failed != 3 {
		t.Fatalf("stats %+v", s.Stats())
	}
	if s.Stalled(nil) {
		t.Fatal("nothing pending: not stalled")
	}
}

// TestSchedulerProperty drives the scheduler with random events and checks
// its invariants after every step: no job in flight at two workers, counts
// add up, final states never change, and a fair driver always finishes.
func TestSchedulerProperty(t *testing.T) {
	for seed := range 500 {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runProperty(t, uint64(seed)) })
	}
}

func runProperty(t *testing.T, seed uint64) {
	r := newRand(seed)
	n := r.intn(60)
	workers := []string{"w0", "w1", "w2", "w3", "w4"}[:1+r.intn(5)]
	alloc := map[string]int{}
	for _, w := range workers {
		alloc[w] = r.intn(n/len(workers) + 3)
	}
	s := NewScheduler(n, alloc, 1+r.intn(4))
	inflight := map[int]string{} // model: job -> worker
	final := map[int]string{}    // job -> "done"/"failed"
	live := map[string]bool{}
	for _, w := range workers {
		live[w] = true
	}
	check := func(step int) {
		t.Helper()
		st := s.Stats()
		if st.Done+st.Failed+st.InFlight+st.Pending != n {
			t.Fatalf("step %d: counts %+v do not add to %d", step, st, n)
		}
		if st.InFlight != len(inflight) {
			t.Fatalf("step %d: in flight %d, model %d", step, st.InFlight, len(inflight))
		}
		fails := s.Failures()
		if len(fails) != st.Failed {
			t.Fatalf("step %d: %d failures, stats %d", step, len(fails), st.Failed)
		}
		for j, what := range final {
			_, isFailed := fails[j]
			if isFailed != (what == "failed") {
				t.Fatalf("step %d: job %d was %s, now failed=%v", step, j, what, isFailed)
			}
		}
		if s.Finished() != (st.Done+st.Failed == n) {
			t.Fatalf("step %d: Finished %v with %+v", step, s.Finished(), st)
		}
	}
	settle := func(j int, how string) {
		if _, ok := final[j]; !ok {
			final[j] = how
		}
	}
	fails := func() map[int]error { return s.Failures() }
	for step := 0; step < 2000 && !s.Finished(); step++ {
		w := workers[r.intn(len(workers))]
		switch op := r.intn(10); {
		case op < 4: // ask for work
			j, ok := s.Next(w)
			live[w] = true
			if ok {
				if other, busy := inflight[j]; busy {
					t.Fatalf("step %d: job %d handed to %s while in flight at %s", step, j, w, other)
				}
				if _, done := final[j]; done {
					t.Fatalf("step %d: finished job %d handed out", step, j)
				}
				inflight[j] = w
			}
		case op < 9 && len(inflight) > 0: // an in-flight job ends
			j := anyKey(r, inflight)
			w := inflight[j]
			delete(inflight, j)
			switch r.intn(4) {
			case 0, 1:
				s.Done(j)
				settle(j, "done")
			default:
				retryable := r.intn(5) > 0
				s.Failed(j, w, fmt.Errorf("err %d", step), retryable)
				if _, failed := fails()[j]; failed {
					settle(j, "failed")
				}
			}
		case op == 9 && len(live) > 1: // a worker vanishes
			delete(live, w)
			s.WorkerGone(w)
			for j, iw := range inflight {
				if iw == w {
					delete(inflight, j)
					if _, failed := fails()[j]; failed {
						settle(j, "failed")
					}
				}
			}
		}
		check(step)
	}
	// Fair driver: every worker asks until none gets anything; finish
	// everything in flight successfully.
	for round := 0; !s.Finished(); round++ {
		if round > 10*n+10 {
			t.Fatalf("no progress: %+v", s.Stats())
		}
		progressed := false
		for _, w := range workers {
			if j, ok := s.Next(w); ok {
				if _, busy := inflight[j]; busy {
					t.Fatalf("job %d handed twice", j)
				}
				inflight[j] = w
				progressed = true
			}
		}
		for j := range inflight {
			s.Done(j)
			settle(j, "done")
			delete(inflight, j)
		}
		check(-1)
		if !progressed && !s.Finished() {
			if !s.Stalled(workers) {
				t.Fatalf("no worker got work but not stalled: %+v", s.Stats())
			}
			s.FailPending(errors.New("stalled"))
		}
	}
	if st := s.Stats(); st.Done+st.Failed != n {
		t.Fatalf("finished with %+v", st)
	}
}

func anyKey(r *rnd, m map[int]string) int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Sort for determinism under a seed.
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys[r.intn(len(keys))]
}
