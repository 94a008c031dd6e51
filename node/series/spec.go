package series

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/p2pjobs/p2pnode/node/schedule"
)

// Limits.
const (
	MaxJobs      = 1_000_000 // largest sweep a spec may expand to
	MaxSpecBytes = 1 << 20   // largest spec document Parse accepts
	MaxNameLen   = 64        // longest series or param name
	MaxRetries   = 100       // largest retries value
)

// Defaults filled in by Parse.
const (
	DefaultExecutor = "wasm"
	DefaultStrategy = string(schedule.Balanced)
	DefaultRetries  = 3
	DefaultResults  = "results"
	BuiltinPrefix   = "builtin:"
)

// Spec is a parsed, validated series spec. Paths in it are as written;
// resolve them against Dir with Path.
type Spec struct {
	Name      string
	Module    string // wasm: a path relative to Dir, or "builtin:<name>"
	Program   string // exec: the name of a program in the workers' allowlist (worker.exec_allow)
	Executor  string // "wasm" or "exec"
	Args      []string
	Env       map[string]string
	Stdin     string
	StdinFile string
	Params    []Param // in the order written; the sweep is their cartesian product
	Inputs    []string
	Outputs   []string
	Resources Resources
	MaxPrice  uint64 // per job, in points; 0 = any
	Strategy  string // a schedule.Strategy
	Retries   int    // attempts per job beyond the first
	Workers   int    // most workers to use; 0 = as many as bid
	Results   string // output root; jobs write to <Results>/<Name>/<job ID>/
	Dir       string // directory of the spec file; relative paths are resolved against it
}

// Param is one swept parameter with its expanded values, in order.
type Param struct {
	Name   string
	Values []string
}

// Resources is the per-job resource request. Zero means the worker's default.
type Resources struct {
	MemoryBytes    uint64
	Timeout        time.Duration
	MaxOutputBytes uint64
}

// Load reads and parses the spec file at path. Relative paths in the spec
// are relative to the file's directory; a spec without a name is named after
// the file ("sweep.yaml" → "sweep").
func Load(path string) (*Spec, error) {
	file := filepath.Base(path)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("series: %w", err)
	}
	base := strings.TrimSuffix(file, filepath.Ext(file))
	s, err := parse(data, filepath.Dir(path), strings.ToLower(base))
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.File == "" {
			e.File = file
		}
		return nil, err
	}
	return s, nil
}

// Parse parses and validates a spec document. dir is the directory relative
// paths are resolved against. Unknown keys, wrong types and invalid values
// are errors (a *Error matching ErrInvalid). Parse needs a name in the
// document; Load defaults it to the file's base name.
func Parse(data []byte, dir string) (*Spec, error) {
	return parse(data, dir, "")
}

func parse(data []byte, dir, defaultName string) (*Spec, error) {
	if len(data) > MaxSpecBytes {
		return nil, fieldErr("", 0, "spec is %d bytes, more than the limit of %d", len(data), MaxSpecBytes)
	}
	body, err := parseDocument(data)
	if err != nil {
		return nil, err
	}
	top, err := mapping("", body)
	if err != nil {
		return nil, err
	}
	s := &Spec{Dir: dir, Executor: DefaultExecutor, Strategy: DefaultStrategy, Retries: DefaultRetries, Results: DefaultResults}
	fields := make(map[string]kv, len(top))
	for _, e := range top {
		fields[e.key] = e
	}
	for _, e := range top {
		if err := s.setField(e); err != nil {
			return nil, err
		}
	}
	// Checks that involve more than one field.
	if _, ok := fields["name"]; !ok {
		if defaultName == "" {
			return nil, fieldErr("name", 0, "required")
		}
		if err := checkName(defaultName); err != nil {
			return nil, fieldErr("name", 0, "not set, and the file name %q is no valid default (%v)", defaultName, err)
		}
		s.Name = defaultName
	}
	// A wasm series runs a module; an exec series runs a program the
	// workers' operators allow-listed, and has no module to send.
	_, hasModule := fields["module"]
	_, hasProgram := fields["program"]
	switch {
	case s.Executor == "exec" && !hasProgram:
		return nil, fieldErr("program", 0, "required with executor exec (a name from the workers' worker.exec_allow)")
	case s.Executor == "exec" && strings.HasPrefix(s.Module, BuiltinPrefix):
		return nil, fieldErr("module", fields["module"].line, "builtin modules need executor wasm")
	case s.Executor == "exec" && hasModule:
		return nil, fieldErr("module", fields["module"].line, "executor exec runs its program: and takes no module")
	case s.Executor != "exec" && hasProgram:
		return nil, fieldErr("program", fields["program"].line, "program: is for executor exec; a wasm series names its module:")
	case s.Executor != "exec" && !hasModule:
		return nil, fieldErr("module", 0, "required")
	}
	if s.Stdin != "" && s.StdinFile != "" {
		return nil, fieldErr("stdin_file", fields["stdin_file"].line, "stdin and stdin_file are exclusive")
	}
	if _, err := countJobs(s.Params); err != nil {
		return nil, err
	}
	if _, err := s.templates(); err != nil {
		var e *Error
		if errors.As(err, &e) && e.Line == 0 {
			top, _, _ := strings.Cut(strings.SplitN(e.Field, ".", 2)[0], "[")
			e.Line = fields[top].line
		}
		return nil, err
	}
	return s, nil
}

// setField decodes one top-level key.
func (s *Spec) setField(e kv) error {
	f, n := e.key, e.val
	var err error
	switch f {
	case "name":
		if s.Name, err = stringVal(f, n); err != nil {
			return err
		}
		if err := checkName(s.Name); err != nil {
			return &Error{Field: f, Line: e.line, Err: err}
		}
	case "module":
		if s.Module, err = stringVal(f, n); err != nil {
			return err
		}
		if err := checkModule(s.Module); err != nil {
			return &Error{Field: f, Line: e.line, Err: err}
		}
	case "program":
		if s.Program, err = stringVal(f, n); err != nil {
			return err
		}
		if err := checkProgram(s.Program); err != nil {
			return &Error{Field: f, Line: e.line, Err: err}
		}
	case "executor":
		if s.Executor, err = stringVal(f, n); err != nil {
			return err
		}
		switch s.Executor {
		case "":
			s.Executor = DefaultExecutor
		case "wasm", "exec":
		default:
			return fieldErr(f, e.line, "%q is not an executor (want wasm or exec)", s.Executor)
		}
	case "args":
		items, err := sequence(f, n)
		if err != nil {
			return err
		}
		s.Args = make([]string, 0, len(items))
		for i, it := range items {
			v, err := scalarText(index(f, i), it)
			if err != nil {
				return err
			}
			s.Args = append(s.Args, v)
		}
	case "env":
		m, err := mapping(f, n)
		if err != nil {
			return err
		}
		s.Env = make(map[string]string, len(m))
		for _, kv := range m {
			if !validEnvName(kv.key) {
				return fieldErr(join(f, kv.key), kv.line, "not a valid environment variable name")
			}
			v := ""
			if !isNull(kv.val) {
				if v, err = scalarText(join(f, kv.key), kv.val); err != nil {
					return err
				}
			}
			s.Env[kv.key] = v
		}
	case "stdin":
		if s.Stdin, err = stringVal(f, n); err != nil {
			return err
		}
	case "stdin_file":
		if s.StdinFile, err = stringVal(f, n); err != nil {
			return err
		}
		if err := checkPath(s.StdinFile); err != nil && s.StdinFile != "" {
			return &Error{Field: f, Line: e.line, Err: err}
		}
	case "params":
		if s.Params, err = parseParams(f, n); err != nil {
			return err
		}
	case "inputs":
		if s.Inputs, err = stringList(f, n, checkPath); err != nil {
			return err
		}
	case "outputs":
		if s.Outputs, err = stringList(f, n, checkOutput); err != nil {
			return err
		}
		seen := map[string]bool{}
		for i, o := range s.Outputs {
			if seen[o] {
				return fieldErr(index(f, i), lineOf(n), "%q declared twice", o)
			}
			seen[o] = true
		}
	case "resources":
		return s.setResources(f, n)
	case "max_price":
		if s.MaxPrice, err = uintVal(f, n); err != nil {
			return err
		}
	case "strategy":
		v, err := stringVal(f, n)
		if err != nil {
			return err
		}
		if v == "" {
			v = DefaultStrategy
		}
		st, err := schedule.ParseStrategy(v)
		if err != nil {
			return &Error{Field: f, Line: e.line, Err: err}
		}
		s.Strategy = string(st)
	case "retries":
		v, err := intVal(f, n, 0, MaxRetries)
		if err != nil {
			return err
		}
		s.Retries = int(v)
	case "workers":
		v, err := intVal(f, n, 0, MaxJobs)
		if err != nil {
			return err
		}
		s.Workers = int(v)
	case "results":
		if s.Results, err = stringVal(f, n); err != nil {
			return err
		}
		if s.Results == "" {
			s.Results = DefaultResults
		}
		if err := checkPath(s.Results); err != nil {
			return &Error{Field: f, Line: e.line, Err: err}
		}
	default:
		return fieldErr(f, e.line, "unknown field")
	}
	return nil
}

func (s *Spec) setResources(field string, n ast.Node) error {
	m, err := mapping(field, n)
	if err != nil {
		return err
	}
	for _, e := range m {
		f := join(field, e.key)
		switch e.key {
		case "memory", "max_output":
			var v uint64
			if _, ok := e.val.(*ast.IntegerNode); ok {
				if v, err = uintVal(f, e.val); err != nil {
					return err
				}
			} else {
				str, err := stringVal(f, e.val)
				if err != nil {
					return err
				}
				if v, err = ParseSize(str); err != nil {
					return &Error{Field: f, Line: lineOf(e.val), Err: err}
				}
			}
			if e.key == "memory" {
				s.Resources.MemoryBytes = v
			} else {
				s.Resources.MaxOutputBytes = v
			}
		case "timeout":
			str, err := stringVal(f, e.val)
			if err != nil {
				return fieldErr(f, lineOf(e.val), "want a duration such as 30s or 5m")
			}
			d, err := time.ParseDuration(str)
			if err != nil {
				return fieldErr(f, lineOf(e.val), "want a duration such as 30s or 5m, got %q", str)
			}
			if d < 0 {
				return fieldErr(f, lineOf(e.val), "must not be negative")
			}
			s.Resources.Timeout = d
		default:
			return fieldErr(f, e.line, "unknown field (want memory, timeout or max_output)")
		}
	}
	return nil
}

// stringList reads a list of strings, checking each with check.
func stringList(field string, n ast.Node, check func(string) error) ([]string, error) {
	items, err := sequence(field, n)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		f := index(field, i)
		v, err := stringVal(f, it)
		if err != nil {
			return nil, err
		}
		if err := check(v); err != nil {
			return nil, &Error{Field: f, Line: lineOf(it), Err: err}
		}
		out = append(out, v)
	}
	return out, nil
}

// templates parses every placeholder-bearing field, in a fixed order.
type specTemplates struct {
	args   []template
	env    map[string]template
	inputs []template
}

func (s *Spec) templates() (*specTemplates, error) {
	known := make(map[string]bool, len(s.Params))
	for _, p := range s.Params {
		known[p.Name] = true
	}
	t := &specTemplates{env: make(map[string]template, len(s.Env))}
	for i, a := range s.Args {
		tp, err := parseTemplate(a, known)
		if err != nil {
			return nil, &Error{Field: index("args", i), Err: err}
		}
		t.args = append(t.args, tp)
	}
	for k, v := range s.Env {
		tp, err := parseTemplate(v, known)
		if err != nil {
			return nil, &Error{Field: join("env", k), Err: err}
		}
		t.env[k] = tp
	}
	for i, in := range s.Inputs {
		tp, err := parseTemplate(in, known)
		if err != nil {
			return nil, &Error{Field: index("inputs", i), Err: err}
		}
		t.inputs = append(t.inputs, tp)
	}
	return t, nil
}

// Path resolves a path from the spec (module, input, stdin_file, results)
// against the spec's directory. Builtin modules and absolute paths are
// returned unchanged.
func (s *Spec) Path(p string) string {
	if strings.HasPrefix(p, BuiltinPrefix) || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(s.Dir, p)
}

// JobDir is the directory a job's outputs go to: <Results>/<Name>/<job ID>,
// resolved against Dir.
func (s *Spec) JobDir(j Job) string {
	return filepath.Join(s.Path(s.Results), s.Name, j.ID)
}

func checkName(n string) error {
	if n == "" {
		return errors.New("must not be empty")
	}
	if len(n) > MaxNameLen {
		return fmt.Errorf("longer than %d characters", MaxNameLen)
	}
	if n == "." || n == ".." {
		return fmt.Errorf("%q is not a valid name", n)
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%q: only a-z, 0-9, '.', '_' and '-' are allowed", n)
		}
	}
	return nil
}

// checkProgram checks an exec program name: a key of the workers'
// allowlist, never a path (the worker maps names to paths).
func checkProgram(p string) error {
	if p == "" {
		return errors.New("must not be empty")
	}
	if len(p) > MaxNameLen {
		return fmt.Errorf("longer than %d characters", MaxNameLen)
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') || p == "." || p == ".." {
			return fmt.Errorf("%q is not a program name (a name from the workers' worker.exec_allow: letters, digits, '.', '_', '-')", p)
		}
	}
	return nil
}

func checkModule(m string) error {
	if name, ok := strings.CutPrefix(m, BuiltinPrefix); ok {
		if name == "" {
			return errors.New("builtin module needs a name, e.g. builtin:pi")
		}
		for _, c := range name {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return fmt.Errorf("%q is not a builtin module name", name)
			}
		}
		return nil
	}
	return checkPath(m)
}

func checkPath(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	if strings.IndexByte(p, 0) >= 0 {
		return errors.New("path contains a NUL byte")
	}
	return nil
}

// checkOutput requires a relative path that stays inside the job directory.
func checkOutput(p string) error {
	if err := checkPath(p); err != nil {
		return err
	}
	if !filepath.IsLocal(filepath.FromSlash(p)) {
		return fmt.Errorf("%q must be a relative path inside the job directory", p)
	}
	return nil
}

func validEnvName(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range k {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
