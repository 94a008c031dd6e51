package viz

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/node/viz/internal/loggen"
)

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

type testPage struct {
	T0     time.Time `json:"t0"`
	From   int       `json:"from"`
	Next   int       `json:"next"`
	Total  int       `json:"total"`
	Nodes  []Node    `json:"nodes"`
	Events []wireEvent
}

func TestServerAPI(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	d, err := loggen.WriteDemo(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := StartOptions(ctx, Options{Sources: []string{d.Dir}, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") {
		t.Fatalf("url %s", s.URL())
	}

	// The page and its assets are embedded.
	for _, p := range []string{"", "app.js", "style.css"} {
		resp, err := http.Get(s.URL() + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) < 100 {
			t.Fatalf("/%s: %s, %d bytes", p, resp.Status, len(b))
		}
	}

	// Pages cover every event once, in order.
	var all []wireEvent
	var p testPage
	for from := 0; ; from = p.Next {
		getJSON(t, s.URL()+"api/events?limit=50&from="+itoa(from), &p)
		if p.From != from {
			t.Fatalf("from %d, want %d", p.From, from)
		}
		all = append(all, p.Events...)
		if p.Next >= p.Total {
			break
		}
	}
	if len(all) != p.Total || len(p.Nodes) != 7 || !p.T0.Equal(loggen.Epoch) {
		t.Fatalf("%d events of %d, %d nodes, t0 %v", len(all), p.Total, len(p.Nodes), p.T0)
	}
	for i := 1; i < len(all); i++ {
		if all[i].T < all[i-1].T {
			t.Fatalf("event %d out of order", i)
		}
	}
	var nb *wireEvent
	for i := range all {
		if all[i].K == "neighbours" && len(all[i].Nb) == 5 {
			nb = &all[i]
		}
	}
	if nb == nil || p.Nodes[nb.N].ID != d.Authority {
		t.Fatal("no neighbours event of the authority with 5 peers")
	}

	// State at a moment.
	var st struct {
		Errors  int    `json:"errors"`
		Traffic []Link `json:"traffic"`
	}
	getJSON(t, s.URL()+"api/state?t="+itoa(int(d.Awarded.Milliseconds())), &st)
	if !hasLink(st.Traffic, d.Client, d.Workers[4], "relayed") || st.Errors != 1 {
		t.Fatalf("state: %+v", st)
	}

	// The stream sends what exists, then what is appended.
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL()+"api/stream?from="+itoa(p.Total-1), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msgs := make(chan testPage)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var m testPage
				json.Unmarshal([]byte(data), &m)
				select {
				case msgs <- m:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	m := <-msgs
	if m.From != p.Total-1 || len(m.Events) != 1 {
		t.Fatalf("first message from %d with %d events", m.From, len(m.Events))
	}
	if err := loggen.Append(d.Files[d.Authority], d.Authority, "authority", d.End+time.Second,
		events.Event{Kind: events.Expired, Peer: d.Workers[2]}); err != nil {
		t.Fatal(err)
	}
	select {
	case m = <-msgs:
	case <-time.After(5 * time.Second):
		t.Fatal("appended event not streamed")
	}
	if m.From != p.Total || len(m.Events) != 1 || m.Events[0].K != "expired" || m.Events[0].T != float64((d.End+time.Second).Milliseconds()) {
		t.Fatalf("streamed %+v", m)
	}

	// Cancelling the context stops the server, streams included.
	cancel()
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("server did not stop")
	}
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Errorf("%d goroutines left running (had %d)", n, goroutines)
	}
}

func TestServeEmptyDirThenLogsAppear(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := StartOptions(ctx, Options{Sources: []string{dir}, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var p testPage
	getJSON(t, s.URL()+"api/events", &p)
	if p.Total != 0 {
		t.Fatalf("total %d", p.Total)
	}
	// The page reads these lists before any event exists: never null.
	var raw map[string]json.RawMessage
	getJSON(t, s.URL()+"api/events", &raw)
	for _, k := range []string{"nodes", "files", "events"} {
		if string(raw[k]) != "[]" {
			t.Errorf("empty log directory: %s is %s, want []", k, raw[k])
		}
	}
	f := filepath.Join(dir, "worker-1.jsonl")
	os.WriteFile(f, nil, 0o644)
	loggen.Append(f, "W", "worker", 0, events.Event{Kind: events.Started})
	deadline := time.Now().Add(3 * time.Second)
	for p.Total == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		getJSON(t, s.URL()+"api/events", &p)
	}
	if p.Total != 1 || p.Nodes[0].ID != "W" || !p.T0.Equal(loggen.Epoch) {
		t.Fatalf("after the log appeared: %+v", p)
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(context.Background(), "", filepath.Join(t.TempDir(), "missing")); !errors.Is(err, ErrNoSource) {
		t.Fatalf("missing source: %v", err)
	}
	if _, err := Start(context.Background(), "256.0.0.1:0", t.TempDir()); err == nil {
		t.Fatal("bad address accepted")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestHostCheck: a request naming the server by a DNS name other than
// localhost (a rebinding page) is refused; by IP or localhost it is served.
func TestHostCheck(t *testing.T) {
	h := hostCheck(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for host, want := range map[string]int{"127.0.0.1:8080": 200, "localhost:8080": 200, "[::1]:8080": 200,
		"evil.example:8080": 403, "evil.example": 403} {
		r := httptest.NewRequest("GET", "/api/node", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Host %s: %d, want %d", host, w.Code, want)
		}
	}
}

// TestPageHardening: the live view serves a node's state with no
// authentication, so a web page the operator visits must neither frame it,
// make the browser sniff its JSON as script, nor use the browser to call
// its API (it cannot read the answers, but can make the node compute them
// over and over); and a script slipped into the page by some field a peer
// sent would find inline script refused by the Content-Security-Policy.
// The page itself (same-origin fetches, a typed or bookmarked URL, a link
// followed) still works.
func TestPageHardening(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := StartOptions(ctx, Options{Sources: []string{t.TempDir()}, State: func() any { return map[string]string{"peer_id": "x"} }})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequest("GET", strings.TrimSuffix(s.URL(), "/")+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, p := range []string{"/", "/app.js", "/api/node", "/api/events"} {
		h := get(p, nil).Header
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") ||
			!strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "script-src 'unsafe-inline'") {
			t.Errorf("%s: Content-Security-Policy %q", p, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q, want nosniff", p, h.Get("X-Content-Type-Options"))
		}
	}
	for _, c := range []struct {
		path, site, mode string
		want             int
	}{
		{"/api/node", "cross-site", "no-cors", http.StatusForbidden},
		{"/api/events", "cross-site", "cors", http.StatusForbidden},
		{"/api/node", "same-site", "cors", http.StatusForbidden}, // another port of 127.0.0.1
		{"/", "cross-site", "no-cors", http.StatusForbidden},     // an <img>/<script> of the page
		{"/api/node", "same-origin", "cors", http.StatusOK},      // the page's own fetch
		{"/", "none", "navigate", http.StatusOK},                 // typed or bookmarked
		{"/", "cross-site", "navigate", http.StatusOK},           // a link followed from elsewhere
		{"/api/node", "", "", http.StatusOK},                     // curl, scripts: no Sec-Fetch-* at all
	} {
		hdr := map[string]string{}
		if c.site != "" {
			hdr["Sec-Fetch-Site"], hdr["Sec-Fetch-Mode"] = c.site, c.mode
		}
		if got := get(c.path, hdr).StatusCode; got != c.want {
			t.Errorf("%s with Sec-Fetch-Site %q, Mode %q: %d, want %d", c.path, c.site, c.mode, got, c.want)
		}
	}
	// Keep-alive connections left idle, and streams to readers that
	// stopped reading, are ended: otherwise any local process could hold
	// the node's file descriptors (shared with its libp2p host) forever.
	if s.srv.IdleTimeout <= 0 {
		t.Errorf("IdleTimeout %v: idle connections are kept forever", s.srv.IdleTimeout)
	}
}

// TestConnectionCap: the live view serves at most MaxConns connections at
// once; more wait, unaccepted, until one ends. Without a cap, each client
// holding a stream costs the node a file descriptor (shared with its
// libp2p host) and ~50 KB: 800 local clients measured 800 fds and +40 MB,
// and enough of them would exhaust either.
func TestConnectionCap(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const limit = 3
	s, err := StartOptions(ctx, Options{Sources: []string{t.TempDir()}, MaxConns: limit})
	if err != nil {
		t.Fatal(err)
	}
	var streams []*http.Response
	for range limit {
		resp, err := http.Get(s.URL() + "api/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil { // "retry: ...": being served
			t.Fatal(err)
		}
		streams = append(streams, resp)
	}
	served := make(chan error, 1)
	go func() {
		resp, err := http.Get(s.URL() + "api/events")
		if err == nil {
			resp.Body.Close()
		}
		served <- err
	}()
	select {
	case err := <-served:
		t.Fatalf("a request beyond the cap was served at once (err %v)", err)
	case <-time.After(300 * time.Millisecond): // bounded check that it is NOT served
	}
	streams[0].Body.Close() // one stream ends: the waiting request gets its connection
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting request was never served after a connection ended")
	}
}
