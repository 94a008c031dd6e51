package series

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const example = `name: pi-sweep
module: pi.wasm
executor: wasm
args: ["-seed", "{seed}", "-samples", "{samples}", "{{literal}}"]
env: {MODE: fast, SEED: "s{seed}"}
stdin: ""
params:
  seed: {from: 1, to: 3}
  samples: [1000000, 2000000]
inputs: ["data/in-{seed}.txt"]   # flow lists need quotes around braces
outputs: [result.json]
resources: {memory: 64MiB, timeout: 30s, max_output: 4MiB}
max_price: 10
strategy: cheapest
retries: 2
workers: 4
results: out
`

func TestParseExample(t *testing.T) {
	s, err := Parse([]byte(example), "/specs")
	if err != nil {
		t.Fatal(err)
	}
	want := &Spec{
		Name: "pi-sweep", Module: "pi.wasm", Executor: "wasm",
		Args: []string{"-seed", "{seed}", "-samples", "{samples}", "{{literal}}"},
		Env:  map[string]string{"MODE": "fast", "SEED": "s{seed}"},
		Params: []Param{
			{Name: "seed", Values: []string{"1", "2", "3"}},
			{Name: "samples", Values: []string{"1000000", "2000000"}},
		},
		Inputs:    []string{"data/in-{seed}.txt"},
		Outputs:   []string{"result.json"},
		Resources: Resources{MemoryBytes: 64 << 20, Timeout: 30 * time.Second, MaxOutputBytes: 4 << 20},
		MaxPrice:  10, Strategy: "cheapest", Retries: 2, Workers: 4, Results: "out", Dir: "/specs",
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got  %+v\nwant %+v", s, want)
	}
	jobs, err := s.Expand()
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 6 {
		t.Fatalf("%d jobs", len(jobs))
	}
	j := jobs[3] // seed=2, samples=2000000
	wantJob := Job{
		Index: 3, ID: "job-4",
		Params:     map[string]string{"seed": "2", "samples": "2000000"},
		Args:       []string{"-seed", "2", "-samples", "2000000", "{literal}"},
		Env:        map[string]string{"MODE": "fast", "SEED": "s2"},
		InputPaths: []string{filepath.Join("/specs", "data/in-2.txt")},
	}
	if !reflect.DeepEqual(j, wantJob) {
		t.Fatalf("job 3:\n got  %+v\n want %+v", j, wantJob)
	}
	if d := s.JobDir(j); d != filepath.Join("/specs", "out", "pi-sweep", "job-4") {
		t.Fatalf("JobDir = %s", d)
	}
}

func TestDefaults(t *testing.T) {
	s, err := Parse([]byte("name: x\nmodule: builtin:trivial\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	if s.Executor != "wasm" || s.Strategy != "balanced" || s.Retries != 3 || s.Results != "results" || s.Workers != 0 {
		t.Fatalf("defaults: %+v", s)
	}
	jobs, err := s.Expand()
	if err != nil || len(jobs) != 1 || jobs[0].ID != "job-1" {
		t.Fatalf("no params: %v %+v", err, jobs)
	}
	// retries: 0 is kept, not defaulted.
	s, err = Parse([]byte("name: x\nmodule: m\nretries: 0\n"), ".")
	if err != nil || s.Retries != 0 {
		t.Fatalf("retries 0: %v %+v", err, s)
	}
}

func TestRanges(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"{from: 1, to: 5}", []string{"1", "2", "3", "4", "5"}},
		{"{from: 1, to: 10, step: 4}", []string{"1", "5", "9"}},
		{"{from: 5, to: 1, step: -2}", []string{"5", "3", "1"}},
		{"{from: 3, to: 3}", []string{"3"}},
		{"{from: 0.1, to: 1.0, step: 0.1}", []string{"0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1"}},
		{"{from: 0, to: 0.3, step: 0.1}", []string{"0", "0.1", "0.2", "0.3"}},
		{"{from: 1, to: 0, step: -0.25}", []string{"1", "0.75", "0.5", "0.25", "0"}},
		{"{from: -0.3, to: 0.3, step: 0.3}", []string{"-0.3", "0", "0.3"}},
		{"{from: 1, to: 2, step: 0.4}", []string{"1", "1.4", "1.8"}},
		{"{from: 1e-3, to: 3e-3, step: 1e-3}", []string{"0.001", "0.002", "0.003"}},
		{"{from: '1', to: 2.0}", []string{"1", "2"}},
		{"[a, 2, 3.5, true]", []string{"a", "2", "3.5", "true"}},
		{"lonely", []string{"lonely"}},
		{"{from: 9223372036854775806, to: 9223372036854775807}", []string{"9223372036854775806", "9223372036854775807"}},
	}
	for _, tt := range tests {
		s, err := Parse([]byte("name: x\nmodule: m\nparams:\n  p: "+tt.in+"\n"), ".")
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if got := s.Params[0].Values; !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	base := "name: x\nmodule: m\n"
	tests := []struct {
		name, in string
		field    string // want Error.Field
		line     int    // want Error.Line, if > 0
		msg      string // substring of the message
		is       error
	}{
		{"bad yaml", "name: [x\n", "", 0, "invalid YAML", ErrInvalid},
		{"not a mapping", "- a\n- b\n", "", 1, "want a mapping", ErrInvalid},
		{"unknown key", base + "colour: red\n", "colour", 3, "unknown field", ErrInvalid},
		{"unknown resources key", base + "resources: {cpu: 2}\n", "resources.cpu", 3, "unknown field", ErrInvalid},
		{"duplicate key", base + "name: y\n", "", 3, "already defined", ErrInvalid},
		{"duplicate param", base + "params:\n  a: [1]\n  a: [2]\n", "", 5, "already defined", ErrInvalid},
		{"no name", "module: m\n", "name", 0, "required", ErrInvalid},
		{"empty name", "name: ''\nmodule: m\n", "name", 1, "must not be empty", ErrInvalid},
		{"bad name", "name: Pi Sweep\nmodule: m\n", "name", 1, "only a-z", ErrInvalid},
		{"long name", "name: " + strings.Repeat("a", 65) + "\nmodule: m\n", "name", 1, "longer than 64", ErrInvalid},
		{"dot name", "name: ..\nmodule: m\n", "name", 1, "not a valid name", ErrInvalid},
		{"no module", "name: x\n", "module", 0, "required", ErrInvalid},
		{"empty builtin", "name: x\nmodule: 'builtin:'\n", "module", 2, "needs a name", ErrInvalid},
		{"builtin exec", "name: x\nmodule: builtin:pi\nexecutor: exec\nprogram: p\n", "module", 2, "executor wasm", ErrInvalid},
		{"exec without program", "name: x\nexecutor: exec\n", "program", 0, "required with executor exec", ErrInvalid},
		{"exec with module", "name: x\nmodule: m.wasm\nexecutor: exec\nprogram: p\n", "module", 2, "takes no module", ErrInvalid},
		{"program for wasm", base + "program: p\n", "program", 3, "for executor exec", ErrInvalid},
		{"program path", "name: x\nexecutor: exec\nprogram: /bin/sh\n", "program", 3, "not a program name", ErrInvalid},
		{"program dotdot", "name: x\nexecutor: exec\nprogram: ..\n", "program", 3, "not a program name", ErrInvalid},
		{"bad executor", base + "executor: docker\n", "executor", 3, "not an executor", ErrInvalid},
		{"name wrong type", "name: [a]\nmodule: m\n", "name", 1, "want a string, got a list", ErrInvalid},
		{"args not list", base + "args: -v\n", "args", 3, "want a list", ErrInvalid},
		{"args nested", base + "args: [[a]]\n", "args[0]", 3, "want a single value", ErrInvalid},
		{"bad env name", base + "env: {1X: a}\n", "env.1X", 3, "environment variable", ErrInvalid},
		{"bad size", base + "resources: {memory: 64 potatoes}\n", "resources.memory", 3, "want a size", ErrInvalid},
		{"fractional size", base + "resources: {memory: 1.5GiB}\n", "resources.memory", 3, "want a size", ErrInvalid},
		{"negative size", base + "resources: {memory: -1}\n", "resources.memory", 3, "negative", ErrInvalid},
		{"bad duration", base + "resources: {timeout: 30}\n", "resources.timeout", 3, "duration", ErrInvalid},
		{"bad duration string", base + "resources: {timeout: soon}\n", "resources.timeout", 3, "duration", ErrInvalid},
		{"negative duration", base + "resources: {timeout: -1s}\n", "resources.timeout", 3, "negative", ErrInvalid},
		{"bad strategy", base + "strategy: random\n", "strategy", 3, "unknown strategy", ErrInvalid},
		{"negative retries", base + "retries: -1\n", "retries", 3, "out of range", ErrInvalid},
		{"retries string", base + "retries: three\n", "retries", 3, "want an integer", ErrInvalid},
		{"negative price", base + "max_price: -5\n", "max_price", 3, "negative", ErrInvalid},
		{"negative workers", base + "workers: -1\n", "workers", 3, "out of range", ErrInvalid},
		{"step zero", base + "params:\n  seed: {from: 1, to: 5, step: 0}\n", "params.seed.step", 4, "must not be 0", ErrInvalid},
		{"from > to", base + "params:\n  seed: {from: 5, to: 1}\n", "params.seed.step", 4, "never gets there", ErrInvalid},
		{"wrong direction", base + "params:\n  seed: {from: 1, to: 5, step: -1}\n", "params.seed.step", 4, "never gets there", ErrInvalid},
		{"range without to", base + "params:\n  seed: {from: 1}\n", "params.seed.to", 0, "required", ErrInvalid},
		{"range extra key", base + "params:\n  seed: {from: 1, to: 2, by: 1}\n", "params.seed.by", 4, "unknown field", ErrInvalid},
		{"range string", base + "params:\n  seed: {from: a, to: 2}\n", "params.seed.from", 4, "finite number", ErrInvalid},
		{"range inf", base + "params:\n  seed: {from: 0, to: .inf}\n", "params.seed.to", 4, "finite number", ErrInvalid},
		{"empty list", base + "params:\n  seed: []\n", "params.seed", 4, "empty list", ErrInvalid},
		{"null param", base + "params:\n  seed:\n", "params.seed", 4, "no values", ErrInvalid},
		{"bad param name", base + "params:\n  9lives: [1]\n", "params.9lives", 4, "param name", ErrInvalid},
		{"unknown placeholder", base + "args: ['{sed}']\nparams: {seed: [1]}\n", "args[0]", 3, "{sed} names no param", ErrInvalid},
		{"unknown env placeholder", base + "env: {A: '{x}'}\n", "env.A", 3, "{x} names no param", ErrInvalid},
		{"unknown input placeholder", base + "inputs: ['{x}.txt']\n", "inputs[0]", 3, "{x} names no param", ErrInvalid},
		{"unclosed brace", base + "args: ['{seed']\n", "args[0]", 3, "unclosed", ErrInvalid},
		{"output escapes", base + "outputs: [../x]\n", "outputs[0]", 3, "inside the job directory", ErrInvalid},
		{"output absolute", base + "outputs: [/etc/passwd]\n", "outputs[0]", 3, "inside the job directory", ErrInvalid},
		{"output twice", base + "outputs: [a, a]\n", "outputs[1]", 3, "declared twice", ErrInvalid},
		{"stdin both", base + "stdin: x\nstdin_file: y\n", "stdin_file", 4, "exclusive", ErrInvalid},
		{"alias", base + "args: &a [x]\nenv: *a\n", "args", 3, "anchors", ErrInvalid},
		{"tag", base + "args: !!seq [x]\n", "args", 3, "tags", ErrInvalid},
		{"two documents", base + "---\nname: y\n", "", 4, "more than one", ErrInvalid},
		{"huge range", base + "params:\n  seed: {from: 1, to: 1000000000000}\n", "params.seed", 4, "too many jobs", ErrTooManyJobs},
		{"huge product", base + "params:\n  a: {from: 1, to: 1000}\n  b: {from: 1, to: 1000}\n  c: [1, 2]\n", "params.c", 6, "more than 1000000", ErrTooManyJobs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in), ".")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if !errors.Is(err, tt.is) || !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			if e.Field != tt.field {
				t.Errorf("Field = %q, want %q (%v)", e.Field, tt.field, err)
			}
			if tt.line > 0 && e.Line != tt.line {
				t.Errorf("Line = %d, want %d (%v)", e.Line, tt.line, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("message %q does not contain %q", err, tt.msg)
			}
		})
	}
}

func TestSizes(t *testing.T) {
	tests := map[string]uint64{
		"0": 0, "1024": 1024, "64MiB": 64 << 20, "4 MiB": 4 << 20, "1KB": 1000, "2MB": 2e6,
		"3GiB": 3 << 30, "1GB": 1e9, "5B": 5, "1TiB": 1 << 40,
	}
	for in, want := range tests {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "1.5MiB", "-1", "1mib", "1 XB", "99999999999999999999", "17179869184GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
	s, err := Parse([]byte("name: x\nmodule: m\nresources: {memory: 1048576}\n"), ".")
	if err != nil || s.Resources.MemoryBytes != 1<<20 {
		t.Fatalf("integer memory: %v %+v", err, s)
	}
}

func TestTemplateEscapes(t *testing.T) {
	known := map[string]bool{"a": true}
	tests := map[string]string{
		"{a}":        "1",
		"x{a}y{a}":   "x1y1",
		"{{a}":       "{a}",
		"{{{a}}}":    "{1}",
		"}":          "}",
		`{{"k":{a}}`: `{"k":1}`,
		"":           "",
	}
	for in, want := range tests {
		tp, err := parseTemplate(in, known)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got := tp.expand(map[string]string{"a": "1"}); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
	for _, in := range []string{"{", "{b}", "{}", "a{a"} {
		if _, err := parseTemplate(in, known); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestExpandOrderAndIDs(t *testing.T) {
	s, err := Parse([]byte("name: x\nmodule: m\nparams:\n  b: [x, y]\n  a: {from: 1, to: 6}\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.JobCount(); err != nil || n != 12 {
		t.Fatalf("JobCount = %d, %v", n, err)
	}
	jobs, err := s.Expand()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range jobs {
		got = append(got, j.ID+":"+j.Params["b"]+j.Params["a"])
	}
	want := []string{"job-01:x1", "job-02:x2", "job-03:x3", "job-04:x4", "job-05:x5", "job-06:x6",
		"job-07:y1", "job-08:y2", "job-09:y3", "job-10:y4", "job-11:y5", "job-12:y6"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v", got)
	}
}

func TestExpandTooMany(t *testing.T) {
	// A hand-built spec: Expand checks the product before allocating.
	big := make([]string, 1001)
	s := &Spec{Name: "x", Module: "m", Params: []Param{{Name: "a", Values: big}, {Name: "b", Values: big}}}
	if _, err := s.Expand(); !errors.Is(err, ErrTooManyJobs) {
		t.Fatalf("err = %v", err)
	}
	if _, err := s.JobCount(); !errors.Is(err, ErrTooManyJobs) {
		t.Fatalf("err = %v", err)
	}
	s.Params = []Param{{Name: "a", Values: nil}}
	if _, err := s.Expand(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty param: err = %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "Sweep.yaml")
	if err := os.WriteFile(p, []byte("module: pi.wasm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "sweep" || s.Dir != dir || s.Path(s.Module) != filepath.Join(dir, "pi.wasm") {
		t.Fatalf("%+v", s)
	}
	if err := os.WriteFile(p, []byte("module: pi.wasm\nretries: -2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(p)
	if err == nil || err.Error() != "Sweep.yaml:2: retries: -2 is out of range [0, 100]" {
		t.Fatalf("err = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing file loaded")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte("name: x\nmodule: m\nparams:\n  a: {from: 0.1, to: 1, step: 0.1}\n  b: [1, 2]\n"))
	f.Add([]byte("name: x\nmodule: m\nargs: ['{{', '{a}']\nparams: {a: z}\n"))
	f.Add([]byte("name: x\nmodule: m\nparams:\n  a: {from: 5, to: -5, step: -3}\n"))
	f.Add([]byte("- [a, {b: c}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, "d")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		n, err := s.JobCount()
		if err != nil {
			t.Fatalf("parsed spec has no job count: %v", err)
		}
		if n > 10000 {
			return
		}
		jobs, err := s.Expand()
		if err != nil || len(jobs) != n {
			t.Fatalf("Expand: %d jobs, %v; JobCount %d", len(jobs), err, n)
		}
	})
}

// TestExecProgram: an exec series names its program with program: and
// needs no module; each job's arguments start with the program's name,
// which is how the exec executor receives it.
func TestExecProgram(t *testing.T) {
	s, err := Parse([]byte("name: conv\nexecutor: exec\nprogram: convert\nargs: ['{n}', out.txt]\nparams: {n: [1, 2]}\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	if s.Program != "convert" || s.Module != "" {
		t.Fatalf("Program %q Module %q", s.Program, s.Module)
	}
	jobs, err := s.Expand()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(jobs[1].Args, " "); got != "convert 2 out.txt" {
		t.Fatalf("job 2 args = %q, want %q", got, "convert 2 out.txt")
	}
	s, err = Parse([]byte("name: conv\nexecutor: exec\nprogram: date\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	if jobs, _ := s.Expand(); len(jobs) != 1 || strings.Join(jobs[0].Args, " ") != "date" {
		t.Fatalf("args without args: = %v", jobs[0].Args)
	}
}
