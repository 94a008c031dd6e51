package schedule

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.txt with the actual output")

// TestScenarios runs the scripts in testdata/*.txt in the style of etcd
// raft's interaction tests: each block is a command, a "----" line and the
// expected output, blocks separated by a blank line. Run with -rewrite to
// regenerate the expectations, then review the diff.
//
// Commands:
//
//	new n=<jobs> attempts=<max> [alloc=<w>:<k>,...]
//	next <worker>                 -> "job <id>" or "none"
//	done <job>
//	fail <job> <worker> retry|final [reason]
//	gone <worker>
//	stalled [<w>,...]             -> true|false
//	failpending [reason]
//	stats                         -> counts and failures
func TestScenarios(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scenarios")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScenario(t, f) })
	}
}

func runScenario(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var s *Scheduler
	var out strings.Builder
	blocks := strings.Split(strings.TrimSpace(string(data)), "\n\n")
	for _, b := range blocks {
		cmd, want, _ := strings.Cut(b, "\n----\n")
		cmd = strings.TrimSuffix(cmd, "\n----")
		got := runCommand(t, &s, strings.TrimSpace(cmd))
		if !*rewrite && strings.TrimSpace(want) != strings.TrimSpace(got) {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", file, cmd, got, want)
		}
		fmt.Fprintf(&out, "%s\n----\n%s\n\n", strings.TrimSpace(cmd), strings.TrimSpace(got))
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(strings.TrimSuffix(out.String(), "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func runCommand(t *testing.T, sp **Scheduler, line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return "ok"
	}
	atoi := func(s string) int {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		return n
	}
	rest := func(i int, def string) string {
		if len(f) > i {
			return strings.Join(f[i:], " ")
		}
		return def
	}
	s := *sp
	switch f[0] {
	case "new":
		n, attempts := 0, 1
		alloc := map[string]int{}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "n":
				n = atoi(v)
			case "attempts":
				attempts = atoi(v)
			case "alloc":
				for _, a := range strings.Split(v, ",") {
					w, c, _ := strings.Cut(a, ":")
					alloc[w] = atoi(c)
				}
			}
		}
		*sp = NewScheduler(n, alloc, attempts)
		return "ok"
	case "next":
		if j, ok := s.Next(f[1]); ok {
			return fmt.Sprintf("job %d", j)
		}
		return "none"
	case "done":
		s.Done(atoi(f[1]))
		return "ok"
	case "fail":
		s.Failed(atoi(f[1]), f[2], errors.New(rest(4, "error")), f[3] == "retry")
		return "ok"
	case "gone":
		s.WorkerGone(f[1])
		return "ok"
	case "stalled":
		var ws []string
		if len(f) > 1 {
			ws = strings.Split(f[1], ",")
		}
		return strconv.FormatBool(s.Stalled(ws))
	case "failpending":
		s.FailPending(errors.New(rest(1, "given up")))
		return "ok"
	case "stats":
		st := s.Stats()
		res := fmt.Sprintf("done=%d failed=%d inflight=%d pending=%d finished=%v", st.Done, st.Failed, st.InFlight, st.Pending, s.Finished())
		fails := s.Failures()
		ids := make([]int, 0, len(fails))
		for id := range fails {
			ids = append(ids, id)
		}
		sort.Ints(ids)
		for _, id := range ids {
			res += fmt.Sprintf("\nfailed %d: %v", id, fails[id])
		}
		return res
	}
	t.Fatalf("unknown command %q", line)
	return ""
}
