package viz

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/node/viz/viztest"
)

// The real-demo browser test runs "p2pnode demo" (the real binary: an
// authority and workers as separate processes on loopback, an in-process
// client, the ledger) and checks the page against what those logs and the
// demo's own summary say.

var demoBinary = sync.OnceValues(func() (string, error) {
	if p := os.Getenv("P2PNODE_BIN"); p != "" {
		return p, nil
	}
	dir, err := os.MkdirTemp("", "p2pnode-viz-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "p2pnode")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/p2pjobs/p2pnode/cmd/p2pnode").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// realDemo is a finished demo: its logs, its peers by role and the balances
// it printed.
type realDemo struct {
	Logs      string
	Out       string
	Authority string
	Client    string
	Workers   []string         // worker-1, worker-2, ...
	Balances  map[string]int64 // peer ID -> balance in the demo's points table
}

func runRealDemo(t *testing.T, workers int, args ...string) realDemo {
	t.Helper()
	bin, err := demoBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args = append([]string{"demo", "--dir", dir, "--workers", strconv.Itoa(workers)}, args...)
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("p2pnode %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	t.Logf("demo ran in %v", time.Since(t0).Round(time.Millisecond))
	d := realDemo{Logs: filepath.Join(dir, "logs"), Out: out.String(), Balances: map[string]int64{}}
	owner := func(name string) string {
		t.Helper()
		f, err := os.Open(filepath.Join(d.Logs, name+".jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var id string
		if _, err := events.Decode(f, func(e events.Event) error { id = e.Node; return nil }); err != nil || id == "" {
			t.Fatalf("%s.jsonl: no events (%v)", name, err)
		}
		return id
	}
	d.Authority, d.Client = owner("authority"), owner("client")
	for i := range workers {
		d.Workers = append(d.Workers, owner(fmt.Sprintf("worker-%d", i+1)))
	}
	// The points table: "  …4XCTR2SS  client  1000  74  0  926".
	ids := append([]string{d.Authority, d.Client}, d.Workers...)
	sc := bufio.NewScanner(strings.NewReader(d.Out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 6 || !strings.HasPrefix(f[0], "…") {
			continue
		}
		bal, err := strconv.ParseInt(f[5], 10, 64)
		if err != nil {
			continue
		}
		for _, id := range ids {
			if strings.HasSuffix(id, strings.TrimPrefix(f[0], "…")) {
				d.Balances[id] = bal
			}
		}
	}
	if len(d.Balances) != workers+1 {
		t.Fatalf("points table: %d balances of %d accounts in\n%s", len(d.Balances), workers+1, d.Out)
	}
	return d
}

// neighbourLinks computes the overlay links after the first n records from
// the raw neighbours events (each node's latest set; a stopped node has
// none), independently of State.
func neighbourLinks(recs []Record) map[[2]string]bool {
	sets := map[string][]string{}
	for _, r := range recs {
		switch r.Kind {
		case events.Neighbours:
			sets[r.Node] = stringList(r.Attrs["peers"])
		case events.Stopped:
			delete(sets, r.Node)
		}
	}
	out := map[[2]string]bool{}
	for a, ps := range sets {
		for _, b := range ps {
			out[[2]string{min(a, b), max(a, b)}] = true
		}
	}
	return out
}

func linkSet(ls []Link, kind string) map[[2]string]bool {
	out := map[[2]string]bool{}
	for _, l := range ls {
		if l.Kind == kind {
			out[[2]string{min(l.A, l.B), max(l.A, l.B)}] = true
		}
	}
	return out
}

func TestBrowserRealDemo(t *testing.T) {
	ctx := viztest.Browser(t)
	const workers = 4
	d := runRealDemo(t, workers, "--jobs", "8", "--samples", "100000", "--stagger", "200ms")
	x, _ := load(t, d.Logs)
	t0 := x.Start()
	at := func(tm time.Time) float64 { return ms(tm.Sub(t0)) }
	first := func(node string, kind events.Kind) Record {
		for _, r := range x.Records {
			if r.Node == node && r.Kind == kind {
				return r
			}
		}
		t.Fatalf("no %s event from %s", kind, node)
		return Record{}
	}

	sctx, stop := context.WithCancel(context.Background())
	srv, err := StartOptions(sctx, Options{Sources: []string{d.Logs}, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		stop()
		if err := srv.Wait(); err != nil {
			t.Errorf("server: %v", err)
		}
	}()
	run(t, ctx, chromedp.Navigate(srv.URL()))
	s := state(t, ctx, fmt.Sprintf(`s.loaded && s.total === %d`, len(x.Records)))

	// Every node, by role, named after its log.
	roles := map[string]string{d.Authority: "authority", d.Client: "client"}
	names := map[string]string{d.Authority: "authority", d.Client: "client"}
	for i, w := range d.Workers {
		roles[w], names[w] = "worker", fmt.Sprintf("worker-%d", i+1)
	}
	if len(s.Nodes) != len(roles) {
		t.Fatalf("%d nodes at the end, want %d: %+v", len(s.Nodes), len(roles), s.Nodes)
	}
	for _, n := range s.Nodes {
		if roles[n.ID] != n.Role || names[n.ID] != n.Name {
			t.Errorf("node %s: role %q name %q, want %q %q", n.ID, n.Role, n.Name, roles[n.ID], names[n.ID])
		}
	}

	// Formation: each worker appears at the first event that mentions it,
	// not before; the node count grows one by one.
	for i, w := range d.Workers {
		k, _ := x.NodeIndex(w)
		appear := x.Nodes[k].First
		prev, ok := x.Prev(appear)
		if !ok {
			t.Fatalf("worker %d appears with the first event", i+1)
		}
		before, after := seek(t, ctx, at(prev)), seek(t, ctx, at(appear))
		if _, _, ok := before.node(w); ok {
			t.Errorf("worker %d drawn at %v, before it appears at %v", i+1, at(prev), at(appear))
		}
		if _, _, ok := after.node(w); !ok || len(after.Nodes) != len(before.Nodes)+1 {
			t.Errorf("worker %d: %d nodes before it appears, %d after (drawn: %v)", i+1, len(before.Nodes), len(after.Nodes), ok)
		}
	}

	// When the series is done: the client's and the authority's
	// connections to every worker, and the overlay among the workers.
	done := first(d.Client, events.SeriesDone)
	n := x.Count(done.At)
	run(t, ctx, chromedp.Click(chromedp.CSS("#view-traffic")))
	s = seek(t, ctx, at(done.At))
	want := linkSet(x.StateAt(n).Links("traffic"), "direct")
	if got := linkSet(s.Links, "direct"); !mapsEqual(got, want) {
		t.Errorf("traffic links at series_done: page %v, logs %v", got, want)
	}
	for _, w := range d.Workers {
		if !hasLinkTo(s.Links, d.Client, w, "direct") || !hasLinkTo(s.Links, d.Authority, w, "direct") {
			t.Errorf("traffic view misses client or authority – %s: %+v", w, s.Links)
		}
	}
	run(t, ctx, chromedp.Click(chromedp.CSS("#view-network")))
	s = state(t, ctx, `s.view === "network"`)
	overlay := neighbourLinks(x.Records[:n])
	if len(overlay) == 0 {
		t.Fatalf("no overlay neighbours logged before the series ended")
	}
	if got := linkSet(s.Links, "overlay"); !mapsEqual(got, overlay) || len(s.Links) != len(overlay) {
		t.Errorf("network links at series_done: page %+v, neighbours events %v", s.Links, overlay)
	}
	for l := range overlay {
		if roles[l[0]] != "worker" || roles[l[1]] != "worker" {
			t.Errorf("overlay link %v is not between workers", l)
		}
	}

	// A job request is an arrow from the client to its worker, labelled.
	run(t, ctx, chromedp.Click(chromedp.CSS("#view-traffic")))
	for _, r := range x.Records {
		if r.Node == d.Client && r.Kind == events.MsgSent && strings.Contains(r.Proto, "/job/") {
			s = seek(t, ctx, at(r.At))
			if !slices.ContainsFunc(s.Arrows, func(a struct{ From, To, Proto string }) bool {
				return a.From == d.Client && a.To == r.Peer && a.Proto == "job"
			}) {
				t.Errorf("no job arrow client → %s at %v: %+v", r.Peer, at(r.At), s.Arrows)
			}
			break
		}
	}

	// Points flow: escrow locked by the client, paid by the authority.
	var lock Record
	for _, r := range x.Records {
		if r.Node == d.Client && r.Kind == events.LedgerBlock && r.Attrs["kind"] == "escrow_lock" {
			lock = r
			break
		}
	}
	if lock.Node == "" {
		t.Fatal("the client locked no escrow")
	}
	s = seek(t, ctx, at(lock.At))
	if !slices.ContainsFunc(s.Transfers, func(x struct {
		From, To, Note string
		Amount         float64
	}) bool {
		return x.From == d.Client && x.To == d.Authority && x.Note == "locked" && x.Amount == lock.Attrs["amount"]
	}) {
		t.Errorf("escrow lock %v not drawn client → authority: %+v", lock.Attrs, s.Transfers)
	}
	for _, r := range x.Records {
		if r.Node == d.Authority && r.Kind == events.LedgerBlock && r.Attrs["kind"] == "escrow_release" {
			s = seek(t, ctx, at(r.At))
			if !slices.ContainsFunc(s.Transfers, func(x struct {
				From, To, Note string
				Amount         float64
			}) bool {
				return x.From == d.Authority && x.To == r.Attrs["counterparty"] && x.Note == "paid"
			}) {
				t.Errorf("escrow release %v not drawn: %+v", r.Attrs, s.Transfers)
			}
			break
		}
	}
	// A frame for the screenshot: mid-series, the client selected.
	run(t, ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`viz.select(%q)`, d.Client)))
	seek(t, ctx, at(lock.At)+400)
	screenshot(t, ctx, "-real-traffic")

	// At the end, click each node: the panel shows its peer ID, role and
	// the balance the demo printed (the authority's from its own chain:
	// minted, then granted away).
	run(t, ctx, chromedp.Evaluate[chromedp.Void](`viz.select("")`))
	s = seek(t, ctx, s.End)
	for _, id := range append([]string{d.Client, d.Authority}, d.Workers...) {
		px, py, ok := s.node(id)
		if !ok {
			t.Fatalf("%s not drawn at the end", id)
		}
		run(t, ctx, chromedp.MouseClickXY(px, py))
		state(t, ctx, fmt.Sprintf(`s.selected === %q`, id))
		if got := run(t, ctx, chromedp.Text(chromedp.CSS("#panel-id"))); got != id {
			t.Errorf("panel shows %q, clicked %s", got, id)
		}
		if got := run(t, ctx, chromedp.Evaluate[string](`document.getElementById("panel-role").textContent`)); got != roles[id] {
			t.Errorf("panel role %q for %s, want %s", got, id, roles[id])
		}
		want, ok := d.Balances[id]
		if id == d.Authority {
			want, ok = x.StateAt(len(x.Records)).Balance[id], true
		}
		if got := run(t, ctx, chromedp.Text(chromedp.CSS("#panel-balance"))); !ok || got != fmt.Sprintf("%d pts", want) {
			t.Errorf("balance of %s %s: panel %q, demo printed %d", roles[id], id, got, want)
		}
		run(t, ctx, chromedp.MouseClickXY(px, py)) // unselect
		state(t, ctx, `s.selected === ""`)
	}

	// The errors counter agrees with the logs.
	wantErr := fmt.Sprintf("%d errors", len(x.Errors))
	if len(x.Errors) == 1 {
		wantErr = "1 error"
	}
	if got := run(t, ctx, chromedp.Text(chromedp.CSS("#errors"))); got != wantErr || s.ErrorsTotal != len(x.Errors) {
		t.Errorf("errors button %q (%d), logs have %d", got, s.ErrorsTotal, len(x.Errors))
	}

	run(t, ctx, chromedp.Click(chromedp.CSS("#view-network")))
	run(t, ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`viz.select(%q)`, d.Workers[0])))
	seek(t, ctx, at(done.At))
	screenshot(t, ctx, "-real-network")
}

func mapsEqual[K comparable](a, b map[K]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// TestBrowserLiveDemo runs "p2pnode demo --viz" and watches its page while
// the network forms: the workers appear one by one without a reload, and
// the series' events stream in.
func TestBrowserLiveDemo(t *testing.T) {
	ctx := viztest.Browser(t)
	bin, err := demoBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const workers = 4
	cmd := exec.Command(bin, "demo", "--viz", "--dir", dir, "--workers", strconv.Itoa(workers),
		"--stagger", "500ms", "--jobs", "20", "--samples", "100000")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer // written by exec's copier while a failure reads it
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("demo after Ctrl-C: %v\n%s", err, stderr.String())
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("demo still running 20s after Ctrl-C")
		}
	}()
	// waitLine returns the first line of the demo's output with prefix.
	var out strings.Builder
	waitLine := func(prefix string, d time.Duration) string {
		t.Helper()
		deadline := time.After(d)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("demo ended before %q:\n%s%s", prefix, out.String(), stderr.String())
				}
				out.WriteString(l + "\n")
				if strings.HasPrefix(strings.TrimSpace(l), prefix) {
					return l
				}
			case <-deadline:
				t.Fatalf("no %q from the demo after %v:\n%s%s", prefix, d, out.String(), stderr.String())
			}
		}
	}
	url := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(waitLine("visualiser:", 30*time.Second)), "visualiser:"))
	run(t, ctx, chromedp.Navigate(url))
	run(t, ctx, chromedp.Evaluate[chromedp.Void](`window.sameLoad = true`))
	// Node counts the page shows as the demo starts its processes: they
	// only grow, and the page saw the network before it was complete.
	s := state(t, ctx, `s.loaded && s.live`)
	seen := []int{len(s.Nodes)}
	for len(s.Nodes) < workers+2 {
		s = state(t, ctx, fmt.Sprintf(`s.nodes.length !== %d`, len(s.Nodes)))
		if len(s.Nodes) < seen[len(seen)-1] {
			t.Fatalf("node count went down: %v then %d", seen, len(s.Nodes))
		}
		seen = append(seen, len(s.Nodes))
	}
	if seen[0] >= workers+2 || len(seen) < 3 {
		t.Errorf("the page did not watch the network form: node counts %v", seen)
	}
	t.Logf("node counts seen live: %v", seen)
	// The series runs to its end on the page, still the same load.
	waitLine("the network keeps running", 60*time.Second)
	s = state(t, ctx, `s.total > 0 && window.sameLoad && s.time === s.end`)
	if !s.Live {
		t.Error("the page lost the stream")
	}
	x, _ := load(t, filepath.Join(dir, "logs"))
	done := false
	for _, r := range x.Records {
		done = done || r.Kind == events.SeriesDone
	}
	if !done {
		t.Fatal("no series_done in the logs after the demo's summary")
	}
	state(t, ctx, fmt.Sprintf(`s.total >= %d`, len(x.Records)))
	screenshot(t, ctx, "-live")
}

// lockedBuffer is a bytes.Buffer safe for one writer and readers at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
