package exec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

type piResult struct {
	Seed    uint64  `json:"seed"`
	Samples uint64  `json:"samples"`
	Inside  uint64  `json:"inside"`
	Pi      float64 `json:"pi"`
}

// Compiling pi.wasm takes a while; tests share one executor and its cache.
var (
	sharedOnce sync.Once
	shared     *Wasm
	piHash     [32]byte
	trivHash   [32]byte
	sharedErr  error
)

func newShared(t testing.TB) (*Wasm, [32]byte, [32]byte) {
	t.Helper()
	sharedOnce.Do(func() {
		shared, sharedErr = NewWasm(WithCacheDir(os.TempDir() + "/p2pnode-exec-test-cache"))
		if sharedErr != nil {
			return
		}
		ctx := context.Background()
		if piHash, sharedErr = shared.AddModule(ctx, wasm.Pi); sharedErr != nil {
			return
		}
		trivHash, sharedErr = shared.AddModule(ctx, wasm.Trivial)
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared, piHash, trivHash
}

func wantCode(t *testing.T, err error, code pb.ErrorCode) {
	t.Helper()
	if !errors.Is(err, protocols.Code(code)) {
		t.Fatalf("err = %v, want %s", err, protocols.CodeName(code))
	}
}

func TestPi(t *testing.T) {
	w, pi, _ := newShared(t)
	ctx := context.Background()
	run := func() Result {
		res, err := w.Run(ctx, Job{ModuleHash: pi, Args: []string{"-seed", "42"}, Outputs: []string{"result.json"}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := run()
	if res.ExitCode != 0 {
		t.Fatalf("exit %d, stderr %s", res.ExitCode, res.Stderr)
	}
	var r piResult
	if err := json.Unmarshal(res.Stdout, &r); err != nil {
		t.Fatalf("stdout %q: %v", res.Stdout, err)
	}
	if r.Seed != 42 || r.Samples != 2_000_000 || math.Abs(r.Pi-math.Pi) > 0.05 {
		t.Fatalf("result %+v", r)
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Name != "result.json" || !bytes.Equal(res.Outputs[0].Data, res.Stdout) {
		t.Fatalf("outputs %+v, stdout %q", res.Outputs, res.Stdout)
	}
	t.Logf("pi job took %v", res.Duration)
	if again := run(); !bytes.Equal(again.Stdout, res.Stdout) {
		t.Fatalf("same seed, different output: %q vs %q", again.Stdout, res.Stdout)
	}
}

func TestTrivial(t *testing.T) {
	w, _, triv := newShared(t)
	res, err := w.Run(context.Background(), Job{ModuleHash: triv})
	if err != nil || string(res.Stdout) != "ok\n" || res.ExitCode != 0 {
		t.Fatalf("res %+v, err %v", res, err)
	}
}

func TestBadJobs(t *testing.T) {
	w, pi, _ := newShared(t)
	ctx := context.Background()

	t.Run("exit", func(t *testing.T) {
		// A Go panic ends in proc_exit(2): an exit code, not an error.
		res, err := w.Run(ctx, Job{ModuleHash: pi, Args: []string{"-trap"}})
		if err != nil || res.ExitCode != 2 || !strings.Contains(string(res.Stderr), "trap requested") {
			t.Fatalf("res %+v, err %v", res, err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		_, err := w.Run(ctx, Job{ModuleHash: pi, Args: []string{"-loop"}, Timeout: 500 * time.Millisecond})
		wantCode(t, err, pb.ErrorCode_JOB_TIMEOUT)
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := w.Run(cctx, Job{ModuleHash: pi, Args: []string{"-loop"}})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("memory", func(t *testing.T) {
		res, err := w.Run(ctx, Job{ModuleHash: pi, Args: []string{"-alloc", "64"}, MemoryBytes: 32 << 20})
		wantCode(t, err, pb.ErrorCode_JOB_MEMORY)
		t.Logf("exit %d, stderr: %.200s", res.ExitCode, res.Stderr)
		// Under the cap it works.
		res, err = w.Run(ctx, Job{ModuleHash: pi, Args: []string{"-alloc", "16", "-samples", "10", "-out", ""}, MemoryBytes: 64 << 20})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("res %+v, err %v", res, err)
		}
	})
	t.Run("minimum memory over cap", func(t *testing.T) {
		_, err := w.Run(ctx, Job{ModuleHash: pi, MemoryBytes: 64 << 10})
		wantCode(t, err, pb.ErrorCode_JOB_MEMORY)
	})
	t.Run("flood", func(t *testing.T) {
		res, err := w.Run(ctx, Job{ModuleHash: pi, Args: []string{"-flood"}, MaxOutputBytes: 1 << 20})
		wantCode(t, err, pb.ErrorCode_JOB_OUTPUT_TOO_LARGE)
		if len(res.Stdout) > 1<<20 {
			t.Fatalf("captured %d bytes", len(res.Stdout))
		}
	})
	t.Run("output over cap", func(t *testing.T) {
		_, err := w.Run(ctx, Job{ModuleHash: pi, Args: []string{"-samples", "10"}, Outputs: []string{"result.json"}, MaxOutputBytes: 80})
		wantCode(t, err, pb.ErrorCode_JOB_OUTPUT_TOO_LARGE)
	})
	t.Run("missing output", func(t *testing.T) {
		_, err := w.Run(ctx, Job{ModuleHash: pi, Args: []string{"-samples", "10", "-out", ""}, Outputs: []string{"other.json"}})
		wantCode(t, err, pb.ErrorCode_JOB_OUTPUT_MISSING)
	})
	t.Run("undeclared output", func(t *testing.T) {
		// pi writes result.json: with no files at all (no directory was
		// mounted: the write met EBADF, "Bad file number"), beside an input,
		// and beside another declared output. Each names the file and the
		// outputs: key.
		for _, job := range []Job{
			{ModuleHash: pi, Args: []string{"-samples", "10"}},
			{ModuleHash: pi, Args: []string{"-samples", "10"}, Inputs: []File{{Name: "in.txt", Data: []byte("x")}}},
			{ModuleHash: pi, Args: []string{"-samples", "10"}, Outputs: []string{"other.json"}},
		} {
			_, err := w.Run(ctx, job)
			wantCode(t, err, pb.ErrorCode_BAD_REQUEST)
			if msg := err.Error(); !strings.Contains(msg, `"result.json"`) || !strings.Contains(msg, "outputs:") {
				t.Fatalf("message %q names neither the file nor outputs:", msg)
			}
		}
		// Declared, the same write is collected.
		res, err := w.Run(ctx, Job{ModuleHash: pi, Args: []string{"-samples", "10"}, Outputs: []string{"result.json"}})
		if err != nil || len(res.Outputs) != 1 {
			t.Fatalf("declared: res %+v, err %v", res, err)
		}
	})
	t.Run("unknown module", func(t *testing.T) {
		_, err := w.Run(ctx, Job{ModuleHash: [32]byte{1}})
		wantCode(t, err, pb.ErrorCode_MODULE_MISSING)
	})
	t.Run("bad input name", func(t *testing.T) {
		for _, n := range []string{"../x", "/etc/x", "a/../../x", "a\x00b", ""} {
			_, err := w.Run(ctx, Job{ModuleHash: pi, Inputs: []File{{Name: n}}})
			wantCode(t, err, pb.ErrorCode_BAD_REQUEST)
		}
	})
}

func TestAddModuleInvalid(t *testing.T) {
	w, _, _ := newShared(t)
	ctx := context.Background()
	for name, b := range map[string][]byte{
		"garbage":  []byte("definitely not wasm"),
		"empty":    nil,
		"no start": {0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00},
	} {
		_, err := w.AddModule(ctx, b)
		if !errors.Is(err, protocols.Code(pb.ErrorCode_MODULE_INVALID)) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestSandbox(t *testing.T) {
	w, pi, _ := newShared(t)
	ctx := context.Background()
	t.Setenv("P2PNODE_SECRET", "leak")

	for _, p := range []string{"/etc/passwd", "../../../../etc/passwd", "/proc/self/environ"} {
		res, err := w.Run(ctx, Job{ModuleHash: pi, Args: []string{"-read", p}})
		if err != nil || res.ExitCode == 0 || strings.Contains(string(res.Stdout), "root:") {
			t.Fatalf("read %s: res %+v err %v", p, res, err)
		}
		// With a working directory mounted, too.
		res, err = w.Run(ctx, Job{ModuleHash: pi, Args: []string{"-read", p}, Inputs: []File{{Name: "in.txt", Data: []byte("hi")}}})
		if err != nil || res.ExitCode == 0 || strings.Contains(string(res.Stdout), "root:") {
			t.Fatalf("read %s with dir: res %+v err %v", p, res, err)
		}
	}
	res, err := w.Run(ctx, Job{ModuleHash: pi, Args: []string{"-read", "data/in.txt"}, Inputs: []File{{Name: "data/in.txt", Data: []byte("hello")}}})
	if err != nil || string(res.Stdout) != "hello" {
		t.Fatalf("read input: res %+v err %v", res, err)
	}

	res, err = w.Run(ctx, Job{ModuleHash: pi, Args: []string{"-env"}, Env: map[string]string{"A": "1"}})
	if err != nil || string(res.Stdout) != "A=1\n" {
		t.Fatalf("env: %q, err %v", res.Stdout, err)
	}
}

func TestConcurrentRuns(t *testing.T) {
	w, pi, triv := newShared(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			job := Job{ModuleHash: triv}
			if i%4 == 0 {
				job = Job{ModuleHash: pi, Args: []string{"-samples", "1000", "-seed", "7"}, Outputs: []string{"result.json"}}
			}
			res, err := w.Run(ctx, job)
			if err == nil && res.ExitCode != 0 {
				err = errors.New(string(res.Stderr))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestLRUEviction(t *testing.T) {
	w, err := NewWasm(WithMaxModules(1))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	ctx := context.Background()
	a, err := w.AddModule(ctx, wasm.Trivial)
	if err != nil {
		t.Fatal(err)
	}
	// A second, different module (same code, extra custom section) evicts
	// the first.
	other := append(append([]byte{}, wasm.Trivial...), 0x00, 0x03, 0x01, 'x', 0x00)
	b, err := w.AddModule(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if w.HasModule(a) || !w.HasModule(b) {
		t.Fatalf("has a=%v b=%v", w.HasModule(a), w.HasModule(b))
	}
	if _, err := w.Run(ctx, Job{ModuleHash: b}); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkRunTrivial(b *testing.B) {
	w, _, triv := newShared(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := w.Run(ctx, Job{ModuleHash: triv})
		if err != nil || len(res.Stdout) != 3 {
			b.Fatal(res, err)
		}
	}
}

func BenchmarkRunTrivialParallel(b *testing.B) {
	w, _, triv := newShared(b)
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := w.Run(ctx, Job{ModuleHash: triv}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkRunTrivialWithDir(b *testing.B) {
	ctx := context.Background()
	for _, scratch := range []string{"", "/dev/shm"} {
		name := "tmp"
		if scratch != "" {
			name = "shm"
			if _, err := os.Stat(scratch); err != nil {
				continue
			}
		}
		b.Run(name, func(b *testing.B) {
			w, err := NewWasm(WithScratchDir(scratch))
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close(ctx)
			triv, err := w.AddModule(ctx, wasm.Trivial)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := w.Run(ctx, Job{ModuleHash: triv, Inputs: []File{{Name: "in", Data: []byte("x")}}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestSandboxRawPaths(t *testing.T) {
	w, _, _ := newShared(t)
	ctx := context.Background()
	mod, err := os.ReadFile("testdata/escape.wasm")
	if err != nil {
		t.Fatal(err)
	}
	h, err := w.AddModule(ctx, mod)
	if err != nil {
		t.Fatal(err)
	}
	res, err := w.Run(ctx, Job{ModuleHash: h, Inputs: []File{{Name: "a", Data: []byte("x")}}})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("escape attempt: exit %d (1: opened ../etc/passwd, 2: made a symlink out), err %v", res.ExitCode, err)
	}
}

// TestDiskCache compiles pi.wasm with an empty on-disk cache, then with a
// new executor (as a restarted worker would) reading the same cache.
func TestDiskCache(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var took [2]time.Duration
	for i := range took {
		w, err := NewWasm(WithCacheDir(dir))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		h, err := w.AddModule(ctx, wasm.Pi)
		took[i] = time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		res, err := w.Run(ctx, Job{ModuleHash: h, Args: []string{"-samples", "1000", "-out", ""}})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("res %+v err %v", res, err)
		}
		w.Close(ctx)
	}
	t.Logf("pi.wasm (%d bytes) AddModule: cold %v, from disk cache %v", len(wasm.Pi), took[0], took[1])
}
