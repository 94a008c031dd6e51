package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/p2pjobs/p2pnode/node/viz/viztest"
)

// liveNode mirrors the parts of node.Live the test reads through the page.
type liveNode struct {
	Loaded bool `json:"loaded"`
	State  struct {
		Relay struct {
			On bool `json:"on"`
		} `json:"relay_service"`
		Workers []struct {
			ID, Conn string
			Slots    uint32
		} `json:"workers"`
		Ledger *struct {
			Minted uint64 `json:"minted"`
		} `json:"ledger"`
		Series []struct {
			Name       string
			Jobs, Done int
			Finished   bool
			JobList    []struct{ Job, Status string } `json:"job_list"`
		} `json:"series"`
	} `json:"state"`
}

// pageNode reads window.vizNode and the text of the node section.
func pageNode(t *testing.T, ctx context.Context) (liveNode, string) {
	t.Helper()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.vizNode || {})`))
	if err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`document.getElementById("nodeview").hidden ? "" : document.getElementById("nodeview").innerText`))
	if err != nil {
		t.Fatal(err)
	}
	var n liveNode
	if err := json.Unmarshal([]byte(raw), &n); err != nil {
		t.Fatalf("window.vizNode = %s: %v", raw, err)
	}
	return n, text
}

// TestLiveView: `--http` serves the visualiser of a running node, fed by
// its own event log, with its live state: on the authority the registered
// worker, the relay service and the ledger; on the client the series it
// runs, with per-job status and params. In headless Chromium, against
// processes of the real binary; the page stays on loopback by default.
func TestLiveView(t *testing.T) {
	ctx := viztest.Browser(t) // skips here, before any process starts, when there is no browser
	dir := t.TempDir()
	auth := daemonIn(t, filepath.Join(dir, "a"), "authority", "authority:\n  grant:\n    amount: 1000\n",
		"--role", "authority", "--http", ":0")
	if !strings.HasPrefix(auth.HTTP, "http://127.0.0.1:") {
		t.Fatalf("authority live view at %q, want loopback by default", auth.HTTP)
	}
	addr := auth.Addrs[0]
	daemon(t, "worker", "--role", "worker", "--bootstrap", addr, "--slots", "2")
	cdir := filepath.Join(dir, "c")
	cl := daemonIn(t, cdir, "client", "", "--role", "client", "--bootstrap", addr, "--http", "127.0.0.1:0")

	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	// The authority's page: the worker registered over a direct
	// connection, the relay on, points minted (the client's grant follows
	// its first contact).
	if _, err := chromedp.Run(tctx, chromedp.Navigate(auth.HTTP)); err != nil {
		t.Fatal(err)
	}
	var n liveNode
	var text string
	waitPage := func(what string, ok func() bool) {
		t.Helper()
		for end := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			n, text = pageNode(t, tctx)
			if ok() {
				return
			}
			if time.Now().After(end) {
				t.Fatalf("page never showed %s: vizNode %+v\n%s", what, n, text)
			}
		}
	}
	waitPage("the registered worker", func() bool {
		return n.Loaded && len(n.State.Workers) == 1 && n.State.Workers[0].Conn == "direct" && n.State.Workers[0].Slots == 2
	})
	if !n.State.Relay.On || !strings.Contains(text, "relay service on") || !strings.Contains(text, "Registered workers (1)") {
		t.Fatalf("authority section:\n%s", text)
	}

	// The client runs a series handed to it through its API socket.
	spec := writeSpec(t, dir, `name: live
module: builtin:pi
args: ["-seed", "{seed}", "-samples", "1000"]
params:
  seed: {from: 1, to: 6}
  tag: ["<img src=x onerror=window.pwned=1>"] # shown by the page as text, never as HTML
outputs: [result.json]
`)
	out, code := submitWhenRegistered(t, "submit", spec, "--data-dir", filepath.Join(cdir, "data"))
	if code != 0 {
		t.Fatalf("submit: exit %d\n%s", code, out)
	}
	if _, err := chromedp.Run(tctx, chromedp.Navigate(cl.HTTP)); err != nil {
		t.Fatal(err)
	}
	waitPage("the finished series", func() bool {
		return n.Loaded && len(n.State.Series) == 1 && n.State.Series[0].Finished && len(n.State.Series[0].JobList) == 6
	})
	s := n.State.Series[0]
	if s.Name != "live" || s.Jobs != 6 || s.Done != 6 || !strings.Contains(text, "6/6 jobs") || !strings.Contains(text, "seed=3") {
		t.Fatalf("client series %+v, section:\n%s", s, text)
	}
	if !strings.Contains(text, "tag=<img src=x onerror=window.pwned=1>") {
		t.Errorf("the params are not shown as text:\n%s", text)
	}
	pwned, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`window.pwned !== undefined || document.querySelector("img") !== null`))
	if err != nil || pwned {
		t.Fatalf("a job's params became HTML in the page (%v)", err)
	}
	// The replay half of the page is fed by the client's own log.
	nodes, err := chromedp.Run(tctx, chromedp.Evaluate[int](`window.vizState ? window.vizState.nodes.length : 0`))
	if err != nil {
		t.Fatal(err)
	}
	if nodes < 2 {
		t.Errorf("the visualiser shows %d nodes from the client's log, want the client and its peers", nodes)
	}

	// Back on the authority: the ledger notarised the series.
	if _, err := chromedp.Run(tctx, chromedp.Navigate(auth.HTTP)); err != nil {
		t.Fatal(err)
	}
	waitPage("the ledger totals", func() bool { return n.Loaded && n.State.Ledger != nil && n.State.Ledger.Minted >= 1000 })
}
