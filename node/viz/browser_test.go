package viz

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/node/viz/internal/loggen"
	"github.com/p2pjobs/p2pnode/node/viz/viztest"
)

// pageState mirrors window.vizState.
type pageState struct {
	Time        float64 `json:"time"`
	End         float64 `json:"end"`
	Count       int     `json:"count"`
	Total       int     `json:"total"`
	View        string  `json:"view"`
	Live        bool    `json:"live"`
	Loaded      bool    `json:"loaded"`
	Selected    string  `json:"selected"`
	Errors      int     `json:"errors"`
	ErrorsTotal int     `json:"errorsTotal"`
	Nodes       []struct {
		ID, Role, Name string
		X, Y           float64
		Stopped        bool
	} `json:"nodes"`
	Links     []Link                             `json:"links"`
	Arrows    []struct{ From, To, Proto string } `json:"arrows"`
	Transfers []struct {
		From, To, Note string
		Amount         float64
	} `json:"transfers"`
	Flashes []string `json:"flashes"`
}

func (s pageState) node(id string) (x, y float64, ok bool) {
	for _, n := range s.Nodes {
		if n.ID == id {
			return n.X, n.Y, true
		}
	}
	return 0, 0, false
}

func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// state waits until the page has drawn a frame satisfying cond (a JS
// expression over s = window.vizState) and returns that state.
func state(t *testing.T, ctx context.Context, cond string) pageState {
	t.Helper()
	raw := run(t, ctx, chromedp.Poll[[]byte](
		fmt.Sprintf(`(() => { const s = window.vizState; return s && (%s) ? JSON.stringify(s) : false })()`, cond),
		chromedp.WithPollingTimeout(15*time.Second)))
	var js string
	if err := json.Unmarshal(raw, &js); err != nil {
		t.Fatalf("state: %v (%s)", err, raw)
	}
	var s pageState
	if err := json.Unmarshal([]byte(js), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// seek moves the page to ms after the first event and waits for the frame.
func seek(t *testing.T, ctx context.Context, ms float64) pageState {
	t.Helper()
	run(t, ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`viz.seek(%v)`, ms)))
	return state(t, ctx, fmt.Sprintf(`s.time === %v`, ms))
}

// screenshot saves the page as name in a temporary directory, or, when
// VIZ_SCREENSHOT is set, at that path (with the suffix name inserted before
// ".png" when suffix is not empty).
func screenshot(t *testing.T, ctx context.Context, suffix string) {
	t.Helper()
	png := run(t, ctx, chromedp.CaptureScreenshot())
	p := filepath.Join(t.TempDir(), "viz"+suffix+".png")
	if env := os.Getenv("VIZ_SCREENSHOT"); env != "" {
		p = strings.TrimSuffix(env, ".png") + suffix + ".png"
	}
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

// hasLinkTo tells whether the page draws a link, in either direction.
func hasLinkTo(ls []Link, a, b, kind string) bool {
	for _, l := range ls {
		if (l.A == a && l.B == b || l.A == b && l.B == a) && l.Kind == kind {
			return true
		}
	}
	return false
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func TestBrowserDemo(t *testing.T) {
	ctx := viztest.Browser(t)
	d, err := loggen.WriteDemo(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	srv, err := StartOptions(sctx, Options{Sources: []string{d.Dir}, Poll: 50 * time.Millisecond})
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
	s := state(t, ctx, `s.loaded && s.total > 0`)
	if len(s.Nodes) != 7 || s.Time != ms(d.End) || s.ErrorsTotal != d.Errors {
		t.Fatalf("loaded: %d nodes, time %v, %d errors", len(s.Nodes), s.Time, s.ErrorsTotal)
	}

	// Frame 0: only the authority has started.
	s = seek(t, ctx, 0)
	if len(s.Nodes) != 1 || s.Nodes[0].ID != d.Authority || s.Nodes[0].Role != "authority" || len(s.Links) != 0 {
		t.Fatalf("frame 0: %+v", s)
	}
	// Every node up: the overlay links authority–workers and worker chain.
	s = seek(t, ctx, ms(d.AllUp))
	if len(s.Nodes) != 7 || !hasLinkTo(s.Links, d.Authority, d.Workers[4], "overlay") ||
		!hasLinkTo(s.Links, d.Workers[3], d.Workers[4], "overlay") {
		t.Fatalf("all up, network view: %d nodes, links %+v", len(s.Nodes), s.Links)
	}
	// Step forward with the > button: the next event time.
	run(t, ctx, chromedp.Click(chromedp.CSS("#next")))
	x, _ := load(t, d.Dir)
	next, _ := x.Next(loggen.Epoch.Add(d.AllUp))
	s = state(t, ctx, fmt.Sprintf(`s.time === %v`, ms(next.Sub(loggen.Epoch))))
	run(t, ctx, chromedp.Click(chromedp.CSS("#prev")))
	s = state(t, ctx, fmt.Sprintf(`s.time === %v`, ms(d.AllUp)))

	// Traffic view once jobs are awarded: direct and relayed connections.
	run(t, ctx, chromedp.Click(chromedp.CSS("#view-traffic")))
	s = seek(t, ctx, ms(d.Awarded))
	if s.View != "traffic" || !hasLinkTo(s.Links, d.Client, d.Workers[4], "relayed") ||
		!hasLinkTo(s.Links, d.Client, d.Workers[0], "direct") || !hasLinkTo(s.Links, d.Authority, d.Workers[0], "direct") {
		t.Fatalf("traffic links %+v", s.Links)
	}
	// The bid replies are arrows just before the award.
	s = seek(t, ctx, ms(d.Awarded)-100)
	if len(s.Arrows) == 0 || s.Arrows[len(s.Arrows)-1].Proto != "bid" {
		t.Fatalf("arrows %+v", s.Arrows)
	}

	// Click worker 1 at the end: the panel shows its peer ID and balance.
	s = seek(t, ctx, ms(d.End))
	wx, wy, ok := s.node(d.Workers[0])
	if !ok {
		t.Fatal("worker 1 not drawn")
	}
	run(t, ctx, chromedp.MouseClickXY(wx, wy))
	s = state(t, ctx, fmt.Sprintf(`s.selected === %q`, d.Workers[0]))
	if id := run(t, ctx, chromedp.Text(chromedp.CSS("#panel-id"))); id != d.Workers[0] {
		t.Fatalf("panel shows %q", id)
	}
	if b := run(t, ctx, chromedp.Text(chromedp.CSS("#panel-balance"))); b != "20 pts" {
		t.Fatalf("balance %q", b)
	}
	if j := run(t, ctx, chromedp.Text(chromedp.CSS("#panel-jobs"))); j != "2 started · 2 finished · 0 failed" {
		t.Fatalf("jobs %q", j)
	}
	// Earlier, the balance was what it was then.
	seek(t, ctx, ms(d.Awarded))
	if b := run(t, ctx, chromedp.Text(chromedp.CSS("#panel-balance"))); b != "—" {
		t.Fatalf("balance before any payment %q", b)
	}

	// Drag worker 1 somewhere else; "new layout" moves the nodes again.
	s = state(t, ctx, `true`)
	wx, wy, _ = s.node(d.Workers[0])
	run(t, ctx, chromedp.MouseEvent(chromedp.MousePressed, wx, wy, chromedp.ButtonLeft))
	run(t, ctx, chromedp.MouseEvent(chromedp.MouseMoved, wx+40, wy+30, chromedp.ButtonLeft))
	run(t, ctx, chromedp.MouseEvent(chromedp.MouseMoved, wx+80, wy+60, chromedp.ButtonLeft))
	run(t, ctx, chromedp.MouseEvent(chromedp.MouseReleased, wx+80, wy+60, chromedp.ButtonLeft))
	s = state(t, ctx, fmt.Sprintf(`s.nodes.some(n => n.id === %q && Math.abs(n.x - %v) < 2)`, d.Workers[0], wx+80))
	run(t, ctx, chromedp.Click(chromedp.CSS("#layout")))
	state(t, ctx, fmt.Sprintf(`!s.nodes.some(n => n.id === %q && Math.abs(n.x - %v) < 2)`, d.Workers[0], wx+80))

	// Play from the start at 20x: time advances, then pause.
	seek(t, ctx, 0)
	run(t, ctx, chromedp.SetValue(chromedp.CSS("#speed"), "20"))
	run(t, ctx, chromedp.Evaluate[chromedp.Void](`document.getElementById("speed").dispatchEvent(new Event("change"))`))
	run(t, ctx, chromedp.Click(chromedp.CSS("#play")))
	s = state(t, ctx, `s.playing && s.time > 500`)
	run(t, ctx, chromedp.Click(chromedp.CSS("#play")))
	s = state(t, ctx, `!s.playing`)

	// The errors list, at the award: one error so far of three.
	seek(t, ctx, ms(d.Awarded))
	run(t, ctx, chromedp.Click(chromedp.CSS("#errors")))
	run(t, ctx, chromedp.WaitVisible(chromedp.CSS("#errlist")))
	n := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#errlist-items li[data-i]").length`))
	if n != d.Errors {
		t.Fatalf("errors list has %d items, want %d", n, d.Errors)
	}
	if txt := run(t, ctx, chromedp.Text(chromedp.CSS("#errors"))); txt != "1 of 3 errors" {
		t.Fatalf("errors button %q", txt)
	}
	run(t, ctx, chromedp.Click(chromedp.CSS("#errlist-close")))

	// A frame for the screenshot: the traffic view as the first jobs go
	// out, the client selected.
	run(t, ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`viz.select(%q)`, d.Client)))
	s = seek(t, ctx, ms(d.Awarded)+300)
	locked := 0
	for _, x := range s.Transfers {
		if x.From == d.Client && x.Amount == 20 && x.Note == "locked" {
			locked++
		}
	}
	if locked != 4 {
		t.Fatalf("transfers %+v", s.Transfers)
	}
	screenshot(t, ctx, "")
	run(t, ctx, chromedp.Click(chromedp.CSS("#view-network")))
	run(t, ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`viz.select(%q)`, d.Authority)))
	s = seek(t, ctx, ms(d.AllUp-700*time.Millisecond))
	if len(s.Flashes) == 0 {
		t.Fatalf("no neighbour-change ring at %v", d.AllUp-700*time.Millisecond)
	}
	screenshot(t, ctx, "-network")
	run(t, ctx, chromedp.Click(chromedp.CSS("#view-traffic")))
	run(t, ctx, chromedp.Evaluate[chromedp.Void](`viz.select("")`))

	// Live: the page follows the end again, a node sends a message and a
	// new worker appears.
	s = seek(t, ctx, ms(d.End))
	if !s.Live {
		t.Fatal("stream not connected")
	}
	later := d.End + 500*time.Millisecond
	if err := loggen.Append(d.Files[d.Client], d.Client, "client", later,
		events.Event{Kind: events.Connected, Peer: d.Authority, Conn: "relayed"},
		events.Event{Kind: events.MsgSent, Peer: d.Authority, Proto: loggen.ProtoDiscover, Size: 99, Err: "stream reset"}); err != nil {
		t.Fatal(err)
	}
	np := filepath.Join(d.Dir, "worker-6.jsonl")
	if err := os.WriteFile(np, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := loggen.Append(np, "12D3KooWNewWorker", "worker", later, events.Event{Kind: events.Started}); err != nil {
		t.Fatal(err)
	}
	s = state(t, ctx, fmt.Sprintf(`s.total === %d && s.time === %v`, s.Total+3, ms(later)))
	if _, _, ok := s.node("12D3KooWNewWorker"); !ok || len(s.Arrows) == 0 || s.ErrorsTotal != d.Errors+1 {
		t.Fatalf("live: %d nodes, arrows %+v, errors %d", len(s.Nodes), s.Arrows, s.ErrorsTotal)
	}

}

func TestBrowserScale(t *testing.T) {
	if testing.Short() {
		t.Skip("scale test")
	}
	ctx := viztest.Browser(t)
	dir := t.TempDir()
	t0 := time.Now()
	nodes, total := 200, 100_000
	if raceEnabled {
		total = 25_000
		t.Logf("race detector on: %d events instead of 100,000", total)
	}
	if err := loggen.WriteScale(dir, nodes, total, 2*time.Minute, 1); err != nil {
		t.Fatal(err)
	}
	gen := time.Since(t0)
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	t1 := time.Now()
	srv, err := Start(sctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	index := time.Since(t1)

	t2 := time.Now()
	run(t, ctx, chromedp.Navigate(srv.URL()))
	s := state(t, ctx, fmt.Sprintf(`s.loaded && s.total === %d`, total))
	loadT := time.Since(t2)
	if len(s.Nodes) != nodes {
		t.Fatalf("%d nodes", len(s.Nodes))
	}
	run(t, ctx, chromedp.Click(chromedp.CSS("#view-traffic")))

	// Jump to the start, the middle and the end, and step: each answers
	// within a frame or two.
	var worst time.Duration
	for _, at := range []float64{0, s.End / 2, s.End, 1000, s.End - 1} {
		t3 := time.Now()
		seek(t, ctx, at)
		worst = max(worst, time.Since(t3))
	}
	t4 := time.Now()
	for range 20 {
		run(t, ctx, chromedp.Click(chromedp.CSS("#next")))
	}
	state(t, ctx, `s.count > 0`)
	steps := time.Since(t4) / 20
	// In the page: a jump to the end and back to the start, each with its
	// full redraw, as the slider does it.
	renderMS := run(t, ctx, chromedp.Evaluate[float64](`(() => {
		const t = performance.now();
		viz.seek(vizState.end); viz.render(); viz.seek(0); viz.render();
		return (performance.now() - t) / 2 })()`))
	t.Logf("scale: %d nodes, %d events: generate %v, server index %v, page load %v, worst seek %v, step %v (round trips from Go); in page: jump and redraw %.1f ms",
		nodes, total, gen.Round(time.Millisecond), index.Round(time.Millisecond), loadT.Round(time.Millisecond),
		worst.Round(time.Millisecond), steps.Round(time.Millisecond), renderMS)
	if loadT > 10*time.Second || worst > 2*time.Second {
		t.Fatalf("too slow: load %v, seek %v", loadT, worst)
	}
	if os.Getenv("VIZ_SCREENSHOT_SCALE") != "" {
		png := run(t, ctx, chromedp.CaptureScreenshot())
		os.WriteFile(os.Getenv("VIZ_SCREENSHOT_SCALE"), png, 0o644)
	}
}
