package events

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// appendEvent writes exactly what encoding/json's Encoder wrote before it.
func TestAppendEventMatchesEncodingJSON(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 6, 1, 38, 762855423, time.UTC)
	cases := []Event{
		{},
		{V: 1, Time: t0, Mono: 108679739, Node: "12D3KooWQDut", Role: "authority", Kind: Started,
			Attrs: map[string]any{"addrs": []string{"/ip4/127.0.0.1/tcp/35233/p2p/12D3KooWQDut"}}},
		{V: 1, Time: t0.In(time.FixedZone("x", 3600+1800)), Mono: -5, Node: "n", Role: "worker,client", Kind: MsgSent,
			Peer: "p", Proto: "/p2pjobs/job/1.0.0", Size: 312, Dir: "out", Conn: "relayed", Series: "s", Job: "job-1",
			Price: math.MaxUint64, Err: "stream reset"},
		{V: 1, Time: t0.Truncate(time.Second), Kind: "job_stream", Size: -1,
			Err: "quotes \" back\\slash <html> & ctl \x00\x01\b\f\n\r\t\x7f é 日本 \u2028\u2029 bad \xff\xfe utf8 \U0001F600"},
		{V: 1, Time: t0, Kind: LedgerBlock, Attrs: map[string]any{"seq": uint64(3), "kind": "escrow_lock", "amount": uint64(6),
			"balance": uint64(994), "counterparty": "12D3KooWE", "nested": map[string]any{"b": 1.5, "a": []any{nil, true}}}},
		{V: 1, Time: t0, Kind: Neighbours, Attrs: map[string]any{}},
		{V: 1, Time: t0, Kind: JobFinished, Attrs: map[string]any{"ms": int64(45), "exit": 0, "z": uint32(7), "a": int32(-3),
			"u": uint(1), "ok": true, "why": "<&>", "é": false}},
		{V: 1, Time: t0, Kind: "x", Attrs: map[string]any{"1": 1, "2": 2, "3": 3, "4": 4, "5": 5, "6": 6, "7": 7, "8": 8, "9": 9}},
	}
	for i, e := range cases {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(&e); err != nil {
			t.Fatal(err)
		}
		got, err := appendEvent(nil, &e)
		if err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Errorf("case %d (%v):\n got %s\nwant %s", i, err, got, want.Bytes())
		}
	}
	// A year encoding/json refuses is refused.
	if _, err := appendEvent(nil, &Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("year 10000 encoded")
	}
	if _, err := appendEvent(nil, &Event{Attrs: map[string]any{"f": func() {}}}); err == nil {
		t.Error("unencodable attribute encoded")
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("plain")
	f.Add("<\u2028\xff\x00\"")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s want %s", s, got, want)
		}
	})
}
