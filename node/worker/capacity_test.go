package worker

import (
	"math"
	"testing"
	"time"
)

func TestDrifted(t *testing.T) {
	for _, c := range []struct {
		at, now Load
		want    bool
	}{
		{Load{PerCPU: 0.02, FreeMem: 1000}, Load{PerCPU: 0.08, FreeMem: 1050}, false}, // idle jitter, 5 % memory
		{Load{PerCPU: 0.02}, Load{PerCPU: 0.2}, true},
		{Load{PerCPU: 2, FreeMem: 1000}, Load{PerCPU: 2.15, FreeMem: 1000}, false},
		{Load{PerCPU: 2}, Load{PerCPU: 2.3}, true},
		{Load{FreeMem: 1000}, Load{FreeMem: 880}, true},
		{Load{FreeMem: 0}, Load{FreeMem: 880}, false}, // unknown
	} {
		if got := Drifted(c.at, c.now); got != c.want {
			t.Errorf("Drifted(%+v, %+v) = %v", c.at, c.now, got)
		}
	}
}

func TestScaleWonk(t *testing.T) {
	if got := ScaleWonk(0.2, 1, 0); math.Abs(got-0.1) > 1e-12 {
		t.Errorf("measured under load 1, idle = %v, want 0.1", got)
	}
	if got := ScaleWonk(0.1, 0, 0.5); math.Abs(got-0.15) > 1e-12 {
		t.Errorf("at load 0.5 = %v, want 0.15", got)
	}
}

func TestCapacityRemeasuresOnDrift(t *testing.T) {
	load := Load{PerCPU: 0, FreeMem: 1 << 30}
	runs := 0
	c := NewCapacity(func() float64 { runs++; return 0.1 * float64(runs) }, func() (Load, error) { return load, nil })
	now := time.Unix(1000, 0)
	c.clock, c.atTime = func() time.Time { return now }, now
	if w, l := c.Now(0); w != 0.1 || l != 0 || c.Measurements() != 1 {
		t.Fatalf("first: %v at %v, %d runs", w, l, c.Measurements())
	}
	load.FreeMem = 1<<30 - 1<<20 // 0.1 %: no re-measure
	if w, _ := c.Now(0.5); math.Abs(w-0.15) > 1e-12 || c.Measurements() != 1 {
		t.Errorf("own load 0.5: wonk %v (want 0.15 scaled), %d runs", w, c.Measurements())
	}
	load.PerCPU = 1 // drift, but within a minute of the last run: scaled, not re-measured
	if w, _ := c.Now(0); math.Abs(w-0.2) > 1e-12 || c.Measurements() != 1 {
		t.Errorf("drift within the gap: wonk %v (want 0.1 scaled to load 1), %d runs", w, c.Measurements())
	}
	now = now.Add(remeasureGap) // drift after the gap: re-measure (the fake benchmark now says 0.2 under load 1)
	if w, l := c.Now(0); w != 0.2 || l != 1 || c.Measurements() != 2 {
		t.Errorf("after drift: %v at %v, %d runs", w, l, c.Measurements())
	}
}

func TestParseLoad(t *testing.T) {
	l, err := parseLoad([]byte("3.00 2.00 1.00 2/300 4242\n"), []byte("MemTotal: 100 kB\nMemAvailable:     2048 kB\n"), 2)
	if err != nil || l.PerCPU != 1.5 || l.FreeMem != 2048<<10 {
		t.Errorf("parseLoad = %+v, %v", l, err)
	}
	if _, err := parseLoad([]byte("x"), nil, 1); err == nil {
		t.Error("garbage parsed")
	}
}
