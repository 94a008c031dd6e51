package schedule

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// TestMachine runs the scripts in testdata/machine/*.txt against the
// dispatch state machine, as etcd raft's interaction tests do: each
// command steps the machine and prints the effects it returned. Rewrite
// the expectations with -rewrite and review the diff.
//
// Commands (t: time since the start; w: worker):
//
//	new jobs=<n> attempts=<k> [affinity=<job>:<w>,...] [max-workers=<m>] [factor=<f>] [grace=<d>] [est=<d>] [rounds=<r>] [no-backups]
//	begin
//	award w=<w> budget=<n> cap=<n> [slots=<s>] [est=<d>]
//	pull w=<w> [t=<d>] [n=<max pulls>]   pulls until nothing comes (at most n)
//	ok w=<w> job=<j> [t=<d>]
//	fail w=<w> job=<j> [final] [reason=<text>] [t=<d>]
//	gone w=<w> [reason=<text>]
//	tick t=<d>
//	bids-done [reason=<text>]
//	extend-failed w=<w>
//	stats                                 counts, then each worker's budget
func TestMachine(t *testing.T) {
	datadriven.Walk(t, "testdata/machine", func(t *testing.T, path string) {
		var m *Machine
		var ended map[int]int // job -> Finish effects seen
		t0 := time.Unix(1_700_000_000, 0)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			str := func(key, def string) string {
				if d.HasArg(key) {
					var v string
					d.ScanArgs(t, key, &v)
					return v
				}
				return def
			}
			num := func(key string, def int) int {
				if d.HasArg(key) {
					var v int
					d.ScanArgs(t, key, &v)
					return v
				}
				return def
			}
			dur := func(key string, def time.Duration) time.Duration {
				v := str(key, "")
				if v == "" {
					return def
				}
				x, err := time.ParseDuration(v)
				if err != nil {
					d.Fatalf(t, "%s: %v", key, err)
				}
				return x
			}
			reason := func() error {
				if r := str("reason", ""); r != "" {
					return errors.New(r)
				}
				return nil
			}
			var eff []Effect
			switch d.Cmd {
			case "new":
				aff := map[int]string{}
				for _, kv := range strings.Split(str("affinity", ""), ",") {
					if k, v, ok := strings.Cut(kv, ":"); ok {
						var id int
						fmt.Sscan(k, &id)
						aff[id] = v
					}
				}
				m = NewMachine(Config{Affinity: aff, Jobs: num("jobs", 0), MaxAttempts: num("attempts", 1), MaxWorkers: num("max-workers", 0),
					HangFactor: float64(num("factor", 0)), HangGrace: dur("grace", 0), DefaultEst: dur("est", 0),
					MaxRounds: num("rounds", 0), NoBackups: d.HasArg("no-backups")})
				ended = map[int]int{}
			case "begin":
				eff = m.Begin()
			case "award":
				eff = m.Award(str("w", ""), Award{Budget: num("budget", 0), Capacity: num("cap", 0), Slots: num("slots", 1), EstJob: dur("est", 0)})
			case "pull":
				w, now := str("w", ""), t0.Add(dur("t", 0))
				for n := num("n", 1000); n > 0; n-- {
					e := m.Pull(w, now)
					if len(e) == 0 {
						break
					}
					eff = append(eff, e...)
				}
			case "ok":
				eff = m.Result(str("w", ""), num("job", -1), Outcome{OK: true, At: t0.Add(dur("t", 0))})
			case "fail":
				r := reason()
				if r == nil {
					r = errors.New("failed")
				}
				eff = m.Result(str("w", ""), num("job", -1), Outcome{Err: r, Retryable: !d.HasArg("final"), At: t0.Add(dur("t", 0))})
			case "gone":
				eff = m.WorkerFailed(str("w", ""), reason())
			case "tick":
				eff = m.Tick(t0.Add(dur("t", 0)))
			case "bids-done":
				eff = m.BidsDone(reason())
			case "extend-failed":
				eff = m.ExtendFailed(str("w", ""))
			case "stats":
				st := m.Stats()
				var b strings.Builder
				fmt.Fprintf(&b, "done=%d failed=%d open=%d pooled=%d finished=%v\n", st.Done, st.Failed, st.InFlight, st.Pending, m.Finished())
				names := make([]string, 0, len(m.workers))
				for n := range m.workers {
					names = append(names, n)
				}
				sort.Strings(names)
				for _, n := range names {
					w := m.workers[n]
					fmt.Fprintf(&b, "%s: budget=%d spent=%d cap=%d open=%d", n, w.budget, w.spent, w.capacity, w.open)
					if w.gone {
						b.WriteString(" gone")
					}
					if w.hung {
						b.WriteString(" hung")
					}
					b.WriteString("\n")
				}
				return b.String()
			default:
				d.Fatalf(t, "unknown command %q", d.Cmd)
			}
			for _, e := range eff {
				if e.Kind == Finish {
					ended[e.Job]++
					if ended[e.Job] > 1 {
						t.Errorf("%s: job %d finished twice", d.Pos, e.Job)
					}
				}
			}
			checkInvariants(t, m)
			if len(eff) == 0 {
				return "ok\n"
			}
			var b strings.Builder
			for _, e := range eff {
				b.WriteString(e.String())
				b.WriteString("\n")
			}
			return b.String()
		})
	})
}

// checkInvariants: counts agree with the jobs' states, no worker is sent
// more than its budget, and no job has two open attempts at one worker.
func checkInvariants(t *testing.T, m *Machine) {
	t.Helper()
	var pooled, open, ended int
	opens := map[string]int{}
	for id := range m.jobs {
		j := &m.jobs[id]
		switch j.state {
		case jPooled:
			pooled++
		case jOpen:
			open++
			if len(j.open) == 0 {
				t.Errorf("job %d open without an attempt", id)
			}
		default:
			ended++
			if len(j.open) > 0 {
				t.Errorf("job %d ended with open attempts", id)
			}
		}
		seen := map[string]bool{}
		for _, a := range j.open {
			if seen[a.worker] {
				t.Errorf("job %d: two attempts at %s", id, a.worker)
			}
			seen[a.worker] = true
			opens[a.worker]++
		}
	}
	if pooled != m.pooled || open != m.open || ended != m.ended {
		t.Errorf("counts: pooled %d/%d open %d/%d ended %d/%d", m.pooled, pooled, m.open, open, m.ended, ended)
	}
	for n, w := range m.workers {
		if w.spent > w.budget {
			t.Errorf("%s: spent %d over its budget %d", n, w.spent, w.budget)
		}
		if w.open != opens[n] {
			t.Errorf("%s: open %d, attempts %d", n, w.open, opens[n])
		}
	}
}

// FuzzMachine steps the machine with arbitrary events and checks the
// invariants after each: whatever the network does, counts stay right, no
// job ends twice and budgets hold.
func FuzzMachine(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})
	f.Fuzz(func(t *testing.T, ops []byte) {
		m := NewMachine(Config{Jobs: 12, MaxAttempts: 3, HangGrace: time.Second, DefaultEst: 100 * time.Millisecond})
		now := time.Unix(0, 0)
		ended := map[int]bool{}
		ws := []string{"a", "b", "c"}
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%9, int(ops[i+1])
			w := ws[arg%3]
			var eff []Effect
			switch op {
			case 0:
				eff = m.Award(w, Award{Budget: arg % 5, Capacity: arg % 9, Slots: 1 + arg%2})
			case 1, 2:
				eff = m.Pull(w, now)
			case 3:
				eff = m.Result(w, arg%12, Outcome{OK: true, At: now})
			case 4:
				eff = m.Result(w, arg%12, Outcome{Err: errors.New("x"), Retryable: arg%2 == 0})
			case 5:
				eff = m.WorkerFailed(w, nil)
			case 6:
				now = now.Add(time.Duration(arg) * 100 * time.Millisecond)
				eff = m.Tick(now)
			case 7:
				eff = m.BidsDone(nil)
			case 8:
				eff = m.ExtendFailed(w)
			}
			for _, e := range eff {
				if e.Kind == Finish {
					if ended[e.Job] {
						t.Fatalf("job %d finished twice", e.Job)
					}
					ended[e.Job] = true
				}
			}
			checkInvariants(t, m)
		}
	})
}
