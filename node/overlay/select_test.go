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
