package events

import (
	"errors"
	"io"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// The hot path's events: a protocol message each way and a finished job
// with its attributes, as the worker and the client write them per job.

func BenchmarkEmitMessage(b *testing.B) {
	l := New(io.Discard, "12D3KooWQDutXaBec35CXpEQuHYnx8CuLrHFrAiXG82dYE7npShc", "worker")
	defer l.Close()
	p := peer.ID("\x00\x24\x08\x01\x12\x20abcdefghijabcdefghijabcdefghij12")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Message("out", p, "/p2pjobs/job/1.0.0", 312, nil)
		}
	})
}

func BenchmarkEmitJobFinished(b *testing.B) {
	l := New(io.Discard, "12D3KooWQDutXaBec35CXpEQuHYnx8CuLrHFrAiXG82dYE7npShc", "worker")
	defer l.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Emit(Event{Kind: JobFinished, Peer: "12D3KooWNYV5oEoW5K5hUZhjSiduwsjnKvHXcsQWiUfcDoiFkvHa", Series: "pi-sweep-1",
				Job: "job-17", Attrs: map[string]any{"ms": int64(45), "exit": 0}})
		}
	})
}

func BenchmarkEmitError(b *testing.B) {
	l := New(io.Discard, "12D3KooWQDutXaBec35CXpEQuHYnx8CuLrHFrAiXG82dYE7npShc", "client")
	defer l.Close()
	err := errors.New("stream reset: \"peer\" <gone>")
	b.ReportAllocs()
	for b.Loop() {
		l.Message("in", "", "/p2pjobs/bid/1.1.0", 0, err)
	}
}
