package runner

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/p2pjobs/p2pnode/node/client"
)

// ResultWriter writes each job's outputs to <dir>/<job>/ (stdout, stderr,
// declared output files) and a line per job to <dir>/summary.jsonl.
type ResultWriter struct {
	dir string

	params map[string]map[string]string // job ID -> its sweep values (SetParams); read-only after

	mu      sync.Mutex // guards summary
	summary *os.File
	enc     *json.Encoder
}

// SetParams tells the writer each job's parameters, which then go into its
// summary line and results/<series>/<job>/params.json. Call it before the
// first Write.
func (w *ResultWriter) SetParams(jobs []client.Job) {
	w.params = make(map[string]map[string]string, len(jobs))
	for _, j := range jobs {
		if len(j.Params) > 0 {
			w.params[j.ID] = j.Params
		}
	}
}

// Line is Line(o) with the job's parameters.
func (w *ResultWriter) Line(o client.Outcome) SummaryLine {
	l := Line(o)
	l.Params = w.params[o.ID]
	return l
}

// SummaryLine is one line of summary.jsonl.
type SummaryLine struct {
	Job      string            `json:"job"`
	Params   map[string]string `json:"params,omitempty"` // the job's sweep values, e.g. {"seed": "17"}
	Status   string            `json:"status"`           // done | failed
	Worker   string            `json:"worker,omitempty"`
	Attempts int               `json:"attempts"`
	Seconds  float64           `json:"seconds"`          // from first dispatch to outcome, queueing included
	RunMs    uint32            `json:"run_ms,omitempty"` // the worker's own run time
	Exit     int32             `json:"exit"`
	Price    uint64            `json:"price,omitempty"`
	Error    string            `json:"error,omitempty"`
	Stdout   string            `json:"stdout,omitempty"` // first line, for the table
	Path     string            `json:"path,omitempty"`   // direct | relayed: how the result travelled
	Route    string            `json:"route,omitempty"`  // how the worker was found: authority | dht | flood
}

// NewResultWriter creates dir and the summary file (truncated: a re-run of
// a series replaces its summary).
func NewResultWriter(dir string) (*ResultWriter, error) { return openResultWriter(dir, false) }

// ResumeResultWriter opens dir's summary for appending: a resumed series
// adds the outcomes of the jobs it still runs to those already there.
func ResumeResultWriter(dir string) (*ResultWriter, error) { return openResultWriter(dir, true) }

func openResultWriter(dir string, resume bool) (*ResultWriter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("runner: results: %w", err)
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if resume {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(filepath.Join(dir, "summary.jsonl"), flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("runner: results: %w", err)
	}
	if resume {
		// A client killed mid-line left a torn record: end it, so the
		// next record starts on a line of its own.
		if st, err := f.Stat(); err == nil && st.Size() > 0 {
			last := make([]byte, 1)
			if r, err := os.Open(f.Name()); err == nil {
				_, _ = r.ReadAt(last, st.Size()-1)
				r.Close()
			}
			if last[0] != '\n' {
				_, _ = f.Write([]byte("\n"))
			}
		}
	}
	return &ResultWriter{dir: dir, summary: f, enc: json.NewEncoder(f)}, nil
}

// Dir is where results go.
func (w *ResultWriter) Dir() string { return w.dir }

// Line summarises an outcome.
func Line(o client.Outcome) SummaryLine {
	l := SummaryLine{Job: o.ID, Status: "done", Attempts: o.Attempts, Seconds: o.Elapsed.Seconds(), Price: o.Price,
		Path: o.Conn, Route: o.Route}
	if o.Worker != "" {
		l.Worker = o.Worker.String()
	}
	if o.Err != nil {
		l.Status, l.Error = "failed", o.Err.Error()
	}
	if o.Result != nil {
		l.Exit, l.RunMs = o.Result.ExitCode, o.Result.DurationMs
		first, _, _ := strings.Cut(string(o.Result.Stdout), "\n")
		l.Stdout = first
	}
	return l
}

// Write stores one outcome.
func (w *ResultWriter) Write(o client.Outcome) error {
	var errs []error
	jd := filepath.Join(w.dir, o.ID)
	if p := w.params[o.ID]; p != nil {
		// Failed jobs too: which values failed is what the user asks next.
		b, _ := json.MarshalIndent(p, "", "  ")
		errs = append(errs, os.MkdirAll(jd, 0o755), os.WriteFile(filepath.Join(jd, "params.json"), append(b, '\n'), 0o644))
	}
	if o.Result != nil {
		if err := os.MkdirAll(jd, 0o755); err != nil {
			return fmt.Errorf("runner: results: %w", err)
		}
		errs = append(errs, os.WriteFile(filepath.Join(jd, "stdout"), o.Result.Stdout, 0o644),
			os.WriteFile(filepath.Join(jd, "stderr"), o.Result.Stderr, 0o644))
		for _, f := range o.Result.Outputs {
			// Output names were validated by the worker, but a hostile
			// worker could send anything: keep every file inside jd.
			name := filepath.Clean(f.Name)
			if !filepath.IsLocal(name) {
				errs = append(errs, fmt.Errorf("runner: output name %q escapes the job directory", f.Name))
				continue
			}
			p := filepath.Join(jd, name)
			errs = append(errs, os.MkdirAll(filepath.Dir(p), 0o755), os.WriteFile(p, f.Data, 0o644))
		}
	}
	w.mu.Lock()
	errs = append(errs, w.enc.Encode(w.Line(o)))
	w.mu.Unlock()
	return errors.Join(errs...)
}

// Journal reads dir's summary.jsonl, the client's journal of a series:
// each line is written as its job ends, before the next outcome, so a
// client that was killed has every job it saw end on record. It returns
// the jobs that ended done and whose declared outputs are on disk. A
// missing summary is an empty journal; a torn last line is ignored.
func Journal(dir string, outputs []string) (map[string]bool, error) {
	f, err := os.Open(filepath.Join(dir, "summary.jsonl"))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runner: journal: %w", err)
	}
	defer f.Close()
	done := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l SummaryLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Job == "" || !filepath.IsLocal(l.Job) {
			continue
		}
		if l.Status != "done" {
			delete(done, l.Job) // a later failure of the same job wins
			continue
		}
		ok := true
		for _, o := range outputs {
			if _, err := os.Stat(filepath.Join(dir, l.Job, o)); err != nil {
				ok = false
			}
		}
		if ok {
			done[l.Job] = true
		}
	}
	return done, sc.Err()
}

// Close syncs and closes the summary.
func (w *ResultWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.summary.Sync(), w.summary.Close())
}
