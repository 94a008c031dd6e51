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
