package authority

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// naive is the registry as it was (a map, filtered, sorted and paged on
// every discover): the model the indexed Registry must agree with.
type naive map[peer.ID]*Record

func (m naive) discover(f Filter, cursor string, limit int, now time.Time) (keys []string, next string, total int) {
	var all []string
	for _, r := range m {
		if now.Before(r.Expires) && f.match(r) {
			all = append(all, r.ID.String())
		}
	}
	slices.Sort(all)
	total = len(all)
	start, _ := slices.BinarySearch(all, cursor)
	if start < len(all) && all[start] == cursor {
		start++
	}
	end := min(start+limit, len(all))
	if end < len(all) && end > start {
		next = all[end-1]
	}
	return all[start:end], next, total
}

// TestRegistryAgreesWithModel runs random registrations, heartbeats,
// removals, expiries and discovers (every filter kind, random cursors, some
// of them absent IDs) against the naive model.
func TestRegistryAgreesWithModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	workers := ids(t, 60)
	execs := []string{"wasm", "exec", "gpu"}
	r := NewRegistry(10*time.Second, 50)
	m := naive{}
	now := time.Unix(1000, 0)
	for step := range 3000 {
		now = now.Add(time.Duration(rng.IntN(800)) * time.Millisecond)
		id := workers[rng.IntN(len(workers))]
		switch op := rng.IntN(10); {
		case op < 5:
			req := &pb.RegisterRequest{Executors: []string{execs[rng.IntN(3)], execs[rng.IntN(3)]},
				MemoryBytes: uint64(rng.IntN(4)) << 30, PricePerJob: uint64(rng.IntN(5)), Slots: 1}
			_, isNew, err := r.Register(id, req, now)
			_, had := m[id]
			switch {
			case !had && len(m) >= 50:
				if err != ErrFull {
					t.Fatalf("step %d: registration %d past the cap: %v", step, len(m), err)
				}
			case err != nil || isNew == had:
				t.Fatalf("step %d: register: new %v, had %v, %v", step, isNew, had, err)
			default:
				m[id] = &Record{ID: id, Req: req, Expires: now.Add(10 * time.Second)}
			}
		case op < 6:
			r.Remove(id)
			delete(m, id)
		case op < 7:
			gone := r.Expire(now)
			var want []peer.ID
			for id, rec := range m {
				if !now.Before(rec.Expires) {
					want = append(want, id)
					delete(m, id)
				}
			}
			slices.Sort(want)
			if !slices.Equal(gone, want) {
				t.Fatalf("step %d: expired %v, want %v", step, gone, want)
			}
		default:
			f := Filter{}
			switch rng.IntN(4) {
			case 1:
				f.Executor = execs[rng.IntN(3)]
			case 2:
				f = Filter{Executor: execs[rng.IntN(3)], MinMemory: 1 << 30, MaxPrice: 3}
			case 3:
				f.MaxPrice = 2
			}
			cursor := ""
			if rng.IntN(2) == 0 {
				cursor = workers[rng.IntN(len(workers))].String()
			}
			limit := 1 + rng.IntN(8)
			page, next, total := r.Discover(f, cursor, limit, now)
			wantKeys, wantNext, wantTotal := m.discover(f, cursor, limit, now)
			keys := make([]string, len(page))
			for i, rec := range page {
				keys[i] = rec.Key
			}
			if !(f.MinMemory == 0 && f.MaxPrice == 0) && cursor != "" {
				wantTotal = 0 // counted on the first page only
			}
			if !slices.Equal(keys, wantKeys) || next != wantNext || total != wantTotal {
				t.Fatalf("step %d: discover %+v after %q: %v next %q total %d; want %v next %q total %d",
					step, f, cursor, keys, next, total, wantKeys, wantNext, wantTotal)
			}
		}
		if r.Len() != len(m) {
			t.Fatalf("step %d: %d records, want %d", step, r.Len(), len(m))
		}
	}
}

// TestViewIsASnapshot: a view taken before a heartbeat, a removal and a
// registration keeps listing what it saw, while the registry moves on.
func TestViewIsASnapshot(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRegistry(time.Minute, 100)
	w := ids(t, 3)
	old := &pb.RegisterRequest{Executors: []string{"wasm"}, PricePerJob: 1, Slots: 1}
	r.Register(w[0], old, now)
	r.Register(w[1], old, now)
	v := r.Snapshot(Filter{})
	r.Register(w[0], &pb.RegisterRequest{Executors: []string{"exec"}, PricePerJob: 9, Slots: 1}, now)
	r.Remove(w[1])
	r.Register(w[2], old, now)
	page, _, total := v.Discover(Filter{}, "", 10, now)
	if total != 2 || len(page) != 2 || page[0].Req != old || page[1].Req != old {
		t.Fatalf("view changed: total %d, %v", total, page)
	}
	if _, _, n := r.Discover(Filter{Executor: "wasm"}, "", 10, now); n != 1 {
		t.Fatalf("registry: %d wasm workers, want 1 (w2)", n)
	}
}

// BenchmarkRegistry100k holds 100,000 registered workers and measures the
// registry's operations one at a time (ns/op) and, in the "mixed" case,
// discovers running on other goroutines while heartbeats go on, as the
// Service runs them: snapshot under its lock, page outside it.
//
//	go test ./node/authority -run '^$' -bench Registry100k -benchtime 2s
func BenchmarkRegistry100k(b *testing.B) {
	const n = 100_000
	now := time.Unix(1_000_000, 0)
	workers := make([]peer.ID, n+200_000)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range workers {
		// Ed25519 peer IDs are the identity multihash of the protobuf
		// public key: the same bytes as real ones, without 300,000 key
		// generations.
		raw := append([]byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}, make([]byte, 32)...)
		for j := 6; j < len(raw); j++ {
			raw[j] = byte(rng.Uint32())
		}
		id, err := peer.IDFromBytes(raw)
		if err != nil {
			b.Fatal(err)
		}
		workers[i] = id
	}
	req := func(i int) *pb.RegisterRequest {
		return &pb.RegisterRequest{Executors: []string{"wasm"}, MemoryBytes: 1 << 30, PricePerJob: uint64(i % 7), Slots: 1,
			Addrs: [][]byte{{4, 127, 0, 0, 1, 6, 15, 161}}}
	}
	sorted := make([]string, n)
	for i := range n {
		sorted[i] = workers[i].String()
	}
	slices.Sort(sorted)
	cursor := func(i int) string { return sorted[i%(n-200)] } // a full page after each
	fill := func() *Registry {
		r := NewRegistry(time.Hour, 1_000_000)
		for i := range n {
			r.Register(workers[i], req(i), now)
		}
		return r
	}
	b.Run("register", func(b *testing.B) {
		r := fill()
		b.ResetTimer()
		for i := range b.N {
			id := workers[n+i%200_000]
			if i%200_000 == 0 && i > 0 {
				b.StopTimer()
				r = fill()
				b.StartTimer()
			}
			r.Register(id, req(i), now)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registers/s")
	})
	b.Run("heartbeat", func(b *testing.B) {
		r := fill()
		b.ResetTimer()
		for i := range b.N {
			r.Register(workers[i%n], req(i), now.Add(time.Duration(i)))
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "heartbeats/s")
	})
	for _, c := range []struct {
		name string
		f    Filter
	}{{"discover", Filter{Executor: "wasm"}}, {"discover-price-filter", Filter{Executor: "wasm", MaxPrice: 3}}} {
		// Pages after a cursor, as a client pages and the overlay samples.
		b.Run(c.name, func(b *testing.B) {
			r := fill()
			b.ResetTimer()
			for i := range b.N {
				page, _, total := r.Discover(c.f, cursor(i*7919), 100, now)
				if len(page) != 100 || (total < n/2 && c.f.MaxPrice == 0) {
					b.Fatalf("page of %d, total %d", len(page), total)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "discovers/s")
		})
	}
	b.Run("mixed", func(b *testing.B) {
		// One heartbeat goroutine (the timed loop) against 4 goroutines
		// discovering pages of 100 as fast as they can.
		r := fill()
		var mu sync.Mutex
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var pages [4]int
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					v := r.Snapshot(Filter{Executor: "wasm"})
					mu.Unlock()
					v.Discover(Filter{Executor: "wasm"}, cursor(i*7919+g), 100, now)
					pages[g]++
				}
			}()
		}
		b.ResetTimer()
		for i := range b.N {
			mu.Lock()
			r.Register(workers[i%n], req(i), now.Add(time.Duration(i)))
			mu.Unlock()
		}
		el := b.Elapsed()
		close(stop)
		wg.Wait()
		b.ReportMetric(float64(b.N)/el.Seconds(), "heartbeats/s")
		b.ReportMetric(float64(pages[0]+pages[1]+pages[2]+pages[3])/el.Seconds(), "discovers/s")
	})
}

func ExampleRegistry_Discover() {
	r := NewRegistry(time.Minute, 10)
	now := time.Unix(0, 0)
	for range 3 {
		k, _, _ := crypto.GenerateEd25519Key(nil)
		id, _ := peer.IDFromPrivateKey(k)
		r.Register(id, &pb.RegisterRequest{Executors: []string{"wasm"}, Slots: 1}, now)
	}
	page, next, total := r.Discover(Filter{Executor: "wasm"}, "", 2, now)
	fmt.Println(len(page), next == page[1].Key, total)
	// Output: 2 true 3
}
