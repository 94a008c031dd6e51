package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/p2pjobs/p2pnode/node/series"
)

// TestExamples runs every series file under examples/ the way its README
// says, on a loopback network of processes: an authority, a worker with the
// default config and one with the exec example's worker.yaml. Each example
// runs from a copy of its directory (results land beside the series file)
// and uses the committed .wasm, so the test needs no clang.
func TestExamples(t *testing.T) {
	specs, err := filepath.Glob("../../examples/*/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	specs = slices.DeleteFunc(specs, func(p string) bool { return filepath.Base(p) == "worker.yaml" })
	if len(specs) < 4 {
		t.Fatalf("found %d example series, want at least 4: %v", len(specs), specs)
	}
	execCfg, err := os.ReadFile("../../examples/gzip-exec/worker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	auth := daemonWithConfig(t, "authority", "authority:\n  grant:\n    amount: 1000\n", "--role", "authority")
	addr := auth.Addrs[0]
	daemon(t, "worker-wasm", "--role", "worker", "--bootstrap", addr, "--slots", "2")
	daemonWithConfig(t, "worker-exec", string(execCfg), "--role", "worker", "--bootstrap", addr, "--slots", "2")
	client := filepath.Join(t.TempDir(), "client")

	for _, src := range specs {
		name := filepath.Base(filepath.Dir(src)) + "/" + filepath.Base(src)
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), filepath.Base(filepath.Dir(src)))
			if err := os.CopyFS(dir, os.DirFS(filepath.Dir(src))); err != nil {
				t.Fatal(err)
			}
			specPath := filepath.Join(dir, filepath.Base(src))
			spec, err := series.Load(specPath)
			if err != nil {
				t.Fatal(err)
			}
			jobs, err := spec.Expand()
			if err != nil {
				t.Fatal(err)
			}
			out, code := submitWhenRegistered(t, "submit", specPath, "--bootstrap", addr, "--data-dir", client)
			if code != 0 {
				t.Fatalf("submit %s: exit %d\n%s", name, code, out)
			}
			want := fmt.Sprintf("%d jobs: %d done, 0 failed", len(jobs), len(jobs))
			if !strings.Contains(out, want) {
				t.Fatalf("want %q in:\n%s", want, out)
			}
			res := filepath.Join(spec.Path(spec.Results), spec.Name)
			lines := summaryLines(t, filepath.Join(res, "summary.jsonl"))
			if len(lines) != len(jobs) {
				t.Fatalf("%d summary lines, want %d", len(lines), len(jobs))
			}
			for _, j := range jobs {
				for _, o := range spec.Outputs {
					if st, err := os.Stat(filepath.Join(res, j.ID, o)); err != nil || st.Size() == 0 {
						t.Errorf("%s: output %s: %v", j.ID, o, err)
					}
				}
			}
			checkExample(t, spec, res, lines)
		})
	}
}

type exampleLine struct {
	Job, Status, Stdout string
	Params              map[string]string
}

func summaryLines(t *testing.T, path string) map[string]exampleLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]exampleLine{}
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var l exampleLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Status != "done" {
			t.Fatalf("summary line %s: %v", sc.Text(), err)
		}
		out[l.Job] = l
	}
	return out
}

// checkExample checks what each example computes, not only that it ran.
func checkExample(t *testing.T, spec *series.Spec, res string, lines map[string]exampleLine) {
	t.Helper()
	switch spec.Name {
	case "primes":
		total := 0
		for _, l := range lines {
			var r struct{ Primes int }
			if err := json.Unmarshal([]byte(l.Stdout), &r); err != nil {
				t.Fatalf("%s stdout %q: %v", l.Job, l.Stdout, err)
			}
			total += r.Primes
		}
		if total != 664579 {
			t.Errorf("primes below 10^7: %d, want 664579", total)
		}
	case "mandelbrot":
		for job := range lines {
			b, err := os.ReadFile(filepath.Join(res, job, "tile.pgm"))
			if err != nil || !bytes.HasPrefix(b, []byte("P5\n256 256\n255\n")) || len(b) != 15+256*256 {
				t.Errorf("%s/tile.pgm: %d bytes, %v", job, len(b), err)
			}
		}
	case "station-stats":
		for job, l := range lines {
			var st struct {
				Station string
				Days    int
			}
			b, err := os.ReadFile(filepath.Join(res, job, "stats.json"))
			if err != nil || json.Unmarshal(b, &st) != nil || st.Station != l.Params["station"] || st.Days != 365 {
				t.Errorf("%s/stats.json = %s (%v), want station %s over 365 days", job, b, err, l.Params["station"])
			}
		}
	case "gzip-levels":
		orig, err := os.ReadFile(spec.Path("measurements.csv"))
		if err != nil {
			t.Fatal(err)
		}
		for job := range lines {
			f, err := os.Open(filepath.Join(res, job, "measurements.csv.gz"))
			if err != nil {
				t.Fatal(err)
			}
			zr, err := gzip.NewReader(f)
			if err != nil {
				t.Fatalf("%s: %v", job, err)
			}
			got, err := io.ReadAll(zr)
			f.Close()
			if err != nil || !bytes.Equal(got, orig) {
				t.Errorf("%s: the archive does not hold the input (%v)", job, err)
			}
		}
	default:
		t.Errorf("example %s has no check in checkExample: add one", spec.Name)
	}
}
