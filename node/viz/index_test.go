package viz

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/node/viz/internal/loggen"
)

func load(t *testing.T, paths ...string) (*Index, *Tail) {
	t.Helper()
	tl, err := NewTail(paths...)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := tl.Poll()
	if err != nil {
		t.Fatal(err)
	}
	x := NewIndex()
	x.Add(recs)
	return x, tl
}

func demo(t *testing.T) (*loggen.Demo, *Index) {
	t.Helper()
	d, err := loggen.WriteDemo(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	x, _ := load(t, d.Dir)
	return d, x
}

func TestTailSkipsBadLinesAndKeepsPartialOnes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "n.jsonl")
	line := `{"v":1,"t":"2026-03-14T15:09:26Z","node":"A","role":"worker","kind":"started"}`
	if err := os.WriteFile(p, []byte(line+"\nnot json\n{\"v\":1}\n"+line[:20]), 0o644); err != nil {
		t.Fatal(err)
	}
	tl, err := NewTail(p)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := tl.Poll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || tl.Skipped() != 2 {
		t.Fatalf("got %d records, %d skipped; want 1, 2", len(recs), tl.Skipped())
	}
	// The writer finishes the partial line and adds another.
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(line[20:] + "\n" + strings.Replace(line, "started", "stopped", 1) + "\n")
	f.Close()
	recs, _ = tl.Poll()
	if len(recs) != 2 || recs[0].Kind != "started" || recs[1].Kind != "stopped" || tl.Skipped() != 2 {
		t.Fatalf("after append: %+v, skipped %d", recs, tl.Skipped())
	}
	if recs, _ := tl.Poll(); len(recs) != 0 {
		t.Fatalf("nothing appended, got %d", len(recs))
	}
}

func TestTailFollowsNewFilesAndAppends(t *testing.T) {
	d, err := loggen.WriteDemo(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	x, tl := load(t, d.Dir)
	n := len(x.Records)
	if len(tl.Files()) != 7 {
		t.Fatalf("files %v", tl.Files())
	}
	// A node appends an event; a new node appears with its own file.
	if err := loggen.Append(d.Files[d.Client], d.Client, "client", d.End+time.Second,
		events.Event{Kind: events.MsgSent, Peer: d.Authority, Proto: loggen.ProtoDiscover, Size: 10}); err != nil {
		t.Fatal(err)
	}
	np := filepath.Join(d.Dir, "worker-9.jsonl")
	os.WriteFile(np, nil, 0o644)
	if err := loggen.Append(np, "NEW", "worker", d.End+2*time.Second, events.Event{Kind: events.Started}); err != nil {
		t.Fatal(err)
	}
	recs, err := tl.Poll()
	if err != nil {
		t.Fatal(err)
	}
	x.Add(recs)
	if len(x.Records) != n+2 {
		t.Fatalf("records %d, want %d", len(x.Records), n+2)
	}
	if last := x.Records[len(x.Records)-1]; last.Node != "NEW" || last.File != np {
		t.Fatalf("last record %+v", last)
	}
	if i, ok := x.NodeIndex("NEW"); !ok || x.Nodes[i].Role != "worker" {
		t.Fatalf("new node not indexed")
	}
}

func TestNewTailMissingSource(t *testing.T) {
	if _, err := NewTail(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("no error for a missing source")
	}
}

func TestMergeOrdersByTimeAndClampsLateRecords(t *testing.T) {
	at := func(ms int) time.Time { return loggen.Epoch.Add(time.Duration(ms) * time.Millisecond) }
	rec := func(node string, ms int) Record {
		return Record{Event: events.Event{Node: node, Kind: "started", Time: at(ms)}, At: at(ms)}
	}
	x := NewIndex()
	x.Add([]Record{rec("A", 30), rec("A", 50), rec("B", 10), rec("B", 40)})
	var got []string
	for _, r := range x.Records {
		got = append(got, r.Node+r.At.Format(".000"))
	}
	if strings.Join(got, " ") != "B.010 A.030 B.040 A.050" {
		t.Fatalf("order %v", got)
	}
	// A late batch: a record older than the last one goes after it.
	x.Add([]Record{rec("C", 20), rec("C", 60)})
	if r := x.Records[4]; r.Node != "C" || !r.At.Equal(at(50)) || !r.Time.Equal(at(20)) {
		t.Fatalf("late record %+v", r)
	}
	for i := 1; i < len(x.Records); i++ {
		if x.Records[i].At.Before(x.Records[i-1].At) {
			t.Fatalf("out of order at %d", i)
		}
	}
}

func TestIndexNodesAndErrors(t *testing.T) {
	d, x := demo(t)
	if len(x.Nodes) != 7 {
		t.Fatalf("%d nodes", len(x.Nodes))
	}
	i, _ := x.NodeIndex(d.Authority)
	a := x.Nodes[i]
	if a.Role != "authority" || !a.Logs || len(a.Addrs) != 2 || !a.First.Equal(loggen.Epoch) {
		t.Fatalf("authority %+v", a)
	}
	if len(x.Errors) != d.Errors {
		t.Fatalf("errors %d, want %d", len(x.Errors), d.Errors)
	}
	if got := x.Records[x.Errors[0]]; got.Kind != events.Error {
		t.Fatalf("first error %+v", got)
	}
	if !x.End().Equal(loggen.Epoch.Add(d.End)) {
		t.Fatalf("end %v", x.End())
	}
}

func TestTimeStepping(t *testing.T) {
	d, x := demo(t)
	start := x.Start()
	if _, ok := x.Prev(start); ok {
		t.Fatal("prev before the first event")
	}
	n, ok := x.Next(start)
	if !ok || !n.Equal(start.Add(400*time.Millisecond)) {
		t.Fatalf("next after start: %v", n.Sub(start))
	}
	p, ok := x.Prev(n)
	if !ok || !p.Equal(start) {
		t.Fatalf("prev: %v", p.Sub(start))
	}
	// Between events, prev and next bracket the moment.
	mid := start.Add(410 * time.Millisecond)
	if p, _ := x.Prev(mid); !p.Equal(n) {
		t.Fatalf("prev(mid) %v", p.Sub(start))
	}
	if nx, _ := x.Next(mid); !nx.Equal(start.Add(420 * time.Millisecond)) {
		t.Fatalf("next(mid) %v", nx.Sub(start))
	}
	if _, ok := x.Next(start.Add(d.End)); ok {
		t.Fatal("next after the end")
	}
	// Walking forward visits every distinct time once.
	steps, cur := 0, start
	for {
		nx, ok := x.Next(cur)
		if !ok {
			break
		}
		if !nx.After(cur) {
			t.Fatal("next does not advance")
		}
		cur, steps = nx, steps+1
	}
	distinct := map[time.Time]bool{}
	for _, r := range x.Records {
		distinct[r.At] = true
	}
	if steps != len(distinct)-1 {
		t.Fatalf("%d steps, %d distinct times", steps, len(distinct))
	}
}

func TestStateAtFrames(t *testing.T) {
	d, x := demo(t)
	at := func(ms time.Duration) *State { return x.StateAtTime(loggen.Epoch.Add(ms)) }

	s := at(0)
	if len(s.Seen) != 1 || len(s.Links("traffic")) != 0 {
		t.Fatalf("at 0: seen %v", s.Seen)
	}
	s = at(d.AllUp)
	if len(s.Seen) != 7 {
		t.Fatalf("all up: seen %d", len(s.Seen))
	}
	net := s.Links("network")
	if !hasLink(net, d.Authority, d.Workers[4], "overlay") || !hasLink(net, d.Workers[0], d.Workers[1], "overlay") {
		t.Fatalf("network links %v", net)
	}
	s = at(d.Awarded)
	tr := s.Links("traffic")
	if !hasLink(tr, d.Client, d.Workers[4], "relayed") || !hasLink(tr, d.Client, d.Workers[0], "direct") {
		t.Fatalf("traffic links %v", tr)
	}
	if s.Balance[d.Client] != 920 {
		t.Fatalf("client balance after escrow %d", s.Balance[d.Client])
	}
	s = at(d.End)
	if j := s.Jobs[d.Workers[3]]; j.Started != 2 || j.Finished != 1 || j.Failed != 1 {
		t.Fatalf("worker 4 jobs %+v", j)
	}
	if s.Balance[d.Workers[0]] != 20 || s.Errors != d.Errors || !s.Stopped[d.Workers[2]] {
		t.Fatalf("end: balance %d errors %d stopped %v", s.Balance[d.Workers[0]], s.Errors, s.Stopped)
	}
	if hasLink(s.Links("traffic"), d.Authority, d.Workers[2], "direct") {
		t.Fatal("stopped worker still linked")
	}
}

func TestStateAtUsesCheckpointsConsistently(t *testing.T) {
	dir := t.TempDir()
	if err := loggen.WriteScale(dir, 30, 3*CheckpointEvery+100, 10*time.Second, 3); err != nil {
		t.Fatal(err)
	}
	x, _ := load(t, dir)
	// Replaying from scratch agrees with every checkpoint-based answer.
	s := NewState()
	for i, r := range x.Records {
		if i%997 == 0 || i == CheckpointEvery || i == CheckpointEvery+1 {
			got := x.StateAt(i)
			if got.Applied != s.Applied || got.Errors != s.Errors || len(got.Links("traffic")) != len(s.Links("traffic")) ||
				len(got.Links("network")) != len(s.Links("network")) {
				t.Fatalf("state at %d differs from replay", i)
			}
		}
		s.Apply(r)
	}
	if got := x.StateAt(len(x.Records) + 5); got.Applied != len(x.Records) {
		t.Fatalf("clamp: %d", got.Applied)
	}
}

func hasLink(ls []Link, a, b, kind string) bool {
	if b < a {
		a, b = b, a
	}
	for _, l := range ls {
		if l.A == a && l.B == b && l.Kind == kind {
			return true
		}
	}
	return false
}
