package events

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestEmitDecodeRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	now := t0
	l := New(&buf, "node-a", "worker", WithClock(func() time.Time { return now }))
	l.Emit(Event{Kind: Connected, Peer: "node-b", Conn: "relayed", Dir: "in"})
	now = t0.Add(1500 * time.Millisecond)
	l.Message("out", peer.ID("x"), "/p2pjobs/bid/1.1.0", 42, errors.New("queue full"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var got []Event
	skipped, err := Decode(&buf, func(e Event) error { got = append(got, e); return nil })
	if err != nil || skipped != 0 || len(got) != 2 {
		t.Fatalf("decode: %v, %d skipped, %d events", err, skipped, len(got))
	}
	if e := got[0]; e.V != SchemaVersion || e.Node != "node-a" || e.Role != "worker" || e.Conn != "relayed" || !e.Time.Equal(t0) || e.Mono != 0 {
		t.Errorf("first event: %+v", e)
	}
	if e := got[1]; e.Kind != MsgSent || e.Size != 42 || e.Err != "queue full" || e.Mono != int64(1500*time.Millisecond) {
		t.Errorf("message event: %+v", e)
	}
	// Nanoseconds survive (RFC 3339 with nanoseconds).
	if got[0].Time.Nanosecond() != 123456789 {
		t.Errorf("lost nanoseconds: %v", got[0].Time)
	}
}

func TestDecodeSkipsBrokenLines(t *testing.T) {
	in := `{"v":1,"kind":"started","node":"a"}
not json
{"v":1,"node":"no kind"}
{"v":1,"kind":"stopped","node":"a"}
{"v":1,"kind":"job_fini`
	n := 0
	skipped, err := Decode(strings.NewReader(in), func(Event) error { n++; return nil })
	if err != nil || n != 2 || skipped != 3 {
		t.Fatalf("n=%d skipped=%d err=%v", n, skipped, err)
	}
}

func TestNilLogDiscards(t *testing.T) {
	var l *Log
	l.Emit(Event{Kind: Error})
	l.Message("in", "", "", 0, nil)
	l.Flush()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentEmit: lines never interleave when many goroutines emit.
func TestConcurrentEmit(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, "n", "client")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				l.Emit(Event{Kind: JobFinished, Job: strings.Repeat("j", g+i%7)})
			}
		}()
	}
	wg.Wait()
	l.Close()
	n := 0
	skipped, err := Decode(&buf, func(Event) error { n++; return nil })
	if err != nil || skipped != 0 || n != 1600 {
		t.Fatalf("n=%d skipped=%d err=%v", n, skipped, err)
	}
}

func BenchmarkEmit(b *testing.B) {
	l := New(discard{}, "12D3KooWNode", "worker")
	defer l.Close()
	b.ReportAllocs()
	for b.Loop() {
		l.Emit(Event{Kind: JobFinished, Peer: "12D3KooWPeer", Series: "s", Job: "job-0001", Price: 1,
			Attrs: map[string]any{"ms": 1, "exit": 0}})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestMetricsCountEvents(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	l := New(nil, "n", "worker", WithObserver(m.Observe)) // metrics only, no file
	l.Emit(Event{Kind: JobFinished})
	l.Emit(Event{Kind: JobFailed, Err: "trap"})
	l.Message("out", "p", "/p2pjobs/job/1.0.0", 100, nil)
	l.Message("out", "p", "/p2pjobs/job/1.0.0", 50, nil)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.events.WithLabelValues("job_failed", "error")); got != 1 {
		t.Errorf("job_failed errors: %v", got)
	}
	if got := testutil.ToFloat64(m.bytes.WithLabelValues("/p2pjobs/job/1.0.0", "out")); got != 150 {
		t.Errorf("bytes out: %v", got)
	}
}
