package overlay

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func ids(t testing.TB, n int) []peer.ID {
	t.Helper()
	out := make([]peer.ID, n)
	for i := range out {
		_, pub, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		out[i], _ = peer.IDFromPublicKey(pub)
	}
	return out
}

func TestPickProbes(t *testing.T) {
	p := ids(t, 60)
	self, current, sample := p[0], p[1:4], p[3:50] // p[3] is in both
	got := PickProbes(self, append(slices.Clone(current), self), append(slices.Clone(sample), self), 8, rand.New(rand.NewPCG(1, 2)))
	if len(got) != 8 {
		t.Fatalf("%d probes, want 8", len(got))
	}
	if !slices.Equal(got[:3], current) {
		t.Errorf("current neighbours not probed first: %v", got[:3])
	}
	seen := map[peer.ID]bool{}
	for _, q := range got {
		if q == self || seen[q] {
			t.Errorf("self or duplicate %s probed", q)
		}
		seen[q] = true
	}
	if got := PickProbes(self, nil, p[1:3], 8, rand.New(rand.NewPCG(1, 2))); len(got) != 2 {
		t.Errorf("small sample: %d probes", len(got))
	}
}

func TestChoose(t *testing.T) {
	p := ids(t, 6)
	ms := []Measurement{
		{ID: p[0], RTT: 50 * time.Millisecond, OK: true},
		{ID: p[1], RTT: 5 * time.Millisecond, OK: false}, // fastest but unreachable
		{ID: p[2], RTT: 10 * time.Millisecond, OK: true},
		{ID: p[3], RTT: 30 * time.Millisecond, OK: true},
		{ID: p[4], RTT: 20 * time.Millisecond, OK: true},
		{ID: p[5], RTT: 90 * time.Millisecond, OK: true},
	}
	if got, want := Choose(ms, 4), []peer.ID{p[2], p[4], p[3], p[0]}; !slices.Equal(got, want) {
		t.Errorf("Choose = %v, want %v", got, want)
	}
	if got := Choose(ms[:2], 4); len(got) != 1 || got[0] != p[0] {
		t.Errorf("few reachable: %v", got)
	}
	tie := []Measurement{{ID: p[5], RTT: time.Millisecond, OK: true}, {ID: p[4], RTT: time.Millisecond, OK: true}}
	a, b := Choose(tie, 1), Choose([]Measurement{tie[1], tie[0]}, 1)
	if !slices.Equal(a, b) {
		t.Errorf("tie not deterministic: %v vs %v", a, b)
	}
}

func TestDiff(t *testing.T) {
	p := ids(t, 4)
	added, removed := Diff([]peer.ID{p[0], p[1], p[2]}, []peer.ID{p[1], p[2], p[3]})
	if !slices.Equal(added, []peer.ID{p[3]}) || !slices.Equal(removed, []peer.ID{p[0]}) {
		t.Errorf("Diff: +%v -%v", added, removed)
	}
}

// TestRankSpreadsTies: among peers equally near (same RTT bucket), each
// chooser ranks them its own way, so first choices spread over all of them
// instead of all landing on the lowest peer ID (the hub it made).
func TestRankSpreadsTies(t *testing.T) {
	peers := ids(t, 10)
	choosers := ids(t, 400)
	ms := make([]Measurement, len(peers))
	for i, p := range peers {
		ms[i] = Measurement{ID: p, RTT: 300*time.Microsecond + time.Duration(i)*50*time.Microsecond, OK: true}
	}
	first := map[peer.ID]int{}
	for _, c := range choosers {
		r := Rank(ms, c)
		if len(r) != len(peers) {
			t.Fatalf("ranked %d of %d", len(r), len(peers))
		}
		if again := Rank(ms, c); !slices.Equal(r, again) {
			t.Fatal("rank not deterministic for one chooser")
		}
		first[r[0]]++
	}
	for _, p := range peers {
		if n := first[p]; n == 0 || n > 3*len(choosers)/len(peers) {
			t.Errorf("%s ranked first by %d of %d choosers", p, n, len(choosers))
		}
	}
	// A whole bucket nearer still wins.
	ms = append(ms, Measurement{ID: choosers[0], RTT: 5 * time.Millisecond, OK: true},
		Measurement{ID: choosers[1], RTT: 2 * time.Millisecond, OK: true})
	if r := Rank(ms, choosers[2]); r[len(r)-1] != choosers[0] || r[len(r)-2] != choosers[1] {
		t.Errorf("slower buckets not last: %v", r[len(r)-2:])
	}
}

func TestRandomSlot(t *testing.T) {
	p := ids(t, 8)
	rng := rand.New(rand.NewPCG(5, 6))
	drawn := map[peer.ID]bool{}
	for range 200 {
		r := slices.Clone(p)
		RandomSlot(r, 4, rng)
		if !slices.Equal(r[:3], p[:3]) {
			t.Fatalf("nearest slots changed: %v", r[:3])
		}
		drawn[r[3]] = true
		slices.Sort(r)
		if want := slices.Sorted(slices.Values(p)); !slices.Equal(r, want) {
			t.Fatal("not a permutation")
		}
	}
	if len(drawn) != 5 {
		t.Errorf("random slot drew %d distinct peers of the 5 below the nearest 3", len(drawn))
	}
	short := slices.Clone(p[:4])
	RandomSlot(short, 4, rng)
	RandomSlot(short, 1, rng)
	if !slices.Equal(short, p[:4]) {
		t.Error("changed a ranking with no peer below the slots")
	}
}
